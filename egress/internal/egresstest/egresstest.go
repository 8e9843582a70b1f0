// Package egresstest holds what the tests of the egress packages share: a
// clock moved by hand, and TLS ClientHellos made by crypto/tls.
package egresstest

import (
	"bytes"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"slices"
	"sync"
	"testing"
	"time"
)

// Clock is a clock the test moves by hand (TTLs and windows are checked
// without waiting them out); the code under test may read it from its own
// goroutines.
type Clock struct {
	mu sync.Mutex
	t  time.Time
}

// NewClock returns a clock at a fixed time, Start.
func NewClock() *Clock { return &Clock{t: Start} }

// Start is the time a NewClock shows first.
var Start = time.Unix(1700000000, 0)

// Now is the clock's time.
func (c *Clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

// Add moves the clock by d.
func (c *Clock) Add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// ClientHello returns the first flight of a crypto/tls client with cfg.
func ClientHello(t testing.TB, cfg *tls.Config) []byte {
	t.Helper()
	c := &recordConn{}
	_ = tls.Client(c, cfg).Handshake()
	if c.Len() == 0 {
		t.Fatal("the TLS client wrote nothing")
	}
	return slices.Clone(c.Bytes())
}

// GoServerName parses data with a crypto/tls server: the name it would
// see, and whether it accepted the ClientHello at all.
func GoServerName(data []byte) (string, bool) {
	var name string
	seen := false
	cfg := &tls.Config{GetConfigForClient: func(h *tls.ClientHelloInfo) (*tls.Config, error) {
		name, seen = h.ServerName, true
		return nil, errors.New("stop")
	}}
	c := &recordConn{in: bytes.NewReader(data)}
	_ = tls.Server(c, cfg).Handshake()
	return name, seen
}

// recordConn records what a TLS client writes and fails its reads, so
// that the handshake stops right after the ClientHello.
type recordConn struct {
	bytes.Buffer
	in io.Reader // served to Read, for a tls.Server
}

func (c *recordConn) Read(p []byte) (int, error) {
	if c.in == nil {
		return 0, io.EOF
	}
	return c.in.Read(p)
}
func (c *recordConn) Close() error                     { return nil }
func (c *recordConn) LocalAddr() net.Addr              { return &net.TCPAddr{} }
func (c *recordConn) RemoteAddr() net.Addr             { return &net.TCPAddr{} }
func (c *recordConn) SetDeadline(time.Time) error      { return nil }
func (c *recordConn) SetReadDeadline(time.Time) error  { return nil }
func (c *recordConn) SetWriteDeadline(time.Time) error { return nil }
