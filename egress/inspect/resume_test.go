package inspect

import (
	"bufio"
	"context"
	"crypto/tls"
	"net"
	"net/http"
	"sync"
	"testing"
	"time"
)

// resumptions records, per request an upstream served, whether its
// connection's TLS session was resumed.
type resumptions struct {
	mu      sync.Mutex
	resumed []bool
}

func (r *resumptions) handler(w http.ResponseWriter, req *http.Request) {
	r.mu.Lock()
	r.resumed = append(r.resumed, req.TLS.DidResume)
	r.mu.Unlock()
	w.Write([]byte("ok"))
}

func (r *resumptions) all() []bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]bool(nil), r.resumed...)
}

// serveOne sends one GET through a new client connection that the engine
// serves with upstreamName as Options.Upstream ("": the server name), and
// returns the status the client got.
func serveOne(t *testing.T, h *harness, upstreamName string) int {
	t.Helper()
	clientSide, engineSide := net.Pipe()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		prefix, err := readRecord(engineSide)
		if err != nil {
			engineSide.Close()
			return
		}
		_ = h.engine.Serve(ctx, engineSide, Options{
			ServerName: testHost, Port: 443, Prefix: prefix, Upstream: upstreamName,
			DialUpstream: func(ctx context.Context) (net.Conn, error) {
				var d net.Dialer
				return d.DialContext(ctx, "tcp", h.up.addr())
			},
			Decide: allowGETs,
			Log:    h.logs.add,
		})
	}()
	defer func() { cancel(); <-done }()
	c := tls.Client(clientSide, h.clientTLS(protoHTTP1))
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	resp := roundTrip(t, c, bufio.NewReader(c), "GET / HTTP/1.1\r\nHost: "+testHost+"\r\n\r\n")
	return resp.StatusCode
}

// The upstream TLS session of one connection is resumed by the next
// connection to the same upstream name: the second handshake skips the
// certificate chain and a round of key exchange work.
func TestUpstreamSessionResumed(t *testing.T) {
	var seen resumptions
	up := newUpstream(t, false, seen.handler)
	h := newHarness(t, up)
	for range 3 {
		if status := serveOne(t, h, ""); status != 200 {
			t.Fatalf("status %d", status)
		}
	}
	if got := seen.all(); len(got) != 3 || got[0] || !got[1] || !got[2] {
		t.Fatalf("upstream connections resumed: %v, want [false true true]", got)
	}
}

// A session made with one upstream name is never offered for another: a
// connection whose upstream must prove another name does a full handshake
// and verifies the certificate for that name, so an upstream that cannot
// prove it is refused (the session it holds for the first name does not
// let it skip the check). The control: the first name resumes.
func TestUpstreamSessionNotResumedForAnotherName(t *testing.T) {
	const other = "other.example.test"
	ca := newTestCA(t)
	now := time.Now()
	var seen resumptions
	// One server, one set of ticket keys, a certificate for both names:
	// a session would be accepted by the server for either name.
	both := signLeaf(t, ca, testHost, now.Add(-time.Hour), now.Add(time.Hour), other)
	up := newUpstreamWithCert(t, false, poolOf(ca.Certificate()), both, seen.handler)
	h := newHarness(t, up)
	for _, name := range []string{"", other, ""} {
		if status := serveOne(t, h, name); status != 200 {
			t.Fatalf("upstream %q: status %d", name, status)
		}
	}
	if got := seen.all(); len(got) != 3 || got[1] || !got[2] {
		t.Fatalf("upstream connections resumed: %v, want [false false true]", got)
	}

	// A server whose certificate proves only the server name, holding the
	// server name's session: the other name is refused all the same.
	var seenOnly resumptions
	only := signLeaf(t, ca, testHost, now.Add(-time.Hour), now.Add(time.Hour))
	upOnly := newUpstreamWithCert(t, false, poolOf(ca.Certificate()), only, seenOnly.handler)
	hOnly := newHarness(t, upOnly)
	if status := serveOne(t, hOnly, ""); status != 200 {
		t.Fatalf("control: status %d", status)
	}
	if status := serveOne(t, hOnly, other); status != http.StatusBadGateway {
		t.Fatalf("upstream %q with a certificate for %q only: status %d, want 502", other, testHost, status)
	}
	hOnly.logs.find(t, ReasonUpstreamCert)
	if got := seenOnly.all(); len(got) != 1 {
		t.Fatalf("the upstream served %d requests, want 1 (the control)", len(got))
	}
}
