package proxy

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/clawrun/clawrun/egress/decisionlog"
	"github.com/clawrun/clawrun/egress/internal/egresstest"
	"github.com/clawrun/clawrun/egress/rules"
	"github.com/clawrun/clawrun/runtime/policy"
	"github.com/clawrun/clawrun/runtime/policy/hostname"
)

// upstreamIP is the address the harness's resolver gives every name; its
// dialer takes it to the test's upstream server.
const upstreamIP = "192.0.2.1"

// proxyHarness is a Proxy with a lookup of fixed answers, a dialer to
// the test's own upstream, switchable rules and a recorded decision log.
type proxyHarness struct {
	t     testing.TB
	p     *Proxy
	rules atomic.Pointer[rules.Rules]
	ln    net.Listener // the proxy's listener: its port is the endpoints' port
	port  int

	mu      sync.Mutex
	records []decisionlog.Record
}

func newProxyHarness(t testing.TB, names ...string) *proxyHarness {
	t.Helper()
	h := &proxyHarness{t: t}
	h.p = &Proxy{
		Rules:         h.rules.Load,
		Lookup:        fixedLookup(names),
		ConfigAllowed: []netip.Prefix{netip.MustParsePrefix(upstreamIP + "/32")},
		Log: func(r decisionlog.Record) {
			h.mu.Lock()
			h.records = append(h.records, r)
			h.mu.Unlock()
		},
		Limits: ConnLimits{HandshakeTimeout: 5 * time.Second},
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	h.ln, h.port = ln, ln.Addr().(*net.TCPAddr).Port
	return h
}

// fixedLookup resolves names to upstreamIP, and no other name.
func fixedLookup(names []string) func(context.Context, string) ([]netip.Addr, error) {
	return func(_ context.Context, host string) ([]netip.Addr, error) {
		if name, ok := hostname.Canonical(host); ok && slices.Contains(names, name) {
			return []netip.Addr{netip.MustParseAddr(upstreamIP)}, nil
		}
		return nil, &net.DNSError{Err: "no such host", Name: host, IsNotFound: true}
	}
}

// setRules makes a generation of one policy of endpoints (on the proxy's
// port when an endpoint lists none) current.
func (h *proxyHarness) setRules(gen int64, eps ...policy.Endpoint) *rules.Rules {
	h.t.Helper()
	for i := range eps {
		if len(eps[i].Ports) == 0 {
			eps[i].Ports = []int{h.port}
		}
	}
	r, _ := rules.FromPlan([]policy.NetworkLayer{{Source: "inline", Policies: map[string]policy.NetworkPolicy{"p": {Endpoints: eps}}}}, gen)
	h.rules.Store(r)
	return r
}

// upstream dials addr for every dial the proxy makes.
func (h *proxyHarness) upstream(addr string) {
	h.p.Dial = func(ctx context.Context, network, _ string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, network, addr)
	}
}

// countDials counts the proxy's upstream dials from now on.
func (h *proxyHarness) countDials() *atomic.Int64 {
	var n atomic.Int64
	dial := h.p.Dial
	h.p.Dial = func(ctx context.Context, network, addr string) (net.Conn, error) {
		n.Add(1)
		return dial(ctx, network, addr)
	}
	return &n
}

func (h *proxyHarness) serve() {
	go func() { _ = h.p.Serve(h.ln) }()
}

func (h *proxyHarness) dial() net.Conn {
	h.t.Helper()
	c, err := net.Dial("tcp", h.ln.Addr().String())
	if err != nil {
		h.t.Fatal(err)
	}
	h.t.Cleanup(func() { c.Close() })
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	return c
}

