package proxy

import (
	"bufio"
	"io"
	"net"
	"sync"
)

// stream is one direction of a proxied connection: every byte the proxy
// sends to dst goes through it, counted, and it half-closes dst when the
// direction ends.
//
// It writes to dst itself, never through a wrapper: io.Copy from one
// *net.TCPConn to another splices (splice(2) on Linux, the bytes never
// enter user space), and a wrapper around either connection would hide it
// from io.Copy and force every byte through a buffer.
type stream struct {
	dst     net.Conn
	written int64
	// hold, when set, is asked as the direction ends: true keeps dst open
	// for an answer of the proxy's own (a 403), after which it is closed.
	hold  func() bool
	ended bool
}

// write sends bytes already read from the other side (a replayed
// ClientHello, a request head, what a reader had buffered).
func (s *stream) write(b []byte) error {
	if len(b) == 0 {
		return nil
	}
	n, err := s.dst.Write(b)
	s.written += int64(n)
	return err
}

// copyAll copies src until it ends.
func (s *stream) copyAll(src io.Reader) error {
	n, err := io.Copy(s.dst, src)
	s.written += n
	return err
}

// copyN copies n bytes of src.
func (s *stream) copyN(src io.Reader, n int64) error {
	m, err := io.CopyN(s.dst, src, n)
	s.written += m
	return err
}

// end half-closes dst (CloseWrite: its peer reads the end of this
// direction while the other goes on; a connection that cannot half-close
// is closed), once, unless hold keeps it open.
func (s *stream) end() {
	if s.ended || s.hold != nil && s.hold() {
		return
	}
	s.ended = true
	if c, ok := s.dst.(interface{ CloseWrite() error }); ok {
		_ = c.CloseWrite()
	} else {
		_ = s.dst.Close()
	}
}

// relay is a whole direction: prefix (bytes read ahead of src), then src
// until it ends, then the half-close.
func (s *stream) relay(prefix []byte, src io.Reader) error {
	err := s.write(prefix)
	if err == nil {
		err = s.copyAll(src)
	}
	s.end()
	return err
}

// pipe relays client→upstream (into toUp, which may have sent a prefix
// already) and upstream→client until both directions end, then closes
// both connections (up with closeUp). It returns the bytes sent to the
// client.
func pipe(client, up net.Conn, toUp *stream, closeUp func(net.Conn)) (in int64) {
	toClient := &stream{dst: client}
	var wg sync.WaitGroup
	wg.Go(func() { _ = toClient.relay(nil, up) })
	_ = toUp.relay(nil, client)
	wg.Wait()
	client.Close()
	closeUp(up)
	return toClient.written
}

// buffered returns (and consumes) what br has read ahead.
func buffered(br *bufio.Reader) []byte {
	b, _ := br.Peek(br.Buffered())
	out := append([]byte(nil), b...)
	_, _ = br.Discard(len(out))
	return out
}
