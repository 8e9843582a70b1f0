package inspect

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httputil"
	"strconv"
	"sync"
	"sync/atomic"
)

// Options are the filter's part of one inspected connection: what it
// matched, how to reach the upstream it checked, and the policy.
type Options struct {
	// ServerName is the SNI the filter matched against the policy. The
	// client gets a leaf for it, every request must be for it, and the
	// upstream must prove it is it.
	ServerName string
	// Port is the port the client connected to: a Host or :authority may
	// name it, and no other.
	Port int
	// Prefix holds the bytes the filter already read from the client (its
	// ClientHello, and anything after it), replayed before the rest.
	Prefix []byte
	// Upstream, if set, is the server the requests go to instead of
	// ServerName (inference routing): its name, which its certificate
	// must prove and the Host it gets, and UpstreamPort (0: 443). The
	// client still gets a leaf for ServerName, and its requests must be
	// for ServerName.
	Upstream     string
	UpstreamPort int
	// DialUpstream connects to the address the filter resolved and
	// checked for ServerName (never the client's destination). Each call
	// is a new TCP connection; the engine does TLS over it.
	DialUpstream func(ctx context.Context) (net.Conn, error)
	// Decide is asked for every request, before any of it goes
	// upstream. It is called from several goroutines at once (HTTP/2
	// streams).
	Decide func(Request) Verdict
	// InspectRPC, if set, says which requests carry JSON-RPC (MCP and
	// JSON-RPC endpoints): their body is read (at most Config.MaxRPCBody)
	// and parsed into Request.RPC before Decide sees them. It sees the
	// request without RPC.
	InspectRPC func(Request) bool
	// Rewrite, if set, may change an allowed request just before it is
	// sent (credential injection): it runs after Decide allowed the
	// request, on the request that goes upstream. An error refuses the
	// request (403, ReasonRewrite, or the error's own reason when it has
	// a method LogReason() string), and so does a change of its
	// destination. The error's text goes to the log: it must not hold a
	// secret.
	Rewrite func(*http.Request) error
	// Log receives one Decision per request (and per refusal of
	// something that was not a request, such as a failed handshake).
	Log func(Decision)
	// GotUpstream, if set, is given the first upstream connection a
	// request of the client connection went on (as DialUpstream returned
	// it), dialled for it or shared (Pool).
	GotUpstream func(net.Conn)
	// Pool, if not nil, lets the HTTP/1.1 client connections whose Pool
	// is equal share their upstream connections (pool.go): a request may
	// go on an idle connection another client connection's DialUpstream
	// made. The filter makes it of everything its DialUpstream checks, so
	// that a shared connection goes only where this connection's own dial
	// would; it must be comparable. nil (or an HTTP/2 client): the
	// connection's upstream connections are its own, closed with it.
	Pool any
	// Cleartext: the client speaks plain HTTP/1.x, not TLS (inference.local
	// over http://, whose only leg outside the host is the upstream's,
	// which is TLS all the same). Prefix then holds the request bytes
	// already read, and an absolute-form target must say http.
	Cleartext bool
}