// waitRecord waits for a decision record that match accepts.
func (h *proxyHarness) waitRecord(what string, match func(decisionlog.Record) bool) decisionlog.Record {
	h.t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		h.mu.Lock()
		for _, r := range h.records {
			if match(r) {
				h.mu.Unlock()
				return r
			}
		}
		all := fmt.Sprintf("%+v", h.records)
		h.mu.Unlock()
		if time.Now().After(deadline) {
			h.t.Fatalf("no decision record for %s; the log: %s", what, all)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// waitRecords waits until n records are picked, and returns them.
func (h *proxyHarness) waitRecords(what string, n int, pick func(decisionlog.Record) bool) []decisionlog.Record {
	h.t.Helper()
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		h.mu.Lock()
		var got []decisionlog.Record
		for _, r := range h.records {
			if pick(r) {
				got = append(got, r)
			}
		}
		all := fmt.Sprintf("%+v", h.records)
		h.mu.Unlock()
		if len(got) >= n {
			return got
		}
		if time.Now().After(deadline) {
			h.t.Fatalf("%d decision records for %s, want %d; the log: %s", len(got), what, n, all)
		}
	}
}

// recordingServer is a keep-alive HTTP server that records every request
// it reads; GET /ws with Upgrade: websocket is switched (101) to an echo.
type recordingServer struct {
	ln   net.Listener
	mu   sync.Mutex
	seen []string // "METHOD host target"
	// hold: a request for /hold signals held, then waits for hold to
	// close (setHold), so that a test can act while it is in flight.
	hold, held chan struct{}
}

// setHold makes requests for /hold wait: each sends on held, then waits
// until hold is closed.
func (s *recordingServer) setHold(hold, held chan struct{}) {
	s.mu.Lock()
	s.hold, s.held = hold, held
	s.mu.Unlock()
}

func startRecordingServer(t testing.TB) *recordingServer {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &recordingServer{ln: ln}
	srv := &http.Server{Handler: s, ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { srv.Close() })
	return s
}

func (s *recordingServer) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	s.mu.Lock()
	s.seen = append(s.seen, req.Method+" "+req.Host+" "+req.RequestURI)
	hold, held := s.hold, s.held
	s.mu.Unlock()
	if req.URL.Path == "/hold" && hold != nil {
		held <- struct{}{}
		<-hold
	}
	if req.URL.Path == "/ws" && strings.EqualFold(req.Header.Get("Upgrade"), "websocket") {
		c, brw, err := w.(http.Hijacker).Hijack()
		if err != nil {
			return
		}
		defer c.Close()
		_, _ = io.WriteString(c, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n")
		_, _ = io.Copy(c, brw) // echo
		return
	}
	_, _ = io.Copy(io.Discard, req.Body)
	fmt.Fprintf(w, "%s %s\n", req.Method, req.RequestURI)
}

func (s *recordingServer) requests() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.seen...)
}

// statuses reads responses until the proxy closes the connection and
// returns their status codes.
func statuses(t *testing.T, br *bufio.Reader) []int {
	t.Helper()
	var out []int
	for {
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			return out
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		out = append(out, resp.StatusCode)
	}
}

func webRules() []policy.Endpoint {
	return []policy.Endpoint{{Host: "web.test", Protocol: "rest", Rules: []policy.Rule{
		{Method: "GET", Path: "/public/**"},
		{Method: "GET", Path: "/ws"},
	}}}
}

