package proxy

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/clawrun/clawrun/egress/decisionlog"
	"github.com/clawrun/clawrun/egress/inspect"
	"github.com/clawrun/clawrun/egress/rules"
	"github.com/clawrun/clawrun/runtime/policy"
)

// tlsHost is the name httptest's TLS certificate is for.
const tlsHost = "example.com"

// inspectHarness is a proxyHarness whose upstream is a TLS recording
// server, with an inspection engine of a fresh CA that trusts it.
type inspectHarness struct {
	*proxyHarness
	up      *recordingServer
	clients *x509.CertPool // trusts the container's CA
}

func newInspectHarness(t testing.TB) *inspectHarness {
	t.Helper()
	h := &inspectHarness{proxyHarness: newProxyHarness(t, tlsHost), up: &recordingServer{}}
	srv := httptest.NewUnstartedServer(h.up)
	srv.EnableHTTP2 = true
	srv.StartTLS()
	t.Cleanup(srv.Close)
	h.upstream(srv.Listener.Addr().String())
	ca, err := inspect.NewCA("clawrun egress CA test", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	roots.AddCert(srv.Certificate())
	if h.p.Inspect, err = inspect.NewEngine(inspect.Config{CA: ca, RootCAs: roots}); err != nil {
		t.Fatal(err)
	}
	h.clients = x509.NewCertPool()
	h.clients.AddCert(ca.Certificate())
	return h
}

// dialTLS opens a TLS connection to tlsHost through the proxy, trusting
// roots, offering protos (ALPN).
func (h *inspectHarness) dialTLS(roots *x509.CertPool, protos ...string) (*tls.Conn, error) {
	c := h.dial()
	tc := tls.Client(c, &tls.Config{ServerName: tlsHost, RootCAs: roots, NextProtos: protos})
	return tc, tc.Handshake()
}

// getOnNewConn opens an inspected connection, sends GET / on it and
// fails the test unless it is answered 200 (what says who asked); the
// connection is closed after.
func (h *inspectHarness) getOnNewConn(t *testing.T, what string) {
	t.Helper()
	c, err := h.dialTLS(h.clients)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if code, _ := send(t, c, bufio.NewReader(c), "GET", "/", ""); code != 200 {
		t.Fatalf("GET %s: %d", what, code)
	}
}

// send writes one HTTP/1.1 request on c and reads its response.
func send(t *testing.T, c net.Conn, br *bufio.Reader, method, target, body string) (int, string) {
	t.Helper()
	fmt.Fprintf(c, "%s %s HTTP/1.1\r\nHost: %s\r\nContent-Length: %d\r\n\r\n%s", method, target, tlsHost, len(body), body)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatalf("%s %s: %v", method, target, err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	return resp.StatusCode, string(b)
}

// TestProxyInspectsReadOnly: a read-only endpoint is inspected: the client
// gets a certificate of the container's CA, GET goes upstream, POST is
// answered 403 and never reaches it, and the connection serves the next
// request. Each request is one decision record.
func TestProxyInspectsReadOnly(t *testing.T) {
	h := newInspectHarness(t)
	h.setRules(1, policy.Endpoint{Host: tlsHost, Protocol: "rest", Access: "read-only"})
	h.serve()
	c, err := h.dialTLS(h.clients)
	if err != nil {
		t.Fatalf("handshake with the container's CA: %v", err)
	}
	br := bufio.NewReader(c)
	if code, body := send(t, c, br, "GET", "/a", ""); code != 200 || body != "GET /a\n" {
		t.Fatalf("GET: %d %q", code, body)
	}
	if code, body := send(t, c, br, "POST", "/b", "secret"); code != 403 || !strings.Contains(body, `"rule":"p"`) {
		t.Fatalf("POST: %d %q", code, body)
	}
	if code, _ := send(t, c, br, "GET", "/c", ""); code != 200 {
		t.Fatalf("GET after the refusal: %d", code)
	}
	hostPort := fmt.Sprintf("%s:%d", tlsHost, h.port)
	if got, want := h.up.requests(), []string{"GET " + hostPort + " /a", "GET " + hostPort + " /c"}; !slices.Equal(got, want) {
		t.Errorf("the upstream saw %q, want %q", got, want)
	}
	deny := h.waitRecord("the POST", func(r decisionlog.Record) bool { return r.Protocol == "https" && r.Method == "POST" })
	if deny.Decision != "deny" || deny.Reason != "request" || deny.Rule != "p" || deny.Path != "/b" || deny.Status != 403 || deny.Host != tlsHost {
		t.Errorf("POST record: %+v", deny)
	}
	get := h.waitRecord("GET /a", func(r decisionlog.Record) bool { return r.Protocol == "https" && r.Path == "/a" })
	if get.Decision != "allow" || get.Status != 200 || get.Generation != 1 {
		t.Errorf("GET record: %+v", get)
	}
	c.Close()
	conn := h.waitRecord("the connection", func(r decisionlog.Record) bool { return r.Protocol == "tls" })
	if conn.Decision != "allow" || !conn.Inspected || conn.ResolvedIP != upstreamIP {
		t.Errorf("connection record: %+v", conn)
	}
}

// TestProxyInspectReload: a request after a reload is decided with the
// new generation, and a connection the new rules no longer allow is
// closed.
func TestProxyInspectReload(t *testing.T) {
	h := newInspectHarness(t)
	h.setRules(1, policy.Endpoint{Host: tlsHost, Protocol: "rest", Access: "read-write"})
	h.serve()
	c, err := h.dialTLS(h.clients)
	if err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(c)
	if code, _ := send(t, c, br, "POST", "/a", "x"); code != 200 {
		t.Fatalf("POST under read-write: %d", code)
	}
	h.setRules(2, policy.Endpoint{Host: tlsHost, Protocol: "rest", Access: "read-only"})
	if n := h.p.Recheck(); n != 0 {
		t.Errorf("Recheck closed %d connections the new rules allow", n)
	}
	if code, _ := send(t, c, br, "POST", "/b", "x"); code != 403 {
		t.Fatalf("POST after the reload to read-only: %d", code)
	}
	rec := h.waitRecord("POST /b", func(r decisionlog.Record) bool { return r.Path == "/b" })
	if rec.Generation != 2 || rec.Decision != "deny" {
		t.Errorf("record: %+v", rec)
	}
	h.setRules(3, policy.Endpoint{Host: "other.test", Protocol: "rest", Access: "read-only"})
	if n := h.p.Recheck(); n != 1 {
		t.Errorf("Recheck closed %d connections, want 1", n)
	}
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	fmt.Fprintf(c, "GET /c HTTP/1.1\r\nHost: %s\r\n\r\n", tlsHost)
	if _, err := http.ReadResponse(br, nil); err == nil {
		t.Error("the connection the new rules deny still answers")
	}
	if got := h.up.requests(); len(got) != 1 {
		t.Errorf("the upstream saw %q", got)
	}
}

// TestProxyInspectH2: HTTP/2 streams are decided one by one too.
func TestProxyInspectH2(t *testing.T) {
	h := newInspectHarness(t)
	h.setRules(1, policy.Endpoint{Host: tlsHost, Protocol: "rest", Access: "read-only"})
	h.serve()
	tr := &http.Transport{ForceAttemptHTTP2: true, TLSClientConfig: &tls.Config{RootCAs: h.clients},
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "tcp", h.ln.Addr().String())
		}}
	t.Cleanup(tr.CloseIdleConnections)
	client := &http.Client{Timeout: 10 * time.Second, Transport: tr}
	url := fmt.Sprintf("https://%s:%d", tlsHost, h.port)
	resp, err := client.Get(url + "/a")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 || resp.ProtoMajor != 2 {
		t.Fatalf("GET: %d %s", resp.StatusCode, resp.Proto)
	}
	resp, err = client.Post(url+"/b", "text/plain", strings.NewReader("x"))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 403 {
		t.Fatalf("POST: %d", resp.StatusCode)
	}
	if got := h.up.requests(); len(got) != 1 || got[0] != fmt.Sprintf("GET %s:%d /a", tlsHost, h.port) {
		t.Errorf("the upstream saw %q", got)
	}
}

