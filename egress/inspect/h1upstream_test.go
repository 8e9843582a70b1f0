package inspect

import (
	"bufio"
	"context"
	"crypto/tls"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"
)

// allowAll is a policy that allows every request (rule "test-policy").
func allowAll(Request) Verdict { return Verdict{Allow: true, Rule: "test-policy", Reason: "allowed"} }

// Which requests h1Upstream sends itself, leaving its connection idle in
// its own list, and which go through the Transport: every one arrives
// whole either way.
func TestUpstreamInlineOrTransport(t *testing.T) {
	up := newUpstream(t, false, nil)
	dial := func(ctx context.Context, _, _ string) (net.Conn, error) {
		d := tls.Dialer{Config: &tls.Config{RootCAs: up.roots, ServerName: testHost, NextProtos: []string{protoHTTP1}}}
		return d.DialContext(ctx, "tcp", up.addr())
	}
	tests := []struct {
		name, method string
		body         int  // bytes; -1: of unknown length (chunked)
		expect       bool // Expect: 100-continue
		inline       bool
	}{
		{"GET", http.MethodGet, 0, false, true},
		{"HEAD", http.MethodHead, 0, false, true},
		{"DELETE without a body", http.MethodDelete, 0, false, true},
		{"POST of 1 KiB", http.MethodPost, 1 << 10, false, true},
		{"POST of maxInlineBody", http.MethodPost, maxInlineBody, false, true},
		{"POST over maxInlineBody", http.MethodPost, maxInlineBody + 1, false, false},
		{"POST of unknown length", http.MethodPost, -1, false, false},
		{"POST with Expect: 100-continue", http.MethodPost, 10, true, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			transport := newTransport(false, time.Minute, 0)
			transport.DialTLSContext = dial
			u := newH1Upstream(transport)
			defer u.CloseIdleConnections()
			var body io.Reader
			want := ""
			if tt.body != 0 {
				want = strings.Repeat("b", max(tt.body, 100))
				body = strings.NewReader(want)
				if tt.body < 0 {
					body = io.MultiReader(body) // hides its length
				}
			}
			req, err := http.NewRequest(tt.method, "https://"+testHost+"/", body)
			if err != nil {
				t.Fatal(err)
			}
			if tt.expect {
				req.Header.Set("Expect", "100-continue")
			}
			resp, err := u.RoundTrip(req)
			if err != nil {
				t.Fatal(err)
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			seen := up.lastRequest()
			if resp.StatusCode != 200 || seen.Method != tt.method || seen.Body != want {
				t.Fatalf("%d; the upstream saw %s with %d bytes, want %d", resp.StatusCode, seen.Method, len(seen.Body), len(want))
			}
			u.mu.Lock()
			inline := len(u.idle) == 1
			u.mu.Unlock()
			if inline != tt.inline {
				t.Fatalf("sent inline: %v, want %v", inline, tt.inline)
			}
		})
	}
}

// waitFor polls cond for up to 5 s.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); !cond(); time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
	}
}

// requestOnNewConnection sends raw on a new client connection and returns
// the answer.
func requestOnNewConnection(t *testing.T, h *harness, raw string) *http.Response {
	t.Helper()
	c := h.dial(protoHTTP1)
	defer c.Close()
	return roundTrip(t, c, bufio.NewReader(c), raw)
}

// socketHidden is an upstream connection without a SyscallConn.
type socketHidden struct{ net.Conn }

