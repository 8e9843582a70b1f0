package inspect

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"
)

// The positive control: an allowed GET reaches the upstream, as the
// client sent it, for the server name, and its answer reaches the client.
func TestAllowedGETReachesUpstream(t *testing.T) {
	up := newUpstream(t, false, nil)
	h := newHarness(t, up)
	req, _ := http.NewRequest("GET", "https://"+testHost+"/v1/models?limit=2&x=%2F", nil)
	req.Header.Set("X-Custom", "kept")
	resp, err := h.h1Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body := readAll(t, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || body != "upstream says hi" {
		t.Fatalf("got %d %q, want 200 from the upstream", resp.StatusCode, body)
	}
	seen := up.lastRequest()
	if up.requests.Load() != 1 || seen.Host != testHost || seen.RequestURI != "/v1/models?limit=2&x=%2F" || seen.Header.Get("X-Custom") != "kept" {
		t.Fatalf("upstream saw %d requests, last %+v", up.requests.Load(), seen)
	}
	d := h.logs.find(t, "allowed")
	if !d.Allow || d.Status != 200 || d.Method != "GET" || d.Path != "/v1/models" || d.Rule != "test-policy" || d.Authority != testHost {
		t.Fatalf("logged %+v", d)
	}
}

// A denied request gets a 403 naming the rule and never reaches the
// upstream; the next request on the same connection still works.
func TestDeniedPOSTNeverReachesUpstreamAndConnectionStaysUsable(t *testing.T) {
	up := newUpstream(t, false, nil)
	h := newHarness(t, up)
	client := h.h1Client()

	resp, err := client.Post("https://"+testHost+"/v1/repos", "application/json", strings.NewReader(`{"name":"x"}`))
	if err != nil {
		t.Fatal(err)
	}
	var ans answer
	if err := json.NewDecoder(resp.Body).Decode(&ans); err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusForbidden || ans.Rule != "test-policy" || ans.Reason != "method" || ans.Error != "egress_denied" {
		t.Fatalf("got %d %+v, want 403 from test-policy", resp.StatusCode, ans)
	}
	if n := up.requests.Load(); n != 0 {
		t.Fatalf("the upstream saw %d requests, want none", n)
	}
	d := h.logs.find(t, "method")
	if d.Allow || d.Status != 403 || d.Method != "POST" || d.Path != "/v1/repos" {
		t.Fatalf("logged %+v", d)
	}

	resp, err = client.Get("https://" + testHost + "/after")
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || up.requests.Load() != 1 {
		t.Fatalf("after the denial: %d, upstream saw %d requests", resp.StatusCode, up.requests.Load())
	}
	if n := h.accepts.Load(); n != 1 {
		t.Fatalf("the client made %d connections, want both requests on one", n)
	}
}

// The same over HTTP/2, stream by stream, on one connection; the
// upstream is spoken to in HTTP/2 too.
func TestHTTP2DecidesEveryStream(t *testing.T) {
	up := newUpstream(t, true, nil)
	h := newHarness(t, up)
	client := h.h2Client()

	get := func(path string) {
		t.Helper()
		resp, err := client.Get("https://" + testHost + path)
		if err != nil {
			t.Fatal(err)
		}
		body := readAll(t, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || resp.ProtoMajor != 2 || body != "upstream says hi" {
			t.Fatalf("GET %s: %d %s %q", path, resp.StatusCode, resp.Proto, body)
		}
	}
	get("/first")
	resp, err := client.Post("https://"+testHost+"/denied", "text/plain", strings.NewReader("data"))
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusForbidden {
		t.Fatalf("POST: %d, want 403", resp.StatusCode)
	}
	get("/second")
	if n := up.requests.Load(); n != 2 {
		t.Fatalf("the upstream saw %d requests, want the 2 GETs", n)
	}
	if seen := up.lastRequest(); seen.Proto != "HTTP/2.0" || seen.RequestURI != "/second" {
		t.Fatalf("upstream saw %+v", seen)
	}
	if n := h.accepts.Load(); n != 1 {
		t.Fatalf("%d client connections, want 1", n)
	}
	if n := up.conns.Load(); n != 1 {
		t.Fatalf("%d upstream connections, want 1 (reused)", n)
	}
}

// Requests of one client connection share the upstream connection: no
// new handshake per request.
func TestUpstreamConnectionReused(t *testing.T) {
	up := newUpstream(t, false, nil)
	h := newHarness(t, up)
	client := h.h1Client()
	for i := 0; i < 5; i++ {
		resp, err := client.Get("https://" + testHost + "/")
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
	if up.requests.Load() != 5 || up.conns.Load() != 1 || h.accepts.Load() != 1 {
		t.Fatalf("upstream: %d requests on %d connections, %d client connections; want 5 on 1, 1",
			up.requests.Load(), up.conns.Load(), h.accepts.Load())
	}
}

// The upstream gets a request written anew: hop-by-hop fields (and those
// Connection names), Proxy-Authorization and the client's X-Forwarded-For
// go, and none is added.
func TestHopByHopAndForwardingFieldsDropped(t *testing.T) {
	up := newUpstream(t, false, nil)
	h := newHarness(t, up)
	c := h.dial(protoHTTP1)
	resp := roundTrip(t, c, bufio.NewReader(c), "GET /x HTTP/1.1\r\nHost: "+testHost+"\r\n"+
		"Connection: keep-alive, X-Hop\r\nX-Hop: secret\r\nProxy-Authorization: Basic Zm9vOmJhcg==\r\n"+
		"Keep-Alive: timeout=5\r\nX-Forwarded-For: 10.0.0.1\r\nForwarded: for=10.0.0.1\r\nX-End-To-End: yes\r\n\r\n")
	if resp.StatusCode != 200 {
		t.Fatalf("status %d", resp.StatusCode)
	}
	seen := up.lastRequest()
	for _, f := range []string{"X-Hop", "Proxy-Authorization", "Keep-Alive", "X-Forwarded-For", "Forwarded"} {
		if v := seen.Header.Get(f); v != "" {
			t.Errorf("upstream got %s: %q", f, v)
		}
	}
	if seen.Header.Get("X-End-To-End") != "yes" {
		t.Errorf("end-to-end field lost: %v", seen.Header)
	}
}

// A body on GET, HEAD, DELETE or TRACE, which some servers would read as
// the next request, is refused; request trailers (after Decide) are not
// sent.
func TestBodiesTheUpstreamCouldMisreadRefused(t *testing.T) {
	up := newUpstream(t, false, nil)
	h := newHarness(t, up)
	h.decide = func(r Request) Verdict { return Verdict{Allow: true, Rule: "any"} }
	smuggled := "GET /admin HTTP/1.1\r\nHost: " + testHost + "\r\n\r\n"
	for _, m := range []string{"GET", "HEAD", "DELETE", "TRACE"} {
		c := h.dial(protoHTTP1)
		resp := roundTrip(t, c, bufio.NewReader(c), m+" / HTTP/1.1\r\nHost: "+testHost+"\r\nContent-Length: "+
			fmt.Sprint(len(smuggled))+"\r\n\r\n"+smuggled)
		if resp.StatusCode != http.StatusBadRequest {
			t.Fatalf("%s with a body: %d, want 400", m, resp.StatusCode)
		}
	}
	if n := up.requests.Load(); n != 0 {
		t.Fatalf("the upstream saw %d requests", n)
	}
	c := h.dial(protoHTTP1)
	resp := roundTrip(t, c, bufio.NewReader(c), "POST / HTTP/1.1\r\nHost: "+testHost+"\r\nTransfer-Encoding: chunked\r\nTrailer: X-Late\r\n\r\n"+
		"4\r\nbody\r\n0\r\nX-Late: unchecked\r\n\r\n")
	if seen := up.lastRequest(); resp.StatusCode != 200 || seen.Body != "body" || len(seen.Trailer) != 0 {
		t.Fatalf("POST with a trailer: %d, upstream saw %+v", resp.StatusCode, seen)
	}
}

// TestCleartextClient: a client speaking plain HTTP (inference.local over
// http://) is served like an inspected TLS one: each request decided, the
// allowed ones sent upstream over verified TLS, a denied one 403 and never
// sent; a request for another name, or an absolute-form https target on
// the plain connection, is refused (421) and never sent.
func TestCleartextClient(t *testing.T) {
	up := newUpstream(t, false, nil)
	h := newHarness(t, up)
	h.cleartext.Store(true)
	tr := &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "tcp", h.ln.Addr().String())
	}}
	t.Cleanup(tr.CloseIdleConnections)
	client := &http.Client{Transport: tr, Timeout: 10 * time.Second}
	status := func(method, url, host string) int {
		t.Helper()
		req, _ := http.NewRequest(method, url, nil)
		req.Host = host
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp.StatusCode
	}
	if got := status("GET", "http://"+testHost+"/v1/models", testHost); got != 200 || up.requests.Load() != 1 {
		t.Fatalf("GET: %d, upstream saw %d requests, want 200 and 1", got, up.requests.Load())
	}
	if seen := up.lastRequest(); seen.Host != testHost || seen.RequestURI != "/v1/models" {
		t.Fatalf("upstream (a TLS server) saw %+v", seen)
	}
	if got := status("DELETE", "http://"+testHost+"/v1/models", testHost); got != http.StatusForbidden {
		t.Errorf("DELETE: %d, want 403", got)
	}
	if got := status("GET", "http://"+testHost+"/x", "other.test"); got != http.StatusMisdirectedRequest {
		t.Errorf("Host other.test: %d, want 421", got)
	}
	conn, err := net.Dial("tcp", h.ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	io.WriteString(conn, "GET https://"+testHost+"/abs HTTP/1.1\r\nHost: "+testHost+"\r\n\r\n")
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil || resp.StatusCode != http.StatusMisdirectedRequest {
		t.Errorf("absolute-form https target on plain HTTP: %v %v, want 421", resp, err)
	}
	if n := up.requests.Load(); n != 1 {
		t.Errorf("the upstream saw %d requests, want 1 (the GET)", n)
	}
}