// TestProxyInspectMCP: the tool of an MCP tools/call decides; a refused
// call gets a JSON-RPC error and never reaches the server.
func TestProxyInspectMCP(t *testing.T) {
	h := newInspectHarness(t)
	h.setRules(1, policy.Endpoint{Host: tlsHost, Protocol: "mcp", Path: "/mcp",
		Rules: []policy.Rule{{Method: "initialize"}, {Method: "tools/call", Tool: "search"}}})
	h.serve()
	c, err := h.dialTLS(h.clients)
	if err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(c)
	call := func(tool string) (int, string) {
		return send(t, c, br, "POST", "/mcp", fmt.Sprintf(`{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":%q}}`, tool))
	}
	if code, _ := call("search"); code != 200 {
		t.Fatalf("allowed tool: %d", code)
	}
	code, body := call("exec")
	var answer struct {
		Error struct{ Code int } `json:"error"`
	}
	if err := json.Unmarshal([]byte(body), &answer); err != nil || code != 200 || answer.Error.Code != inspect.RPCCodeDenied {
		t.Fatalf("denied tool: %d %q", code, body)
	}
	if got := h.up.requests(); len(got) != 1 {
		t.Errorf("the upstream saw %q, want only the allowed call", got)
	}
	rec := h.waitRecord("the denied call", func(r decisionlog.Record) bool { return r.Decision == "deny" && r.Protocol == "https" })
	if !slices.Equal(rec.Calls, []string{"tools/call:exec"}) || rec.Reason != "rpc" {
		t.Errorf("record: %+v", rec)
	}
}

