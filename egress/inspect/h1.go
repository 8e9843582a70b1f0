package inspect

import (
	"bytes"
	"context"
	"net"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
)

// HTTP/1.1 is served by net/http's Server, the one maintained HTTP/1.x
// server of Go (keep-alive, pipelining, 100-continue, chunking, hijacking
// for WebSocket), given the connection through a listener that hands out
// that one connection. A single Server serves every connection of the
// engine; each connection's session travels in its context.

type sessionKey struct{}

func sessionFrom(ctx context.Context) *session {
	s, _ := ctx.Value(sessionKey{}).(*session)
	return s
}

func (e *Engine) newH1Server() *http.Server {
	var protocols http.Protocols
	protocols.SetHTTP1(true) // HTTP/2 is served by serveH2
	return &http.Server{
		Handler:           e.handler,
		Protocols:         &protocols,
		ReadHeaderTimeout: readHeaderTimeout,
		IdleTimeout:       idleTimeout,
		MaxHeaderBytes:    maxHeaderBytes,
		ErrorLog:          e.errorLog,
		// OPTIONS * is a request like any other: decided and sent.
		DisableGeneralOptionsHandler: true,
		BaseContext: func(ln net.Listener) context.Context {
			return ln.(*oneConnListener).ctx
		},
		ConnState: func(c net.Conn, state http.ConnState) {
			if hc, ok := c.(*h1Conn); ok {
				hc.setState(state)
			}
		},
	}
}

// serveH1 serves an HTTP/1.x connection until it ends (hijacked
// connections included: their handler is still running, and close waits
// for it).
func (s *session) serveH1(ctx context.Context, conn net.Conn) {
	s.h1conn = &h1Conn{Conn: conn, s: s}
	ln := &oneConnListener{conn: s.h1conn, addr: conn.LocalAddr(), ctx: context.WithValue(ctx, sessionKey{}, s), done: make(chan struct{})}
	s.h1conn.ln = ln
	_ = s.e.h1.Serve(ln) // returns once the connection is over
}

// oneConnListener hands out one connection, then blocks until that
// connection is closed or hijacked, and ends the Server's Serve.
type oneConnListener struct {
	mu    sync.Mutex
	conn  net.Conn // nil once accepted
	addr  net.Addr
	ctx   context.Context
	done  chan struct{}
	close sync.Once
}

func (l *oneConnListener) Accept() (net.Conn, error) {
	l.mu.Lock()
	c := l.conn
	l.conn = nil
	l.mu.Unlock()
	if c != nil {
		return c, nil
	}
	<-l.done
	return nil, net.ErrClosed
}

// Close ends Accept's wait (Serve closes its listener when it returns).
func (l *oneConnListener) Close() error {
	l.close.Do(func() { close(l.done) })
	return nil
}

func (l *oneConnListener) Addr() net.Addr { return l.addr }

// h1Conn is the connection as net/http sees it. It learns from the
// Server's state changes when the connection is over, and when net/http
// answers a request by itself: a request its parser refuses (two Host
// fields, a malformed line, a head over the limit) gets a 4xx written
// between the start of a request (StateActive) and the handler, which never
// runs. Such refusals are logged, as the handler would have logged them.
type h1Conn struct {
	net.Conn
	s       *session
	ln      *oneConnListener
	handled atomic.Bool // the current request reached the handler
}

func (c *h1Conn) setState(state http.ConnState) {
	switch state {
	case http.StateActive:
		c.handled.Store(false)
	case http.StateClosed, http.StateHijacked:
		c.ln.Close()
	}
}

// handling marks the current request as served by the handler.
func (c *h1Conn) handling() { c.handled.Store(true) }

func (c *h1Conn) Write(p []byte) (int, error) {
	if !c.handled.Load() {
		c.logRefusal(p)
	}
	return c.Conn.Write(p)
}

// logRefusal logs net/http's answer p to a request it refused:
// "HTTP/1.1 400 Bad Request...\r\n\r\n400 Bad Request: too many Host headers".
func (c *h1Conn) logRefusal(p []byte) {
	const prefix = "HTTP/1.1 "
	if len(p) < len(prefix)+3 || !bytes.HasPrefix(p, []byte(prefix)) {
		return
	}
	status, err := strconv.Atoi(string(p[len(prefix) : len(prefix)+3]))
	if err != nil || status < 400 {
		return
	}
	detail := p
	if _, body, ok := bytes.Cut(p, []byte("\r\n\r\n")); ok {
		detail = body
	}
	c.s.log(Decision{Proto: "HTTP/1.1", Authority: c.s.opts.ServerName, Reason: ReasonMalformed,
		Detail: clip(string(bytes.TrimSpace(detail))), Status: status})
}
