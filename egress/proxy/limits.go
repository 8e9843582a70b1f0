package proxy

import (
	"container/list"
	"net"
	"sync"
	"time"

	"github.com/clawrun/clawrun/egress/rules"
	"github.com/clawrun/clawrun/egress/wire"
)

// ConnLimits bound what one network namespace's connections can make the
// proxy hold: the container must not be able to grow the filter's memory
// (which is not charged to the container) by opening connections.
type ConnLimits struct {
	// Conns caps the connections open at once, decided or not.
	Conns int
	// Pending caps the connections whose ClientHello or first request
	// head has not been read yet, and HandshakeTimeout bounds that wait.
	Pending          int
	HandshakeTimeout time.Duration
	// HandshakeBytes caps what a connection may make the proxy buffer: a
	// ClientHello, a request head.
	HandshakeBytes int
}

// DefaultConnLimits leave room for any agent (a browser opens six
// connections per host; a crawler or a parallel download opens a
// thousand at once, all of them undecided until the proxy gets to read
// them) and keep the worst case of the proxy's handshake buffers around
// 32 MiB, well under the worker's memory limit.
var DefaultConnLimits = ConnLimits{Conns: 1024, Pending: 1024, HandshakeTimeout: 10 * time.Second, HandshakeBytes: 32 << 10}

// evictAfter is how long a connection may sit on its handshake before a
// new one takes its place when the namespace is at either cap: real
// clients send theirs at once, so the new one wins over a connection that
// sends nothing.
const evictAfter = time.Second

// admission counts a proxy's connections against its ConnLimits.
type admission struct {
	limits ConnLimits
	mu     sync.Mutex
	open   int
	queue  list.List // of *ticket not yet decided, oldest first
}

// ticket is one admitted connection.
type ticket struct {
	conn    net.Conn
	since   time.Time
	elem    *list.Element // in the queue while undecided; nil after
	evicted bool          // cut to make room for a newer connection (and no longer counted open)
}

// admit counts c in, or returns why it is refused. At either cap, the
// oldest undecided connection, if it has waited longer than evictAfter,
// is cut (its handshake read fails, see failedFor) to make room for c.
func (a *admission) admit(c net.Conn, now time.Time) (*ticket, rules.Reason) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.full() && a.queue.Len() > 0 {
		if oldest := a.queue.Front().Value.(*ticket); now.Sub(oldest.since) >= evictAfter {
			a.queue.Remove(oldest.elem)
			oldest.elem, oldest.evicted = nil, true
			a.open--
			_ = oldest.conn.SetReadDeadline(now) // its reader wakes up and gives up
		}
	}
	if a.limits.Conns > 0 && a.open >= a.limits.Conns {
		return nil, rules.ReasonConnLimit
	}
	if a.limits.Pending > 0 && a.queue.Len() >= a.limits.Pending {
		return nil, rules.ReasonHandshakeLimit
	}
	t := &ticket{conn: c, since: now}
	t.elem = a.queue.PushBack(t)
	a.open++
	return t, ""
}

// full says whether a new connection would pass a cap (a.mu held).
func (a *admission) full() bool {
	return (a.limits.Conns > 0 && a.open >= a.limits.Conns) ||
		(a.limits.Pending > 0 && a.queue.Len() >= a.limits.Pending)
}

// decided takes t out of the undecided connections.
func (a *admission) decided(t *ticket) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if t.elem != nil {
		a.queue.Remove(t.elem)
		t.elem = nil
	}
}

// done counts t out (an evicted ticket was counted out when cut).
func (a *admission) done(t *ticket) {
	a.decided(t)
	a.mu.Lock()
	if !t.evicted {
		a.open--
	}
	a.mu.Unlock()
}

// failedFor is the reason a handshake read that failed with err is
// logged with: the limits', when they cut it.
func (a *admission) failedFor(t *ticket, err error, otherwise rules.Reason) rules.Reason {
	a.mu.Lock()
	evicted := t.evicted
	a.mu.Unlock()
	switch {
	case evicted:
		return rules.ReasonHandshakeLimit
	case isTimeout(err):
		return rules.ReasonHandshakeTimeout
	case err == errHandshakeTooLarge || err == wire.ErrHelloTooLarge || err == wire.ErrHeadTooLarge:
		return rules.ReasonHandshakeSize
	}
	return otherwise
}

func isTimeout(err error) bool {
	ne, ok := err.(net.Error)
	return ok && ne.Timeout()
}