// TestProxyInspectWithoutEngine: an endpoint to inspect is denied by a
// proxy that has no engine, never spliced unchecked.
func TestProxyInspectWithoutEngine(t *testing.T) {
	h := newInspectHarness(t)
	h.p.Inspect = nil
	h.setRules(1, policy.Endpoint{Host: tlsHost, Protocol: "rest", Access: "read-only"})
	h.serve()
	if _, err := h.dialTLS(nil); err == nil {
		t.Fatal("TLS to an inspected endpoint went through a proxy without an engine")
	}
	rec := h.waitRecord("the connection", func(r decisionlog.Record) bool { return r.Protocol == "tls" })
	if rec.Decision != "deny" || rec.Reason != "unenforceable" {
		t.Errorf("record: %+v", rec)
	}
	if got := h.up.requests(); len(got) != 0 {
		t.Errorf("the upstream saw %q", got)
	}
}

// TestProxyPassThroughSplices: an endpoint without request fields is
// spliced: the client sees the upstream's own certificate.
func TestProxyPassThroughSplices(t *testing.T) {
	h := newInspectHarness(t)
	h.setRules(1, policy.Endpoint{Host: tlsHost})
	h.serve()
	// httptest's certificate is its own: trusting only the container's
	// CA, the client refuses it.
	if _, err := h.dialTLS(h.clients); err == nil {
		t.Fatal("the client trusted a spliced upstream through the container's CA")
	}
	c2 := h.dial()
	tc := tls.Client(c2, &tls.Config{ServerName: tlsHost, InsecureSkipVerify: true})
	if err := tc.Handshake(); err != nil {
		t.Fatal(err)
	}
	if issuer := tc.ConnectionState().PeerCertificates[0].Issuer.CommonName; strings.Contains(issuer, "clawrun") {
		t.Errorf("pass-through endpoint re-signed by %q", issuer)
	}
}

// TestProxyRecheckInspectsNow: a spliced connection to an endpoint that a
// reload makes inspected is closed: its requests were never read.
func TestProxyRecheckInspectsNow(t *testing.T) {
	h := newInspectHarness(t)
	h.setRules(1, policy.Endpoint{Host: tlsHost})
	h.serve()
	tc := tls.Client(h.dial(), &tls.Config{ServerName: tlsHost, InsecureSkipVerify: true})
	if err := tc.Handshake(); err != nil {
		t.Fatal(err)
	}
	h.setRules(2, policy.Endpoint{Host: tlsHost, Protocol: "rest", Access: "read-only"})
	if n := h.p.Recheck(); n != 1 {
		t.Errorf("Recheck closed %d connections, want 1", n)
	}
	rec := h.waitRecord("the cut", func(r decisionlog.Record) bool { return r.Generation == 2 && r.Decision == "deny" })
	if rec.Reason != "inspect_required" {
		t.Errorf("record: %+v", rec)
	}
}

// BenchmarkProxyInspectRequest is the filter's cost of one request on an
// inspected keep-alive connection: decided by the rules, sent upstream,
// answered, and its record written to a decision log as the filter writes
// it. Run with -benchmem for the allocations per request,
// -cpuprofile/-memprofile for where.
func BenchmarkProxyInspectRequest(b *testing.B) {
	h := newInspectHarness(b)
	log, err := decisionlog.NewLog(filepath.Join(b.TempDir(), "decisions.log"), 1<<30, 1)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { log.Close() })
	h.p.Log = func(r decisionlog.Record) { _ = log.Write(r) }
	h.setRules(1, policy.Endpoint{Host: tlsHost, Protocol: "rest", Access: "read-only"})
	h.serve()
	c, err := h.dialTLS(h.clients)
	if err != nil {
		b.Fatal(err)
	}
	_ = c.SetDeadline(time.Time{})
	br := bufio.NewReader(c)
	request := "GET /v1/models?limit=10 HTTP/1.1\r\nHost: " + tlsHost + "\r\nUser-Agent: bench\r\nAccept: */*\r\n\r\n"
	for b.Loop() {
		if _, err := io.WriteString(c, request); err != nil {
			b.Fatal(err)
		}
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			b.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 {
			b.Fatalf("status %d", resp.StatusCode)
		}
	}
}

