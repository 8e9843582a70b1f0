package inspect

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptrace"
	"net/textproto"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// An HTTP/1.1 client connection's requests to its upstream, most of them
// sent and answered in the goroutine that serves the request.
//
// net/http's Transport gives each upstream connection a goroutine that
// writes requests and one that reads answers, and hands each request and
// answer across them. In a filter that sleeps between an agent's
// requests, readying those goroutines wakes other threads of the worker
// too: CPU the request pays for nothing (a fifth of the inspecting
// worker's CPU per request on an open connection, measured). h1Upstream
// writes the request and reads the answer itself, on idle connections of
// its own, for the requests where that changes nothing for the upstream:
// no upgrade, no Expect, and no body or one of known length small enough
// to be written whole before the answer is read (an API call's JSON). A
// request whose body streams, an upgrade or a 100-continue goes through
// the Transport, which can read an answer while it still writes.
//
// Requests are written by net/http (Request.Write) and answers read by its
// parser (ReadResponse), the code the Transport uses. What the Transport's
// reading goroutine learns of an idle connection (its server closed it,
// or sent bytes no request asked for), h1Upstream learns by looking at
// the socket before it reuses one (alive); a request without a body of a
// method that may be sent twice (GET, HEAD, OPTIONS, TRACE) that still
// meets a connection closed meanwhile goes again on a new one, as the
// Transport does.

const (
	// maxInformational bounds the 1xx answers before a request's final one.
	maxInformational = 8
	// maxInlineBody is the largest request body sent inline: written whole
	// into the socket's buffers while the upstream may not read it yet.
	maxInlineBody = 64 << 10
)

// h1Upstream is the inline client of one upstream (one Transport).
type h1Upstream struct {
	transport *http.Transport // every request not sent inline, and its dial
	dial      func(ctx context.Context, network, addr string) (net.Conn, error)
	idleFor   time.Duration

	mu   sync.Mutex
	idle []*upstreamConn // most recently used last
	// closing: CloseIdleConnections was called; connections coming back
	// are closed, until a request asks for one again (the Transport's
	// rule too).
	closing bool
}

func newH1Upstream(t *http.Transport) *h1Upstream {
	return &h1Upstream{transport: t, dial: t.DialTLSContext, idleFor: t.IdleConnTimeout}
}

// upstreamConn is an upstream connection of h1Upstream.
type upstreamConn struct {
	u    *h1Upstream
	conn net.Conn
	raw  syscall.RawConn // its socket, nil when the dial's connection has none
	br   *bufio.Reader
	bw   *bufio.Writer
	// idleTimer closes the connection after idleFor unused.
	idleTimer *time.Timer
}

// sentInline tells whether h1Upstream sends req itself.
func sentInline(req *http.Request) bool {
	if req.Header.Get("Upgrade") != "" || req.Header.Get("Expect") != "" || req.Method == http.MethodConnect {
		return false
	}
	return noBody(req) || (req.ContentLength > 0 && req.ContentLength <= maxInlineBody)
}

func noBody(req *http.Request) bool { return req.Body == nil || req.Body == http.NoBody }

// replayable tells whether req may be sent again after a connection
// failed before answering it: a method without side effects (RFC 9110,
// 9.2.2) and nothing read of a body.
func replayable(req *http.Request) bool {
	switch req.Method {
	case http.MethodGet, http.MethodHead, http.MethodOptions, http.MethodTrace:
		return noBody(req)
	}
	return false
}

func (u *h1Upstream) RoundTrip(req *http.Request) (*http.Response, error) {
	if !sentInline(req) {
		return u.transport.RoundTrip(req)
	}
	for {
		pc, reused, err := u.conn(req.Context())
		if err != nil {
			return nil, err
		}
		resp, err := pc.roundTrip(req)
		if err == nil {
			return resp, nil
		}
		pc.close()
		// An idle connection its server closed as it was taken answers
		// nothing: the request goes again, on a new connection.
		var none *nothingAnswered
		if !reused || !errors.As(err, &none) || !replayable(req) || req.Context().Err() != nil {
			return nil, err
		}
	}
}

// CloseIdleConnections closes the idle connections, the Transport's too,
// and those that come back until a request asks for one.
func (u *h1Upstream) CloseIdleConnections() {
	u.mu.Lock()
	idle := u.idle
	u.idle, u.closing = nil, true
	u.mu.Unlock()
	for _, pc := range idle {
		pc.close()
	}
	u.transport.CloseIdleConnections()
}

// conn is the most recently used idle connection, or a new one.
func (u *h1Upstream) conn(ctx context.Context) (pc *upstreamConn, reused bool, err error) {
	u.mu.Lock()
	u.closing = false
	u.mu.Unlock()
	for pc = u.takeIdle(); pc != nil; pc = u.takeIdle() {
		// A connection whose timer fired is being closed by it, or will
		// be here (the timer waits for u.mu and will not find it). The
		// socket is looked at outside u.mu, which every request takes.
		if pc.idleTimer.Stop() && pc.alive() {
			break
		}
		pc.close()
	}
	if pc == nil {
		conn, err := u.dial(ctx, "tcp", "")
		if err != nil {
			return nil, false, err
		}
		pc = &upstreamConn{u: u, conn: conn, raw: socketOf(conn), br: bufio.NewReader(conn), bw: bufio.NewWriter(conn)}
	} else {
		reused = true
	}
	if trace := httptrace.ContextClientTrace(ctx); trace != nil && trace.GotConn != nil {
		trace.GotConn(httptrace.GotConnInfo{Conn: pc.conn, Reused: reused})
	}
	return pc, reused, nil
}