// TestProxyUpgradeKeepsChecking: an Upgrade header does not switch off
// the checks of the requests after it. Only the server's 101 answer to
// that very request makes the connection a tunnel; requests pipelined
// behind an upgrade the server declined are checked one by one.
func TestProxyUpgradeKeepsChecking(t *testing.T) {
	h := newProxyHarness(t, "web.test", "denied.test")
	up := startRecordingServer(t)
	h.upstream(up.ln.Addr().String())
	h.setRules(1, webRules()...)
	h.serve()

	smuggled := "POST /admin/exfil HTTP/1.1\r\nHost: web.test\r\nContent-Length: 6\r\n\r\nsecret" +
		"DELETE /admin/users/1 HTTP/1.1\r\nHost: denied.test\r\n\r\n"
	for _, first := range []string{
		"GET /public/x HTTP/1.1\r\nHost: web.test\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n",
		"GET /public/x HTTP/1.1\r\nHost: web.test\r\n\r\n", // control: no upgrade
	} {
		before := len(up.requests())
		c := h.dial()
		if _, err := io.WriteString(c, first+smuggled); err != nil {
			t.Fatal(err)
		}
		// In order: the 403 answers the POST, after the GET's answer.
		if got := statuses(t, bufio.NewReader(c)); fmt.Sprint(got) != "[200 403]" {
			t.Errorf("%q: responses %v, want [200 403] (the allowed GET, then the POST refused)", first, got)
		}
		if seen := up.requests()[before:]; fmt.Sprint(seen) != "[GET web.test /public/x]" {
			t.Errorf("%q: the upstream received %q, want only the allowed GET", first, seen)
		}
	}
	rec := h.waitRecord("the refused POST", func(r decisionlog.Record) bool {
		return r.Decision == "deny" && r.Host == "web.test" && r.Reason == rules.ReasonRequest
	})
	if rec.Method != "POST" || rec.Path != "/admin/exfil" {
		t.Errorf("the refused POST's record names %s %s", rec.Method, rec.Path)
	}
}

// TestProxyUpgradeSwitches: a websocket upgrade the rules allow and the
// server accepts (101) carries data both ways, including bytes the client
// sent right behind its request.
func TestProxyUpgradeSwitches(t *testing.T) {
	h := newProxyHarness(t, "web.test")
	up := startRecordingServer(t)
	h.upstream(up.ln.Addr().String())
	h.setRules(1, webRules()...)
	h.serve()

	c := h.dial()
	if _, err := io.WriteString(c, "GET /ws HTTP/1.1\r\nHost: web.test\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\nearly\n"); err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, nil)
	if err != nil || resp.StatusCode != http.StatusSwitchingProtocols {
		t.Fatalf("upgrade: %v %v, want 101", resp, err)
	}
	if _, err := io.WriteString(c, "ping\n"); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"early\n", "ping\n"} {
		if line, err := br.ReadString('\n'); line != want {
			t.Errorf("echo: %q %v, want %q", line, err, want)
		}
	}
	if seen := up.requests(); fmt.Sprint(seen) != "[GET web.test /ws]" {
		t.Errorf("the upstream received %q", seen)
	}
}

// TestProxyUpgradeRefused: h2c (HTTP/2 over cleartext, by upgrade or by
// prior knowledge) cannot be checked request by request: refused; so is
// an upgrade asked for after other requests of the connection, and a
// declined upgrade leaves the connection plain HTTP (checked).
func TestProxyUpgradeRefused(t *testing.T) {
	h := newProxyHarness(t, "web.test")
	up := startRecordingServer(t)
	h.upstream(up.ln.Addr().String())
	h.setRules(1, webRules()...)
	h.serve()

	for _, tc := range []struct {
		name, send, status, seen string
	}{
		{"h2c upgrade", "GET /public/x HTTP/1.1\r\nHost: web.test\r\nConnection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAAQCAAAAAAIAAAAA\r\n\r\n", "[403]", "[]"},
		{"h2c among others", "GET /ws HTTP/1.1\r\nHost: web.test\r\nConnection: Upgrade\r\nUpgrade: websocket, h2c\r\n\r\n", "[403]", "[]"},
		{"prior knowledge", "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", "[403]", "[]"},
		{"upgrade the rules refuse", "GET /admin/ws HTTP/1.1\r\nHost: web.test\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n", "[403]", "[]"},
		{"declined upgrade, then allowed", "GET /public/a HTTP/1.1\r\nHost: web.test\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\nGET /public/b HTTP/1.1\r\nHost: web.test\r\nConnection: close\r\n\r\n", "[200 200]", "[GET web.test /public/a GET web.test /public/b]"},
	} {
		before := len(up.requests())
		c := h.dial()
		if _, err := io.WriteString(c, tc.send); err != nil {
			t.Fatal(err)
		}
		got := statuses(t, bufio.NewReader(c))
		if fmt.Sprint(got) != tc.status {
			t.Errorf("%s: responses %v, want %s", tc.name, got, tc.status)
		}
		if seen := up.requests()[before:]; fmt.Sprint(seen) != tc.seen {
			t.Errorf("%s: the upstream received %q, want %s", tc.name, seen, tc.seen)
		}
	}

	// An upgrade asked for after another request of the connection.
	before := len(up.requests())
	c := h.dial()
	br := bufio.NewReader(c)
	_, _ = io.WriteString(c, "GET /public/a HTTP/1.1\r\nHost: web.test\r\n\r\n")
	if resp, err := http.ReadResponse(br, nil); err != nil || resp.StatusCode != 200 {
		t.Fatalf("late upgrade: first request: %v %v", resp, err)
	} else {
		_, _ = io.Copy(io.Discard, resp.Body)
	}
	_, _ = io.WriteString(c, "GET /ws HTTP/1.1\r\nHost: web.test\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\nping\n")
	if got := statuses(t, br); fmt.Sprint(got) != "[403]" {
		t.Errorf("late upgrade: responses %v, want [403]", got)
	}
	if seen := up.requests()[before:]; fmt.Sprint(seen) != "[GET web.test /public/a]" {
		t.Errorf("late upgrade: the upstream received %q, want only the first request", seen)
	}
}

