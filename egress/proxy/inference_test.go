package proxy

import (
	"bufio"
	"crypto/tls"
	"fmt"
	"net/http"
	"slices"
	"testing"

	"github.com/clawrun/clawrun/egress/decisionlog"
	"github.com/clawrun/clawrun/egress/inference"
	"github.com/clawrun/clawrun/runtime/policy"
)

// inferenceHarness is a proxy whose policy allows other.test only, with
// (routed) or without a route for inference.local to tlsHost.
func inferenceHarness(t *testing.T, routed bool) *inspectHarness {
	t.Helper()
	h := newInspectHarness(t)
	h.setRules(1, policy.Endpoint{Host: "other.test"})
	if routed {
		h.p.Inference = &inference.Route{BackendHost: tlsHost, BackendPort: 443, Credential: "API_KEY",
			KeyHeader: "Authorization", KeyPrefix: "Bearer ", Forward: []string{"Content-Type"}}
		h.p.Credentials = credentialsFor(t, tlsHost, 443)
	}
	h.serve()
	return h
}

// TestProxyInference: with a route, TLS for inference.local is served
// with a leaf of the container's CA and its requests go to the backend
// (tlsHost) though no rule names either; each is a record of rule
// egress.inference; a reload does not cut the connection. Without a
// route, the same connection is denied.
func TestProxyInference(t *testing.T) {
	for _, routed := range []bool{true, false} {
		t.Run(fmt.Sprint("routed=", routed), func(t *testing.T) {
			h := inferenceHarness(t, routed)
			c := tls.Client(h.dial(), &tls.Config{ServerName: inference.Host, RootCAs: h.clients})
			err := c.Handshake()
			if !routed {
				if err == nil {
					t.Fatal("handshake for inference.local succeeded without a route")
				}
				h.waitRecord("the refusal", func(r decisionlog.Record) bool { return r.Host == inference.Host && r.Decision == "deny" })
				if seen := h.up.requests(); len(seen) != 0 {
					t.Fatalf("the upstream saw %q", seen)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			br := bufio.NewReader(c)
			post := func(path string) int {
				fmt.Fprintf(c, "POST %s HTTP/1.1\r\nHost: inference.local\r\nAuthorization: Bearer agent\r\nContent-Length: 2\r\n\r\n{}", path)
				resp, err := http.ReadResponse(br, nil)
				if err != nil {
					t.Fatal(err)
				}
				resp.Body.Close()
				return resp.StatusCode
			}
			if code := post("/v1/messages"); code != 200 {
				t.Fatalf("status %d", code)
			}
			rec := h.waitRecord("the request", func(r decisionlog.Record) bool { return r.Protocol == "https" })
			if rec.Host != inference.Host || rec.Rule != inference.Rule || rec.Decision != "allow" || rec.Path != "/v1/messages" {
				t.Errorf("record %+v", rec)
			}
			// A reload decides policies' flows, not this one.
			h.setRules(2, policy.Endpoint{Host: "another.test"})
			if n := h.p.Recheck(); n != 0 {
				t.Errorf("Recheck cut %d flows", n)
			}
			if code := post("/v1/complete"); code != 200 {
				t.Fatalf("after the reload: status %d", code)
			}
			want := []string{"POST " + tlsHost + " /v1/messages", "POST " + tlsHost + " /v1/complete"}
			if seen := h.up.requests(); !slices.Equal(seen, want) {
				t.Fatalf("the upstream saw %q, want %q", seen, want)
			}
		})
	}
}

// TestProxyInferenceCleartext: with a route, plain HTTP for
// inference.local is served too: each request goes to the backend over
// TLS (the route's Rewrite, as for TLS clients), and is a record
// (protocol http, rule egress.inference); a request on that connection
// for another name is refused and never sent. Without a route, the
// request is denied and nothing is sent.
func TestProxyInferenceCleartext(t *testing.T) {
	for _, routed := range []bool{true, false} {
		t.Run(fmt.Sprint("routed=", routed), func(t *testing.T) {
			h := inferenceHarness(t, routed)
			c := h.dial()
			br := bufio.NewReader(c)
			post := func(path, host string) int {
				fmt.Fprintf(c, "POST %s HTTP/1.1\r\nHost: %s\r\nAuthorization: Bearer agent\r\nContent-Length: 2\r\n\r\n{}", path, host)
				resp, err := http.ReadResponse(br, nil)
				if err != nil {
					t.Fatal(err)
				}
				resp.Body.Close()
				return resp.StatusCode
			}
			if !routed {
				if code := post("/v1/messages", inference.Host); code != http.StatusForbidden {
					t.Fatalf("status %d, want 403", code)
				}
				h.waitRecord("the refusal", func(r decisionlog.Record) bool { return r.Host == inference.Host && r.Decision == "deny" })
				if seen := h.up.requests(); len(seen) != 0 {
					t.Fatalf("the upstream saw %q", seen)
				}
				return
			}
			if code := post("/v1/messages", inference.Host); code != 200 {
				t.Fatalf("status %d", code)
			}
			rec := h.waitRecord("the request", func(r decisionlog.Record) bool { return r.Protocol == "http" && r.Method == "POST" })
			if rec.Host != inference.Host || rec.Rule != inference.Rule || rec.Decision != "allow" || rec.Path != "/v1/messages" {
				t.Errorf("record %+v", rec)
			}
			if code := post("/v1/other", "other.test"); code != http.StatusMisdirectedRequest {
				t.Errorf("another name on the connection: status %d, want 421", code)
			}
			if seen := h.up.requests(); !slices.Equal(seen, []string{"POST " + tlsHost + " /v1/messages"}) {
				t.Fatalf("the upstream saw %q", seen)
			}
		})
	}
}

// TestProxyInferenceSharesBackendConnections: connections to
// inference.local one after the other share the backend's connection (one
// dial), and each connection's record names the backend's address.
func TestProxyInferenceSharesBackendConnections(t *testing.T) {
	h := newInspectHarness(t)
	h.setRules(1, policy.Endpoint{Host: "other.test"})
	h.p.Inference = &inference.Route{BackendHost: tlsHost, BackendPort: 443, Credential: "API_KEY",
		KeyHeader: "Authorization", KeyPrefix: "Bearer ", Forward: []string{"Content-Type"}}
	h.p.Credentials = credentialsFor(t, tlsHost, 443)
	dials := h.countDials()
	h.serve()
	for range 2 {
		c := h.dial()
		fmt.Fprintf(c, "POST /v1/messages HTTP/1.1\r\nHost: inference.local\r\nContent-Length: 2\r\n\r\n{}")
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		c.Close()
		if resp.StatusCode != 200 {
			t.Fatalf("status %d", resp.StatusCode)
		}
	}
	if n := dials.Load(); n != 1 {
		t.Fatalf("two connections to inference.local: %d backend dials, want 1", n)
	}
	conns := h.waitRecords("both connections", 2, func(r decisionlog.Record) bool { return r.Protocol == "http" && r.Method == "" })
	for _, r := range conns {
		if r.ResolvedIP != upstreamIP {
			t.Errorf("connection record: resolved %q, want %q", r.ResolvedIP, upstreamIP)
		}
	}
}