// takeIdle removes the most recently used idle connection from the
// list and returns it, nil when there is none.
func (u *h1Upstream) takeIdle() *upstreamConn {
	u.mu.Lock()
	defer u.mu.Unlock()
	if len(u.idle) == 0 {
		return nil
	}
	pc := u.idle[len(u.idle)-1]
	u.idle = u.idle[:len(u.idle)-1]
	return pc
}

// put keeps pc for the next request, unless the client is closing or
// has enough idle connections.
func (u *h1Upstream) put(pc *upstreamConn) {
	u.mu.Lock()
	if u.closing || len(u.idle) >= maxUpstreamConns {
		u.mu.Unlock()
		pc.close()
		return
	}
	if pc.idleTimer == nil {
		pc.idleTimer = time.AfterFunc(u.idleFor, pc.expire)
	} else {
		pc.idleTimer.Reset(u.idleFor)
	}
	u.idle = append(u.idle, pc)
	u.mu.Unlock()
}

// expire closes pc, idle too long, unless a request took it meanwhile.
func (pc *upstreamConn) expire() {
	u := pc.u
	u.mu.Lock()
	found := false
	for i, c := range u.idle {
		if c == pc {
			u.idle = append(u.idle[:i], u.idle[i+1:]...)
			found = true
			break
		}
	}
	u.mu.Unlock()
	if found {
		pc.close()
	}
}

func (pc *upstreamConn) close() { pc.conn.Close() }

// socketOf is the socket under an upstream connection (TLS over a
// connection with a SyscallConn), nil when it has none.
func socketOf(conn net.Conn) syscall.RawConn {
	if tc, ok := conn.(*tls.Conn); ok {
		conn = tc.NetConn()
	}
	sc, ok := conn.(syscall.Conn)
	if !ok {
		return nil
	}
	raw, err := sc.SyscallConn()
	if err != nil {
		return nil
	}
	return raw
}

// alive tells whether an idle connection may carry a request: nothing
// came on it since its last answer, neither the end of the stream (its
// server closed it) nor bytes (a TLS alert before the close, an answer no
// request asked for). A peek that does not wait; without a socket to look
// at, a connection is taken as alive.
func (pc *upstreamConn) alive() bool {
	if pc.raw == nil {
		return true
	}
	var err error
	if cerr := pc.raw.Read(func(fd uintptr) bool {
		var b [1]byte
		_, _, err = unix.Recvfrom(int(fd), b[:], unix.MSG_PEEK|unix.MSG_DONTWAIT)
		return true
	}); cerr != nil {
		return false
	}
	return errors.Is(err, unix.EAGAIN)
}

// nothingAnswered: the connection failed before the first byte of an
// answer.
type nothingAnswered struct{ err error }

func (e *nothingAnswered) Error() string { return "upstream connection: " + e.err.Error() }
func (e *nothingAnswered) Unwrap() error { return e.err }

// roundTrip writes req and reads its answer's head; the body is read by
// the caller, and the connection goes back idle once the body is read to
// its end. The request's context ending closes the connection, which ends
// a write or read waiting on the upstream.
func (pc *upstreamConn) roundTrip(req *http.Request) (*http.Response, error) {
	ctx := req.Context()
	stop := context.AfterFunc(ctx, pc.close)
	fail := func(err error) (*http.Response, error) {
		stop()
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		return nil, err
	}
	if err := req.Write(pc.bw); err != nil {
		return fail(&nothingAnswered{err})
	}
	if err := pc.bw.Flush(); err != nil {
		return fail(&nothingAnswered{err})
	}
	if _, err := pc.br.Peek(1); err != nil {
		return fail(&nothingAnswered{err})
	}
	var resp *http.Response
	for informational := 0; ; informational++ {
		var err error
		if resp, err = http.ReadResponse(pc.br, req); err != nil {
			return fail(err)
		}
		code := resp.StatusCode
		if code < 100 || code > 199 {
			break
		}
		if code == http.StatusSwitchingProtocols || informational == maxInformational {
			return fail(fmt.Errorf("upstream answered %d", code))
		}
		if trace := httptrace.ContextClientTrace(ctx); trace != nil && trace.Got1xxResponse != nil {
			if err := trace.Got1xxResponse(code, textproto.MIMEHeader(resp.Header)); err != nil {
				return fail(err)
			}
		}
	}
	body := &upstreamBody{pc: pc, body: resp.Body, stop: stop, reuse: !resp.Close && !req.Close}
	if resp.Body == http.NoBody {
		body.end(true)
		return resp, nil
	}
	resp.Body = body
	return resp, nil
}

// upstreamBody is an answer's body on an upstreamConn.
type upstreamBody struct {
	pc    *upstreamConn
	body  io.ReadCloser
	stop  func() bool // stops the context's watch; false once it closed the connection
	reuse bool        // the connection may carry another request after this answer
	done  bool
}

func (b *upstreamBody) Read(p []byte) (int, error) {
	if b.done {
		return 0, io.EOF
	}
	n, err := b.body.Read(p)
	if err == io.EOF {
		b.end(true)
	}
	return n, err
}

// Close before the end of the body closes the connection: what is left
// of the answer is not read.
func (b *upstreamBody) Close() error {
	b.end(false)
	return nil
}

// end gives the connection back when the answer was read to its end
// and nothing else came, else closes it.
func (b *upstreamBody) end(complete bool) {
	if b.done {
		return
	}
	b.done = true
	watched := b.stop()
	if complete && watched && b.reuse && b.pc.br.Buffered() == 0 {
		b.pc.u.put(b.pc)
		return
	}
	b.pc.close()
}