// TestProxyUpgradeWebsocketEndpoint: an endpoint with protocol: websocket
// and no request rules allows the upgrade.
func TestProxyUpgradeWebsocketEndpoint(t *testing.T) {
	h := newProxyHarness(t, "ws.test")
	up := startRecordingServer(t)
	h.upstream(up.ln.Addr().String())
	h.setRules(1, policy.Endpoint{Host: "ws.test", Protocol: "websocket"})
	h.serve()

	c := h.dial()
	_, _ = io.WriteString(c, "GET /ws HTTP/1.1\r\nHost: ws.test\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\nping\n")
	br := bufio.NewReader(c)
	if resp, err := http.ReadResponse(br, nil); err != nil || resp.StatusCode != http.StatusSwitchingProtocols {
		t.Fatalf("upgrade: %v %v, want 101", resp, err)
	}
	if line, err := br.ReadString('\n'); line != "ping\n" {
		t.Errorf("echo: %q %v", line, err)
	}
}

// pipeEnd is the proxy's end of a net.Pipe, seen as a TCP connection to
// local (what the client dialled). A pipe's writes return only once the
// proxy has read them: the test knows how far the proxy got.
type pipeEnd struct {
	net.Conn
	local net.Addr
}

func (c pipeEnd) LocalAddr() net.Addr { return c.local }

// handlePipe runs the proxy on one connection to port and returns the
// client's end.
func (h *proxyHarness) handlePipe(port int) net.Conn {
	h.t.Helper()
	client, server := net.Pipe()
	h.t.Cleanup(func() { client.Close() })
	_ = client.SetDeadline(time.Now().Add(10 * time.Second))
	c := pipeEnd{server, &net.TCPAddr{IP: net.ParseIP("192.0.2.200"), Port: port}}
	t, reason := h.p.admission().admit(c, time.Now())
	if t == nil {
		h.t.Fatalf("the proxy refused the connection: %s", reason)
	}
	go func() {
		defer h.p.admission().done(t)
		h.p.handle(c, t)
	}()
	return client
}

// blockingDialer holds every dial until its context ends or release is
// closed, and says when a dial starts and how it ended.
type blockingDialer struct {
	started chan struct{}
	ended   chan error
	release chan struct{}
	addr    string // where a released dial goes
}

func newBlockingDialer(t *testing.T, addr string) *blockingDialer {
	d := &blockingDialer{started: make(chan struct{}, 8), ended: make(chan error, 8), release: make(chan struct{}), addr: addr}
	t.Cleanup(func() { close(d.release) })
	return d
}

