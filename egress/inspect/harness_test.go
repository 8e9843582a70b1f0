package inspect

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/net/http2"
)

// testHost is the server name the filter matched, in every test.
const testHost = "api.example.test"

// upstream is a TLS server standing for the real one: its own CA (the
// engine's RootCAs), a leaf for testHost, and a count of the requests and
// connections that reached it.
type upstream struct {
	srv      *httptest.Server
	roots    *x509.CertPool
	requests atomic.Int64
	conns    atomic.Int64
	closed   atomic.Int64 // connections the server closed (not hijacked ones)
	mu       sync.Mutex
	last     *seenRequest
}

// seenRequest is what the upstream got of a request.
type seenRequest struct {
	Method, Host, RequestURI, Proto string
	Header, Trailer                 http.Header
	Body                            string
}

func newUpstream(t testing.TB, h2 bool, handler http.HandlerFunc) *upstream {
	t.Helper()
	roots, leaf := upstreamLeaf(t)
	return startUpstream(t, h2, roots, leaf, handler, nil)
}

// upstreamLeaf is a new CA's pool and its leaf for testHost.
func upstreamLeaf(t testing.TB) (*x509.CertPool, tls.Certificate) {
	t.Helper()
	ca, err := NewCA("upstream test CA", 24*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := ca.Leaf(testHost)
	if err != nil {
		t.Fatal(err)
	}
	return poolOf(ca.Certificate()), *leaf
}

func newUpstreamWithCert(t testing.TB, h2 bool, roots *x509.CertPool, cert tls.Certificate, handler http.HandlerFunc) *upstream {
	t.Helper()
	return startUpstream(t, h2, roots, cert, handler, nil)
}

// newUpstreamConfigured is newUpstream whose server configure changes
// before it starts.
func newUpstreamConfigured(t testing.TB, handler http.HandlerFunc, configure func(*http.Server)) *upstream {
	t.Helper()
	roots, leaf := upstreamLeaf(t)
	return startUpstream(t, false, roots, leaf, handler, configure)
}

func startUpstream(t testing.TB, h2 bool, roots *x509.CertPool, cert tls.Certificate, handler http.HandlerFunc, configure func(*http.Server)) *upstream {
	t.Helper()
	u := &upstream{roots: roots}
	u.srv = httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		u.requests.Add(1)
		body, _ := io.ReadAll(r.Body)
		u.mu.Lock()
		u.last = &seenRequest{Method: r.Method, Host: r.Host, RequestURI: r.RequestURI, Proto: r.Proto, Header: r.Header.Clone(), Trailer: r.Trailer.Clone(), Body: string(body)}
		u.mu.Unlock()
		if handler != nil {
			handler(w, r)
			return
		}
		io.WriteString(w, "upstream says hi")
	}))
	u.srv.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		switch s {
		case http.StateNew:
			u.conns.Add(1)
		case http.StateClosed:
			u.closed.Add(1)
		}
	}
	u.srv.TLS = &tls.Config{Certificates: []tls.Certificate{cert}}
	u.srv.EnableHTTP2 = h2
	if configure != nil {
		configure(u.srv.Config)
	}
	u.srv.StartTLS()
	t.Cleanup(u.srv.Close)
	return u
}

func (u *upstream) lastRequest() *seenRequest {
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.last
}

func (u *upstream) addr() string { return u.srv.Listener.Addr().String() }

// harness is the engine behind a loopback listener, as the filter would
// run it: every accepted connection's first TLS record is read (as the
// filter reads the ClientHello) and replayed through Options.Prefix.
type harness struct {
	t       testing.TB
	ca      *CA
	engine  *Engine
	up      *upstream
	ln      net.Listener
	accepts atomic.Int64
	logs    logSink
	errLog  strings.Builder // net/http's complaints (Config.ErrorLog)
	errMu   sync.Mutex

	// What the harness passes to Serve, changeable before the first
	// connection.
	decide     func(Request) Verdict
	inspectRPC func(Request) bool
	rewrite    func(*http.Request) error
	port       int
	// upstream and upstreamPort are Options.Upstream and UpstreamPort.
	upstream     string
	upstreamPort int
	// cleartext is Options.Cleartext: the harness serves plain HTTP.
	cleartext atomic.Bool
	// pool is Options.Pool when not "" (a string), changeable between
	// connections.
	pool atomic.Value
	// upstreamConn, when set, wraps every upstream connection dialled.
	upstreamConn func(net.Conn) net.Conn
}

// allowGETs is the tests' policy: GET, HEAD and OPTIONS allowed, the rest
// denied by rule "test-policy".
func allowGETs(r Request) Verdict {
	switch r.Method {
	case http.MethodGet, http.MethodHead, http.MethodOptions:
		return Verdict{Allow: true, Rule: "test-policy", Reason: "allowed"}
	}
	return Verdict{Rule: "test-policy", Reason: "method"}
}

func newHarness(t testing.TB, up *upstream) *harness {
	t.Helper()
	ca, err := NewCA("container test CA", 24*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	h := &harness{t: t, ca: ca, up: up, decide: allowGETs, port: 443}
	h.engine, err = NewEngine(Config{CA: ca, RootCAs: up.roots, ErrorLog: newLogger(h)})
	if err != nil {
		t.Fatal(err)
	}
	h.ln, err = net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	t.Cleanup(func() {
		h.ln.Close()
		cancel()
		wg.Wait()
	})
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := h.ln.Accept()
			if err != nil {
				return
			}
			h.accepts.Add(1)
			wg.Add(1)
			go func() {
				defer wg.Done()
				h.serve(ctx, c)
			}()
		}
	}()
	return h
}