// An idle upstream connection its server closed is not used for the next
// request: the engine sees the close on the socket, and a POST (which is
// never sent twice) goes on a new connection. Without a socket to look
// at, a GET that meets the closed connection is sent again on a new one,
// and a POST fails (502) rather than risk being sent twice.
func TestUpstreamIdleConnectionClosedByServer(t *testing.T) {
	const (
		get  = "GET / HTTP/1.1\r\nHost: " + testHost + "\r\n\r\n"
		post = "POST /items HTTP/1.1\r\nHost: " + testHost + "\r\nContent-Length: 3\r\n\r\nx=1"
	)
	// idleClosed: the upstream connection of the last answer is closed
	// by its server, idle.
	idleClosed := func(t *testing.T, up *upstream) {
		want := up.conns.Load()
		waitFor(t, "the server to close its idle connection", func() bool { return up.closed.Load() == want })
		time.Sleep(20 * time.Millisecond) // its close reaches the engine's socket
	}
	// afterIdleClose: a GET answered, on an upstream connection its
	// server then closed, idle.
	afterIdleClose := func(t *testing.T, wrap func(net.Conn) net.Conn) (*upstream, *harness) {
		up := newUpstreamConfigured(t, nil, func(s *http.Server) { s.IdleTimeout = 100 * time.Millisecond })
		h := newHarness(t, up)
		h.decide = allowAll
		h.pool.Store("rules-1")
		h.upstreamConn = wrap
		if resp := requestOnNewConnection(t, h, get); resp.StatusCode != 200 {
			t.Fatalf("GET: %d", resp.StatusCode)
		}
		idleClosed(t, up)
		return up, h
	}
	t.Run("socket looked at", func(t *testing.T) {
		up, h := afterIdleClose(t, nil)
		resp := requestOnNewConnection(t, h, post)
		if resp.StatusCode != 200 || up.requests.Load() != 2 || up.conns.Load() != 2 {
			t.Fatalf("POST after the idle connection closed: %d; the upstream saw %d requests on %d connections, want 200, 2 on 2",
				resp.StatusCode, up.requests.Load(), up.conns.Load())
		}
		if seen := up.lastRequest(); seen.Method != http.MethodPost || seen.Body != "x=1" {
			t.Fatalf("the upstream saw %s %q", seen.Method, seen.Body)
		}
	})
	t.Run("no socket to look at", func(t *testing.T) {
		up, h := afterIdleClose(t, func(c net.Conn) net.Conn { return socketHidden{c} })
		resp := requestOnNewConnection(t, h, get)
		if resp.StatusCode != 200 || up.requests.Load() != 2 || up.conns.Load() != 2 {
			t.Fatalf("GET on the closed connection: %d; the upstream saw %d requests on %d connections, want 200, 2 on 2",
				resp.StatusCode, up.requests.Load(), up.conns.Load())
		}
		idleClosed(t, up)
		resp = requestOnNewConnection(t, h, post)
		if resp.StatusCode != http.StatusBadGateway || up.requests.Load() != 2 {
			t.Fatalf("POST on the closed connection: %d, the upstream saw %d requests; want 502 and 2", resp.StatusCode, up.requests.Load())
		}
	})
}

// hijackingUpstream is an upstream whose handler for path writes raw on
// the connection itself; the connection stays open until the test ends.
func hijackingUpstream(t *testing.T, path string, write func(w *bufio.ReadWriter)) *upstream {
	var (
		mu   sync.Mutex
		held []net.Conn
	)
	t.Cleanup(func() {
		mu.Lock()
		defer mu.Unlock()
		for _, c := range held {
			c.Close()
		}
	})
	return newUpstream(t, false, func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != path {
			io.WriteString(w, "upstream says hi")
			return
		}
		c, rw, err := http.NewResponseController(w).Hijack()
		if err != nil {
			t.Error(err)
			return
		}
		mu.Lock()
		held = append(held, c)
		mu.Unlock()
		write(rw)
	})
}