func (d *blockingDialer) Dial(ctx context.Context, network, _ string) (net.Conn, error) {
	d.started <- struct{}{}
	select {
	case <-ctx.Done():
		d.ended <- ctx.Err()
		return nil, ctx.Err()
	case <-d.release:
		var nd net.Dialer
		c, err := nd.DialContext(ctx, network, d.addr)
		d.ended <- err
		return c, err
	}
}

// TestProxyDecidesWithCurrentRules: a connection accepted before a reload
// whose ClientHello arrives after it is decided with the new rules, and
// logged with the new generation.
func TestProxyDecidesWithCurrentRules(t *testing.T) {
	h := newProxyHarness(t, "a.test", "b.test")
	up := newBlockingDialer(t, "127.0.0.1:1")
	h.p.Dial = up.Dial
	h.setRules(1, policy.Endpoint{Host: "a.test", Ports: []int{443}}, policy.Endpoint{Host: "b.test", Ports: []int{443}})

	hello := egresstest.ClientHello(t, &tls.Config{ServerName: "a.test"})
	c := h.handlePipe(443)
	// The proxy has read the first bytes: the connection is accepted and
	// waiting for the rest of its ClientHello.
	if _, err := c.Write(hello[:10]); err != nil {
		t.Fatal(err)
	}
	h.setRules(2, policy.Endpoint{Host: "b.test", Ports: []int{443}})
	h.p.Recheck()
	go func() { _, _ = c.Write(hello[10:]) }()
	r := h.decisionOrDial("a.test", up)
	if r.Decision != "deny" || r.Reason != rules.ReasonNotAllowed || r.Generation != 2 {
		t.Errorf("decision %+v, want deny not_allowed generation 2", r)
	}
	if _, err := c.Read(make([]byte, 1)); err != io.EOF {
		t.Errorf("client read: %v, want EOF (the connection closed)", err)
	}

	// Positive control: a host the new rules keep.
	hello = egresstest.ClientHello(t, &tls.Config{ServerName: "b.test"})
	c = h.handlePipe(443)
	go func() { _, _ = c.Write(hello) }()
	select {
	case <-up.started:
	case <-time.After(5 * time.Second):
		t.Fatal("b.test, still allowed, was never dialled")
	}
}

// TestProxyUnicodeServerName: a server name sent as a U-label (RFC 6066
// wants ASCII; a client that does not convert it) is refused as no server
// name and never dialled, even where the rules allow its A-label; the
// control, its A-label, is dialled.
func TestProxyUnicodeServerName(t *testing.T) {
	for _, tc := range []struct {
		sni    string
		dialed bool
	}{{"xn--bcher-kva.test", true}, {"bücher.test", false}} {
		t.Run(tc.sni, func(t *testing.T) {
			h := newProxyHarness(t, "xn--bcher-kva.test")
			up := newBlockingDialer(t, "127.0.0.1:1")
			h.p.Dial = up.Dial
			h.setRules(1, policy.Endpoint{Host: "xn--bcher-kva.test", Ports: []int{443}})
			c := h.handlePipe(443)
			go func() { _, _ = c.Write(egresstest.ClientHello(t, &tls.Config{ServerName: tc.sni})) }()
			if tc.dialed {
				select {
				case <-up.started:
				case <-time.After(5 * time.Second):
					t.Fatal("control: the A-label was never dialled")
				}
				return
			}
			if r := h.decisionOrDial("", up); r.Decision != "deny" || r.Reason != rules.ReasonNoSNI {
				t.Fatalf("decision %+v, want deny no_sni", r)
			}
		})
	}
}

