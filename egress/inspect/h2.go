package inspect

import (
	"context"
	"net"
	"strings"

	"golang.org/x/net/http2"
)

// HTTP/2 is served by golang.org/x/net/http2's ServeConn: it serves one
// connection whose TLS handshake is already done (as here, with the
// filter's replayed ClientHello), without a listener, and reports the
// protocol errors it answers by itself (CountError), so that they are
// logged like refused requests. Extended CONNECT (RFC 8441, WebSocket over
// HTTP/2) stays off, as x/net/http2 has it by default: the engine does not
// announce it, so clients use WebSocket over HTTP/1.1, and a stream that
// tries it anyway is reset (logged as ReasonConnect).

// serveH2 serves an HTTP/2 connection until it ends.
func (s *session) serveH2(ctx context.Context, conn net.Conn) {
	srv := &http2.Server{
		MaxConcurrentStreams: maxConcurrentStreams,
		IdleTimeout:          idleTimeout,
		CountError:           s.h2Refused,
	}
	srv.ServeConn(conn, &http2.ServeConnOpts{
		Context:    context.WithValue(ctx, sessionKey{}, s),
		BaseConfig: s.e.h2Base,
		Handler:    s.e.handler,
	})
}

// h2Refused logs a stream or connection that the HTTP/2 server refused
// by itself (errType names the fault, e.g.
// "stream_PROTOCOL_ERROR_bad_path_method").
func (s *session) h2Refused(errType string) {
	reason := ReasonMalformed
	if strings.HasSuffix(errType, "bad_connect") {
		reason = ReasonConnect
	}
	s.log(Decision{Proto: "HTTP/2.0", Authority: s.opts.ServerName, Reason: reason, Detail: errType})
}
