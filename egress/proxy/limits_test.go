package proxy

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"errors"
	"net"
	"os"
	"testing"
	"time"

	"github.com/clawrun/clawrun/egress/internal/egresstest"
	"github.com/clawrun/clawrun/egress/rules"
)

// pipeConn is one end of a connected pair; the other is closed at cleanup.
func pipeConn(t *testing.T) net.Conn {
	t.Helper()
	a, b := net.Pipe()
	t.Cleanup(func() { a.Close(); b.Close() })
	return a
}

func TestAdmissionCaps(t *testing.T) {
	a := &admission{limits: ConnLimits{Conns: 3, Pending: 2}}
	now := time.Unix(1700000000, 0)
	t1, r := a.admit(pipeConn(t), now)
	t2, _ := a.admit(pipeConn(t), now)
	if t1 == nil || t2 == nil || r != "" {
		t.Fatalf("the first two connections were refused (%q)", r)
	}
	// Two undecided, both new: the third is refused.
	if tk, r := a.admit(pipeConn(t), now.Add(500*time.Millisecond)); tk != nil || r != rules.ReasonHandshakeLimit {
		t.Fatalf("a third undecided connection: %v, %q, want refused with %s", tk, r, rules.ReasonHandshakeLimit)
	}
	// One decides: room again.
	a.decided(t1)
	t3, r := a.admit(pipeConn(t), now.Add(600*time.Millisecond))
	if t3 == nil {
		t.Fatalf("refused (%q) with one undecided connection", r)
	}
	// Three open: the cap on connections, decided or not.
	a.decided(t3)
	if tk, r := a.admit(pipeConn(t), now.Add(700*time.Millisecond)); tk != nil || r != rules.ReasonConnLimit {
		t.Fatalf("a fourth connection: %v, %q, want refused with %s", tk, r, rules.ReasonConnLimit)
	}
	a.done(t1)
	if tk, _ := a.admit(pipeConn(t), now.Add(800*time.Millisecond)); tk == nil {
		t.Fatal("refused after one connection ended")
	}
}

func TestAdmissionEvictsTheOldestStalledHandshake(t *testing.T) {
	a := &admission{limits: ConnLimits{Conns: 10, Pending: 1}}
	now := time.Unix(1700000000, 0)
	stalled := pipeConn(t)
	old, _ := a.admit(stalled, now)
	// Past evictAfter, a new connection takes the stalled one's place.
	fresh, r := a.admit(pipeConn(t), now.Add(evictAfter))
	if fresh == nil {
		t.Fatalf("a new connection was refused (%q) for one stalled %v", r, evictAfter)
	}
	// The stalled one's read fails at once, and is logged as the limit's.
	_, err := stalled.Read(make([]byte, 1))
	if !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("the evicted connection's read: %v, want its deadline passed", err)
	}
	if got := a.failedFor(old, err, rules.ReasonNoSNI); got != rules.ReasonHandshakeLimit {
		t.Errorf("the evicted connection is logged as %q, want %q", got, rules.ReasonHandshakeLimit)
	}
	if got := a.failedFor(fresh, err, rules.ReasonNoSNI); got != rules.ReasonHandshakeTimeout {
		t.Errorf("a connection whose deadline passed is logged as %q, want %q", got, rules.ReasonHandshakeTimeout)
	}
	if got := a.failedFor(fresh, errHandshakeTooLarge, rules.ReasonNoSNI); got != rules.ReasonHandshakeSize {
		t.Errorf("a connection past its buffer is logged as %q, want %q", got, rules.ReasonHandshakeSize)
	}
}

// At the cap on open connections, a handshake stalled past evictAfter
// still gives its place to a new connection (counted out once), while
// decided connections are never cut.
func TestAdmissionEvictsAtTheConnectionCap(t *testing.T) {
	a := &admission{limits: ConnLimits{Conns: 2, Pending: 2}}
	now := time.Unix(1700000000, 0)
	decided, _ := a.admit(pipeConn(t), now)
	a.decided(decided)
	stalled, _ := a.admit(pipeConn(t), now)
	if tk, r := a.admit(pipeConn(t), now.Add(evictAfter/2)); tk != nil || r != rules.ReasonConnLimit {
		t.Fatalf("a third connection while the others are new: %v, %q, want refused with %s", tk, r, rules.ReasonConnLimit)
	}
	fresh, r := a.admit(pipeConn(t), now.Add(evictAfter))
	if fresh == nil || !stalled.evicted || decided.evicted {
		t.Fatalf("at the cap, past evictAfter: admitted %v (%q), stalled evicted %v, decided evicted %v; want the stalled one cut for the new one",
			fresh != nil, r, stalled.evicted, decided.evicted)
	}
	a.done(stalled) // its handler ends after the cut
	if a.open != 2 {
		t.Fatalf("open = %d after the eviction and its handler's end, want 2 (decided and fresh)", a.open)
	}
	a.decided(fresh)
	if tk, r := a.admit(pipeConn(t), now.Add(3*evictAfter)); tk != nil || r != rules.ReasonConnLimit {
		t.Fatalf("all open connections decided: %v, %q, want refused with %s", tk, r, rules.ReasonConnLimit)
	}
}

func TestReadClientHelloBufferCap(t *testing.T) {
	hello := egresstest.ClientHello(t, &tls.Config{ServerName: "example.com"})
	if _, _, err := readClientHello(bufio.NewReaderSize(bytes.NewReader(hello), 16), len(hello)); err != nil {
		t.Fatalf("a ClientHello of exactly the cap: %v", err)
	}
	if _, _, err := readClientHello(bufio.NewReaderSize(bytes.NewReader(hello), 16), len(hello)-1); err != errHandshakeTooLarge {
		t.Fatalf("a ClientHello past the cap: %v, want %v", err, errHandshakeTooLarge)
	}
}