// TestProxyRecheckCancelsPendingDial: a flow whose upstream dial is still
// pending when the rules change is seen by Recheck: the dial is cancelled
// and the client's connection closed.
func TestProxyRecheckCancelsPendingDial(t *testing.T) {
	for _, tc := range []struct{ name, send string }{
		{"tls", ""},
		{"http", "GET / HTTP/1.1\r\nHost: a.test\r\n\r\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newProxyHarness(t, "a.test")
			up := newBlockingDialer(t, "127.0.0.1:1")
			h.p.Dial = up.Dial
			port := 443
			send := []byte(tc.send)
			if tc.send == "" {
				send = egresstest.ClientHello(t, &tls.Config{ServerName: "a.test"})
			} else {
				port = 80
			}
			h.setRules(1, policy.Endpoint{Host: "a.test", Ports: []int{port}})
			c := h.handlePipe(port)
			go func() { _, _ = c.Write(send) }()
			<-up.started

			h.setRules(2, policy.Endpoint{Host: "b.test", Ports: []int{port}})
			h.p.Recheck()
			select {
			case err := <-up.ended:
				if !errors.Is(err, context.Canceled) {
					t.Errorf("the pending dial ended with %v, want it cancelled", err)
				}
			case <-time.After(5 * time.Second):
				t.Fatal("the pending dial to a host the reload removed was not cancelled")
			}
			if _, err := c.Read(make([]byte, 512)); err != io.EOF {
				t.Errorf("client read: %v, want EOF", err)
			}
			r := h.waitRecord("the reload's decision", func(r decisionlog.Record) bool { return r.Host == "a.test" && r.Decision == "deny" })
			if r.Generation != 2 || r.Reason != rules.ReasonNotAllowed {
				t.Errorf("decision %+v, want deny not_allowed generation 2", r)
			}
			h.mu.Lock()
			defer h.mu.Unlock()
			for _, r := range h.records {
				if r.Decision != "deny" || r.Generation != 2 {
					t.Errorf("unexpected decision %+v: the flow never connected", r)
				}
			}
		})
	}
}

// TestProxyReloadDuringDecision: a reload that lands after the decision
// read the rules but before the flow was registered for Recheck still
// applies to the flow.
func TestProxyReloadDuringDecision(t *testing.T) {
	h := newProxyHarness(t, "a.test")
	up := newBlockingDialer(t, "127.0.0.1:1")
	h.p.Dial = up.Dial
	// A policy with binaries makes the decision ask for the connection's
	// executables: the reload happens then.
	gen1 := h.setRules(1, policy.Endpoint{Host: "a.test", Ports: []int{443}})
	gen1.Layers[0].Policies = append(gen1.Layers[0].Policies, rules.Policy{Name: "tools", Binaries: []string{"/usr/bin/tool"},
		Endpoints: []rules.Endpoint{{Host: "tool.test", Ports: []int{443}}}})
	var once sync.Once
	h.p.Binaries = func(net.Conn) []string {
		once.Do(func() { h.setRules(2, policy.Endpoint{Host: "b.test", Ports: []int{443}}) })
		return nil
	}
	hello := egresstest.ClientHello(t, &tls.Config{ServerName: "a.test"})
	c := h.handlePipe(443)
	go func() { _, _ = c.Write(hello) }()
	if r := h.decisionOrDial("a.test", up); r.Decision != "deny" || r.Generation != 2 {
		t.Errorf("decision %+v, want deny with generation 2", r)
	}
}

// decisionOrDial waits for the decision on host and fails the test if
// the proxy dials first (for a host that must be denied).
func (h *proxyHarness) decisionOrDial(host string, up *blockingDialer) decisionlog.Record {
	h.t.Helper()
	deadline := time.After(5 * time.Second)
	for {
		h.mu.Lock()
		for _, r := range h.records {
			if r.Host == host {
				h.mu.Unlock()
				return r
			}
		}
		h.mu.Unlock()
		select {
		case <-up.started:
			h.t.Fatalf("the proxy dialled %s, which the reload removed", host)
		case <-deadline:
			h.t.Fatalf("no decision logged for %s", host)
		case <-time.After(10 * time.Millisecond):
		}
	}
}