// Serve serves one client connection that the filter matched and decided
// to inspect (for Options.Cleartext, without TLS): the TLS handshake with a leaf for opts.ServerName (ALPN h2
// or http/1.1, as the client prefers), then every request of the
// connection (HTTP/1.1 keep-alive, or HTTP/2 streams), each decided by
// opts.Decide, until the client is done or ctx ends. It closes client, and
// returns when every request of the connection is over (a WebSocket
// included). The error says why the connection could not be served; it
// is nil when it was served to its end.
func (e *Engine) Serve(ctx context.Context, client net.Conn, opts Options) error {
	name, err := checkOptions(opts)
	if err != nil {
		client.Close()
		return err
	}
	opts.ServerName = name
	if opts.Cleartext {
		cc := &clientConn{Conn: client, prefix: opts.Prefix, serverName: name}
		defer cc.Close()
		stop := context.AfterFunc(ctx, func() { cc.Close() })
		defer stop()
		s := e.newSession(opts, false)
		defer s.close()
		s.serveH1(ctx, cc)
		return nil
	}
	tlsConn := tls.Server(&clientConn{Conn: client, prefix: opts.Prefix, serverName: name}, e.serverTLS[0])
	defer tlsConn.Close()
	stop := context.AfterFunc(ctx, func() { tlsConn.Close() })
	defer stop()

	hctx, cancel := context.WithTimeout(ctx, handshakeTimeout)
	err = tlsConn.HandshakeContext(hctx)
	cancel()
	if err != nil {
		logTo(opts.Log, Decision{Authority: name, Reason: ReasonClientHandshake, Detail: err.Error()})
		return fmt.Errorf("inspect: TLS handshake with the client: %w", err)
	}
	s := e.newSession(opts, tlsConn.ConnectionState().NegotiatedProtocol == protoH2)
	defer s.close()
	if s.h2 {
		s.serveH2(ctx, tlsConn)
	} else {
		s.serveH1(ctx, tlsConn)
	}
	return nil
}

// checkOptions returns the server name to serve, lower-case, or why opts
// cannot be served.
func checkOptions(opts Options) (string, error) {
	switch {
	case opts.DialUpstream == nil:
		return "", errors.New("inspect: Options.DialUpstream is nil")
	case opts.Decide == nil:
		return "", errors.New("inspect: Options.Decide is nil")
	case opts.Port < 0 || opts.Port > 65535:
		return "", fmt.Errorf("inspect: Options.Port %d out of range", opts.Port)
	}
	name, err := leafName(opts.ServerName)
	if err != nil {
		return "", fmt.Errorf("inspect: Options.ServerName: %w", err)
	}
	return name, nil
}

// clientConn is the client's connection with the bytes the filter read
// from it put back in front.
type clientConn struct {
	net.Conn
	prefix     []byte
	serverName string // the name the filter matched
}

func (c *clientConn) Read(p []byte) (int, error) {
	if len(c.prefix) > 0 {
		n := copy(p, c.prefix)
		c.prefix = c.prefix[n:]
		return n, nil
	}
	return c.Conn.Read(p)
}

// session is one client connection being served.
type session struct {
	e    *Engine
	opts Options
	h2   bool // the client speaks HTTP/2
	// port is opts.Port in decimal ("" when 0): the only port a Host may
	// name.
	port string
	// host is upstreamHost, the Host every request gets upstream.
	host      string
	client    upstreamClient
	ownClient bool        // client is the session's own, closed with it
	toldConn  atomic.Bool // Options.GotUpstream was called
	proxy     *httputil.ReverseProxy
	h1conn    *h1Conn // the HTTP/1.1 connection, nil for HTTP/2

	mu       sync.Mutex
	closed   bool           // mu: no request starts any more
	handlers sync.WaitGroup // requests being served (Add under mu)
}

func (e *Engine) newSession(opts Options, h2 bool) *session {
	s := &session{e: e, opts: opts, h2: h2}
	if opts.Port != 0 {
		s.port = strconv.Itoa(opts.Port)
	}
	s.host = s.upstreamHost()
	s.client, s.ownClient = s.clientFor()
	s.proxy = s.newProxy()
	return s
}

// begin counts a request in, unless the session is over (an HTTP/2
// handler may start after its connection ended: it has no one to answer).
func (s *session) begin() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return false
	}
	s.handlers.Add(1)
	return true
}

// close waits for the session's requests to end and drops its own
// upstream connections (shared ones stay for the next client connection).
func (s *session) close() {
	s.mu.Lock()
	s.closed = true
	s.mu.Unlock()
	s.handlers.Wait()
	if s.ownClient {
		s.client.CloseIdleConnections()
	}
}

func (s *session) log(d Decision) { logTo(s.opts.Log, d) }

func logTo(log func(Decision), d Decision) {
	if log != nil {
		log(d)
	}
}