func (h *harness) serve(ctx context.Context, c net.Conn) {
	var prefix []byte
	if !h.cleartext.Load() {
		var err error
		if prefix, err = readRecord(c); err != nil {
			c.Close()
			return
		}
	}
	_ = h.engine.Serve(ctx, c, Options{
		ServerName: testHost,
		Port:       h.port,
		Prefix:     prefix,
		DialUpstream: func(ctx context.Context) (net.Conn, error) {
			var d net.Dialer
			c, err := d.DialContext(ctx, "tcp", h.up.addr())
			if err == nil && h.upstreamConn != nil {
				c = h.upstreamConn(c)
			}
			return c, err
		},
		Decide:       h.decide,
		InspectRPC:   h.inspectRPC,
		Rewrite:      h.rewrite,
		Log:          h.logs.add,
		Upstream:     h.upstream,
		UpstreamPort: h.upstreamPort,
		Cleartext:    h.cleartext.Load(),
		Pool:         h.poolOption(),
	})
}

func (h *harness) poolOption() any {
	if p, _ := h.pool.Load().(string); p != "" {
		return p
	}
	return nil
}

// readRecord reads one whole TLS record (the ClientHello, as the filter
// reads it before deciding).
func readRecord(c net.Conn) ([]byte, error) {
	head := make([]byte, 5)
	if _, err := io.ReadFull(c, head); err != nil {
		return nil, err
	}
	if head[0] != 0x16 {
		return nil, errors.New("not a TLS handshake record")
	}
	body := make([]byte, int(head[3])<<8|int(head[4]))
	if _, err := io.ReadFull(c, body); err != nil {
		return nil, err
	}
	return append(head, body...), nil
}

func newLogger(h *harness) *log.Logger { return log.New(&logWriter{h}, "", 0) }

// clientTLS trusts the container's CA, as a client in the container does.
func (h *harness) clientTLS(protos ...string) *tls.Config {
	return &tls.Config{RootCAs: poolOf(h.ca.Certificate()), ServerName: testHost, NextProtos: protos}
}

// dial opens a TLS connection to the engine.
func (h *harness) dial(protos ...string) *tls.Conn {
	h.t.Helper()
	c, err := tls.Dial("tcp", h.ln.Addr().String(), h.clientTLS(protos...))
	if err != nil {
		h.t.Fatal(err)
	}
	h.t.Cleanup(func() { c.Close() })
	return c
}

// h1Client is an HTTP/1.1 client whose every connection goes to the
// engine.
func (h *harness) h1Client() *http.Client {
	tr := &http.Transport{
		TLSClientConfig: h.clientTLS(protoHTTP1),
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "tcp", h.ln.Addr().String())
		},
		DisableCompression: true,
	}
	h.t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr, Timeout: 10 * time.Second}
}

// h2Client is an HTTP/2 client whose every connection goes to the engine.
func (h *harness) h2Client() *http.Client {
	return h.h2ClientTo(h.ln.Addr().String(), h.clientTLS(protoH2))
}

// h2ClientTo is an HTTP/2 client whose every connection goes to addr.
func (h *harness) h2ClientTo(addr string, cfg *tls.Config) *http.Client {
	tr := &http2.Transport{
		TLSClientConfig: cfg,
		DialTLSContext: func(ctx context.Context, _, _ string, cfg *tls.Config) (net.Conn, error) {
			var d tls.Dialer
			d.Config = cfg
			return d.DialContext(ctx, "tcp", addr)
		},
	}
	h.t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr, Timeout: 10 * time.Second}
}

// roundTrip writes a raw HTTP/1.1 request on c and reads the answer.
func roundTrip(t testing.TB, c net.Conn, br *bufio.Reader, raw string) *http.Response {
	t.Helper()
	if _, err := io.WriteString(c, raw); err != nil {
		t.Fatal(err)
	}
	_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
	method, _, _ := strings.Cut(raw, " ")
	resp, err := http.ReadResponse(br, &http.Request{Method: method})
	if err != nil {
		t.Fatalf("reading the answer to %q: %v", raw, err)
	}
	resp.Body = io.NopCloser(strings.NewReader(readAll(t, resp.Body)))
	return resp
}

func readAll(t testing.TB, r io.Reader) string {
	t.Helper()
	b, err := io.ReadAll(r)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// logSink keeps the engine's decisions.
type logSink struct {
	mu        sync.Mutex
	decisions []Decision
	added     chan struct{}
}

func (l *logSink) add(d Decision) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.decisions = append(l.decisions, d)
	if l.added != nil {
		select {
		case l.added <- struct{}{}:
		default:
		}
	}
}

func (l *logSink) all() []Decision {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]Decision(nil), l.decisions...)
}

// find returns the first decision with reason, waiting a little for it
// (a decision is logged once its answer is on its way).
func (l *logSink) find(t testing.TB, reason string) Decision {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		for _, d := range l.all() {
			if d.Reason == reason {
				return d
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("no decision with reason %q in %s", reason, l.json())
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func (l *logSink) json() string {
	b, _ := json.Marshal(l.all())
	return string(b)
}

// logWriter collects Config.ErrorLog's output.
type logWriter struct{ h *harness }

func (w *logWriter) Write(p []byte) (int, error) {
	w.h.errMu.Lock()
	defer w.h.errMu.Unlock()
	return w.h.errLog.Write(p)
}