// An upstream connection is not reused after an answer that ends it:
//   - bytes the upstream sends after an answer, asked for by no request,
//     are never read as the answer to the next one;
//   - an answer with Connection: close is the last on its connection,
//     even when the server leaves the connection open.
//
// The next request goes on a new connection and gets its own answer.
func TestUpstreamConnectionNotReusedAfter(t *testing.T) {
	for _, tc := range []struct {
		name, first string
		write       func(w *bufio.ReadWriter)
	}{
		{"stray bytes", "ok", func(w *bufio.ReadWriter) {
			io.WriteString(w, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
			w.Flush()
			time.Sleep(50 * time.Millisecond) // after the answer was read
			io.WriteString(w, "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nstray")
			w.Flush()
		}},
		{"Connection: close", "last", func(w *bufio.ReadWriter) {
			io.WriteString(w, "HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 4\r\n\r\nlast")
			w.Flush()
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			up := hijackingUpstream(t, "/raw", tc.write)
			h := newHarness(t, up)
			h.pool.Store("rules-1")
			if resp := requestOnNewConnection(t, h, "GET /raw HTTP/1.1\r\nHost: "+testHost+"\r\n\r\n"); readAll(t, resp.Body) != tc.first {
				t.Fatalf("the first answer is not %q", tc.first)
			}
			time.Sleep(150 * time.Millisecond) // stray bytes have come
			resp := requestOnNewConnection(t, h, "GET / HTTP/1.1\r\nHost: "+testHost+"\r\n\r\n")
			if body := readAll(t, resp.Body); body != "upstream says hi" || up.conns.Load() != 2 {
				t.Fatalf("the next request got %d %q, upstream connections %d; want its own answer on a new connection (2)",
					resp.StatusCode, body, up.conns.Load())
			}
		})
	}
}

// A client that goes away in the middle of an answer ends the upstream
// connection: the rest of the answer is not taken for the next one. (Two
// guards, each enough here: the body closed before its end closes the
// connection, and so does the request's context, canceled as the client
// went away.)
func TestUpstreamAnswerCutShort(t *testing.T) {
	const size = 8 << 20
	up := newUpstream(t, false, func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/big" {
			io.WriteString(w, "upstream says hi")
			return
		}
		w.Header().Set("Content-Length", "8388608")
		w.Write([]byte(strings.Repeat("x", size)))
	})
	h := newHarness(t, up)
	h.pool.Store("rules-1")
	c := h.dial(protoHTTP1)
	io.WriteString(c, "GET /big HTTP/1.1\r\nHost: "+testHost+"\r\n\r\n")
	if _, err := io.ReadFull(c, make([]byte, 1000)); err != nil {
		t.Fatal(err)
	}
	c.Close()
	waitFor(t, "the upstream connection of the answer cut short to close", func() bool { return up.closed.Load() == 1 })
	resp := requestOnNewConnection(t, h, "GET / HTTP/1.1\r\nHost: "+testHost+"\r\n\r\n")
	if body := readAll(t, resp.Body); body != "upstream says hi" || up.conns.Load() != 2 {
		t.Fatalf("the next request got %q, upstream connections %d; want its answer on a new connection (2)", clip(body), up.conns.Load())
	}
}

// A client that goes away while the upstream has not answered yet ends
// the upstream connection: the upstream sees the request canceled.
func TestUpstreamClientGoneCancelsRequest(t *testing.T) {
	canceled := make(chan time.Duration, 1)
	up := newUpstream(t, false, func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		select {
		case <-r.Context().Done():
			canceled <- time.Since(start)
		case <-time.After(10 * time.Second):
			canceled <- -1
		}
	})
	h := newHarness(t, up)
	c := h.dial(protoHTTP1)
	io.WriteString(c, "GET /slow HTTP/1.1\r\nHost: "+testHost+"\r\n\r\n")
	waitFor(t, "the request to reach the upstream", func() bool { return up.requests.Load() == 1 })
	c.Close()
	if d := <-canceled; d < 0 || d > 3*time.Second {
		t.Fatalf("the upstream's request ended after %v, want it canceled (< 3 s)", d)
	}
}

// Informational answers (103 Early Hints) reach the client before the
// final one.
func TestUpstreamInformationalForwarded(t *testing.T) {
	up := newUpstream(t, false, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Link", "</style.css>; rel=preload")
		w.WriteHeader(http.StatusEarlyHints)
		io.WriteString(w, "final")
	})
	h := newHarness(t, up)
	c := h.dial(protoHTTP1)
	br := bufio.NewReader(c)
	resp := roundTrip(t, c, br, "GET / HTTP/1.1\r\nHost: "+testHost+"\r\n\r\n")
	if resp.StatusCode != http.StatusEarlyHints || resp.Header.Get("Link") == "" {
		t.Fatalf("first answer %d %v, want 103 with its Link", resp.StatusCode, resp.Header)
	}
	final, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	if body := readAll(t, final.Body); final.StatusCode != 200 || body != "final" {
		t.Fatalf("final answer %d %q", final.StatusCode, body)
	}
}
