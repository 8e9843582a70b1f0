package resolver

import (
	"net"
	"net/netip"
	"sync"

	"github.com/clawrun/clawrun/egress/kernel"
)

// The DNS server's TCP listener: each connection's original destination
// is known while it is open (to find the processes that asked), and the
// connections open at once are capped.

// tcpConns knows the original destination (before the redirect) of every
// open DNS-over-TCP connection, by client address.
type tcpConns struct {
	mu    sync.Mutex
	conns map[netip.AddrPort]*trackedConn
}

func (t *tcpConns) originalDst(client netip.AddrPort) (netip.AddrPort, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	c, ok := t.conns[client]
	if !ok {
		return netip.AddrPort{}, false
	}
	return c.dst, true
}

// track wraps a listener so that its connections are known while open.
func (t *tcpConns) track(l net.Listener) net.Listener { return trackingListener{l, t} }

type trackingListener struct {
	net.Listener
	conns *tcpConns
}

func (l trackingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	tc := &trackedConn{Conn: c, client: kernel.AddrPort(c.RemoteAddr()), dst: kernel.Destination(c), conns: l.conns}
	l.conns.mu.Lock()
	if l.conns.conns == nil {
		l.conns.conns = map[netip.AddrPort]*trackedConn{}
	}
	l.conns.conns[tc.client] = tc
	l.conns.mu.Unlock()
	return tc, nil
}

// trackedConn is forgotten when closed.
type trackedConn struct {
	net.Conn
	client, dst netip.AddrPort
	conns       *tcpConns
}

func (c *trackedConn) Close() error {
	c.conns.mu.Lock()
	if c.conns.conns[c.client] == c {
		delete(c.conns.conns, c.client)
	}
	c.conns.mu.Unlock()
	return c.Conn.Close()
}

// SetLinger lets Reset reset the connection.
func (c *trackedConn) SetLinger(sec int) error {
	if tc, ok := c.Conn.(*net.TCPConn); ok {
		return tc.SetLinger(sec)
	}
	return nil
}

// limitListener refuses connections past max open at once, calling
// refused for each (the DNS server's TCP listener: its own timeouts bound
// how long a connection stays).
type limitListener struct {
	net.Listener
	slots   chan struct{}
	refused func(net.Conn)
}

func newLimitListener(l net.Listener, max int, refused func(net.Conn)) net.Listener {
	return &limitListener{Listener: l, slots: make(chan struct{}, max), refused: refused}
}

func (l *limitListener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		select {
		case l.slots <- struct{}{}:
			return &slotConn{Conn: c, release: func() { <-l.slots }}, nil
		default:
			l.refused(c)
			kernel.Reset(c)
		}
	}
}

// slotConn gives its slot back when closed (once).
type slotConn struct {
	net.Conn
	once    sync.Once
	release func()
}

func (c *slotConn) Close() error {
	c.once.Do(c.release)
	return c.Conn.Close()
}