// TestProxyInspectSharesUpstreamUntilReload: inspected connections one
// after the other share one upstream connection (no new dial and TLS
// handshake each), each connection's record still names the address the
// proxy checked; after a reload the next connection dials anew.
func TestProxyInspectSharesUpstreamUntilReload(t *testing.T) {
	h := newInspectHarness(t)
	h.setRules(1, policy.Endpoint{Host: tlsHost, Protocol: "rest", Access: "read-only"})
	dials := h.countDials()
	h.serve()
	h.getOnNewConn(t, "first")
	h.getOnNewConn(t, "second")
	if n := dials.Load(); n != 1 {
		t.Fatalf("two inspected connections one after the other: %d upstream dials, want 1", n)
	}
	// The second connection's record names the address too, though its
	// request went on the first one's upstream connection.
	conns := h.waitRecords("both connections", 2, func(r decisionlog.Record) bool { return r.Protocol == "tls" })
	for _, r := range conns {
		if r.ResolvedIP != upstreamIP {
			t.Errorf("connection record: resolved %q, want %q", r.ResolvedIP, upstreamIP)
		}
	}
	h.setRules(2, policy.Endpoint{Host: tlsHost, Protocol: "rest", Access: "read-only"})
	h.p.Recheck()
	h.getOnNewConn(t, "after the reload")
	if n := dials.Load(); n != 2 {
		t.Fatalf("after a reload: %d upstream dials in all, want a new one (2)", n)
	}
}

// TestProxyInspectSharesUpstreamByAllowedIPs: connections whose binaries
// the rules allow different addresses do not share upstream connections
// (each reuses only what its own dial could have made); those with the
// same do.
func TestProxyInspectSharesUpstreamByAllowedIPs(t *testing.T) {
	h := newInspectHarness(t)
	ep := func(allowed string) policy.Endpoint {
		return policy.Endpoint{Host: tlsHost, Ports: []int{h.port}, Protocol: "rest", Access: "read-only", AllowedIPs: []string{allowed}}
	}
	r, err := rules.FromPlan([]policy.NetworkLayer{{Source: "inline", Policies: map[string]policy.NetworkPolicy{
		"a": {Endpoints: []policy.Endpoint{ep(upstreamIP + "/32")}, Binaries: []policy.Binary{{Path: "/usr/bin/a"}}},
		"b": {Endpoints: []policy.Endpoint{ep("192.0.2.0/24")}, Binaries: []policy.Binary{{Path: "/usr/bin/b"}}},
	}}}, 1)
	if err != nil {
		t.Fatal(err)
	}
	h.rules.Store(r)
	var exe atomic.Value
	h.p.Binaries = func(net.Conn) []string { return []string{exe.Load().(string)} }
	dials := h.countDials()
	h.serve()
	for i, bin := range []string{"/usr/bin/a", "/usr/bin/b", "/usr/bin/a", "/usr/bin/b"} {
		exe.Store(bin)
		h.getOnNewConn(t, "by "+bin)
		if want := min(i+1, 2); dials.Load() != int64(want) {
			t.Fatalf("after connection %d (%s): %d upstream dials, want %d", i+1, bin, dials.Load(), want)
		}
	}
}

// TestProxyInspectUpstreamOfOldRulesNotReused: an upstream connection in
// use across a reload (so not closed as idle) is never reused by a flow
// admitted under the new rules, which dials its own. Two guards keep it
// so, each enough: the reload drops the old pools (DropUpstreamConns,
// whose CloseIdleConnections also closes connections that come back to
// them later), and the pool key holds the rules that admitted the flow.
func TestProxyInspectUpstreamOfOldRulesNotReused(t *testing.T) {
	h := newInspectHarness(t)
	ep := policy.Endpoint{Host: tlsHost, Protocol: "rest", Access: "read-only"}
	h.setRules(1, ep)
	hold, held := make(chan struct{}), make(chan struct{}, 1)
	h.up.setHold(hold, held)
	release := sync.OnceFunc(func() { close(hold) })
	t.Cleanup(release) // before the upstream's Close, which waits for its handlers
	dials := h.countDials()
	h.serve()
	a, err := h.dialTLS(h.clients)
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	answered := make(chan error, 1)
	go func() {
		fmt.Fprintf(a, "GET /hold HTTP/1.1\r\nHost: %s\r\n\r\n", tlsHost)
		resp, err := http.ReadResponse(bufio.NewReader(a), nil)
		if err == nil {
			_, err = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
		}
		answered <- err
	}()
	select {
	case <-held:
	case <-time.After(10 * time.Second):
		t.Fatal("the held request never reached the upstream")
	}
	h.setRules(2, ep)
	h.p.Recheck()
	release()
	if err := <-answered; err != nil {
		t.Fatalf("the held request: %v", err)
	}
	time.Sleep(50 * time.Millisecond) // its upstream connection back in the idle pool
	h.getOnNewConn(t, "after the reload")
	if n := dials.Load(); n != 2 {
		t.Fatalf("a flow admitted after the reload: %d upstream dials in all, want its own (2)", n)
	}
}
