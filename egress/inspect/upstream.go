package inspect

import (
	"context"
	"crypto/tls"
	"errors"
	"net"
	"net/http"
	"net/http/httptrace"
	"net/http/httputil"
	"net/url"
	"strconv"
	"time"
)

// The upstream side: every allowed request is written anew by net/http
// (h1Upstream or net/http's Transport, through httputil.ReverseProxy),
// never copied as bytes, so the upstream gets exactly the request that
// was decided: one Host, the checked authority, framing of the engine's
// own making, no hop-by-hop fields (Connection and what it names,
// Proxy-Authorization, TE, Upgrade...), no Forwarded or X-Forwarded-*
// (the container's address is nobody's business). Connections to the
// upstream are reused from request to request: those of the HTTP/1.1
// client connections with the same Options.Pool are shared (pool.go);
// otherwise they are the client connection's own, closed with it.

const (
	// upstreamHandshakeTimeout bounds the dial and TLS handshake with the
	// upstream (the filter's dial timeout).
	upstreamHandshakeTimeout = 15 * time.Second
	// upstreamIdle is how long an idle upstream connection of a client
	// connection's own is kept.
	upstreamIdle = 90 * time.Second
	// maxUpstreamConns bounds the upstream connections of an HTTP/2
	// client connection (its concurrent streams over an HTTP/1.1
	// upstream): one client connection does not become a hundred
	// upstream. Requests beyond wait for one of them. It also bounds the
	// idle connections kept per upstream.
	maxUpstreamConns = 16
)

// upstreamClient sends a session's requests upstream: an http.Transport,
// or an h1Upstream in front of one.
type upstreamClient interface {
	http.RoundTripper
	CloseIdleConnections()
}

// clientFor is the session's upstream client: for an HTTP/1.1 client,
// the one shared by its Options.Pool, else one of its own; for HTTP/2, a
// Transport of its own.
func (s *session) clientFor() (t upstreamClient, own bool) {
	switch {
	case s.h2:
		return newTransport(true, upstreamIdle, maxUpstreamConns), true
	case s.opts.Pool == nil:
		return newH1Upstream(newTransport(false, upstreamIdle, maxUpstreamConns)), true
	}
	key := poolKey{pool: s.opts.Pool, name: s.upstreamName(), port: s.upstreamPort()}
	return s.e.pools.client(key, func() *h1Upstream {
		// As many connections as its client connections need at once
		// (each has one request in flight at most).
		return newH1Upstream(newTransport(false, pooledIdle, 0))
	}), false
}

// newTransport is a Transport to one upstream, at most maxConns
// connections (0: no limit); it dials for the session whose request
// needs a connection (dialForRequest).
func newTransport(h2 bool, idle time.Duration, maxConns int) *http.Transport {
	return &http.Transport{
		Proxy:               nil, // the filter is the proxy
		DialTLSContext:      dialForRequest,
		ForceAttemptHTTP2:   h2,   // h2 upstream when the upstream agrees
		DisableCompression:  true, // bodies pass as they are
		MaxConnsPerHost:     maxConns,
		MaxIdleConnsPerHost: maxUpstreamConns,
		IdleConnTimeout:     idle,
		// Expect: 100-continue is honoured upstream, for a while.
		ExpectContinueTimeout: time.Second,
	}
}

func (s *session) newProxy() *httputil.ReverseProxy {
	return &httputil.ReverseProxy{
		Rewrite:   s.rewrite,
		Transport: roundTripper{s},
		// FlushInterval 0: ReverseProxy flushes every write of a body that
		// streams (text/event-stream, or no Content-Length: chunked, an
		// LLM's tokens) by itself; a body of known length goes out as it
		// fills the connection's buffer, its head with its first bytes.
		// (-1 would flush the head alone from a timer goroutine: one more
		// TLS record and write per response.)
		FlushInterval:  0,
		ErrorLog:       s.e.errorLog,
		BufferPool:     &s.e.buffers,
		ModifyResponse: s.forwarded,
		ErrorHandler:   s.upstreamFailed,
	}
}

// rewrite makes the upstream request: origin-form target as the client
// sent it, for the connection's server name; then Options.Rewrite, which
// may not change where it goes.
func (s *session) rewrite(pr *httputil.ProxyRequest) {
	ex := exchangeFrom(pr.In.Context())
	out := pr.Out
	out.URL = s.upstreamURL(ex.req)
	out.Host = s.host
	out.Header.Del("Host")
	// Trailer fields come after the body, after Decide: dropped, as a
	// recipient of a chunked body may (RFC 9112, 7.1.2).
	out.Trailer = nil
	if s.opts.Rewrite == nil {
		return
	}
	dest, host := *out.URL, out.Host
	if err := s.opts.Rewrite(out); err != nil {
		ex.rewriteErr = err
	} else if out.URL == nil || out.URL.Scheme != dest.Scheme || out.URL.Host != dest.Host || out.Host != host {
		ex.rewriteErr = errRewriteDestination
	}
}

// upstreamHost is the Host sent upstream: the upstream's name, with the
// port only when it is not https's.
func (s *session) upstreamHost() string {
	name, port := s.upstreamName(), s.port
	if s.opts.Upstream != "" {
		port = ""
		if s.opts.UpstreamPort != 0 {
			port = strconv.Itoa(s.opts.UpstreamPort)
		}
	}
	if port == "" || port == "443" {
		return name
	}
	return net.JoinHostPort(name, port)
}

// upstreamPort is the port the upstream is dialled on: Options.UpstreamPort
// (443 when 0) with Options.Upstream, else the client's.
func (s *session) upstreamPort() int {
	if s.opts.Upstream == "" {
		return s.opts.Port
	}
	if s.opts.UpstreamPort == 0 {
		return 443
	}
	return s.opts.UpstreamPort
}

// upstreamName is the name the upstream's certificate must prove:
// Options.Upstream, else the server name.
func (s *session) upstreamName() string {
	if s.opts.Upstream != "" {
		return s.opts.Upstream
	}
	return s.opts.ServerName
}

// upstreamURL is the request's URL upstream. Its target is the path and
// query exactly as the client sent them (Opaque; net/url would otherwise
// re-encode some characters), except a path starting with "//", which
// Opaque would read as an authority: net/url writes that one from its
// decoded form, equivalent.
func (s *session) upstreamURL(req *Request) *url.URL {
	u := &url.URL{Scheme: "https", Host: s.host, RawQuery: req.RawQuery}
	if len(req.Path) > 1 && req.Path[:2] == "//" {
		u.Path = req.DecodedPath
		u.RawPath = req.Path
	} else {
		u.Opaque = req.Path
	}
	return u
}

// roundTripper sends a request on the session's upstream connections,
// unless Options.Rewrite refused it.
type roundTripper struct{ s *session }

func (rt roundTripper) RoundTrip(r *http.Request) (*http.Response, error) {
	if ex := exchangeFrom(r.Context()); ex != nil && ex.rewriteErr != nil {
		return nil, &rewriteError{ex.rewriteErr}
	}
	if rt.s.opts.GotUpstream != nil && !rt.s.toldConn.Load() {
		r = r.WithContext(httptrace.WithClientTrace(r.Context(), &httptrace.ClientTrace{
			GotConn: func(info httptrace.GotConnInfo) {
				if rt.s.toldConn.CompareAndSwap(false, true) {
					c := info.Conn
					if tc, ok := c.(*tls.Conn); ok {
						c = tc.NetConn()
					}
					rt.s.opts.GotUpstream(c)
				}
			},
		}))
	}
	return rt.s.client.RoundTrip(r)
}

type rewriteError struct{ err error }

func (e *rewriteError) Error() string { return "inspect: Rewrite: " + e.err.Error() }
func (e *rewriteError) Unwrap() error { return e.err }

// dialUpstream connects to the address the filter checked and does TLS
// with the upstream's name (upstreamName), verified against the engine's roots.
func (s *session) dialUpstream(ctx context.Context, _, _ string) (net.Conn, error) {
	ctx, cancel := context.WithTimeout(ctx, upstreamHandshakeTimeout)
	defer cancel()
	raw, err := s.opts.DialUpstream(ctx)
	if err != nil {
		return nil, err
	}
	conn := tls.Client(raw, s.e.upstreamConfig(s.upstreamName(), s.h2))
	if err := conn.HandshakeContext(ctx); err != nil {
		raw.Close()
		var verr *tls.CertificateVerificationError
		if errors.As(err, &verr) {
			return nil, &upstreamCertError{verr}
		}
		return nil, err
	}
	return conn, nil
}

// upstreamCertError: the upstream's certificate did not verify. The
// request is refused: never sent unverified.
type upstreamCertError struct{ err error }

func (e *upstreamCertError) Error() string { return "upstream certificate: " + e.err.Error() }
func (e *upstreamCertError) Unwrap() error { return e.err }

// forwarded logs an allowed request once the upstream answered it.
func (s *session) forwarded(resp *http.Response) error {
	if ex := exchangeFrom(resp.Request.Context()); ex != nil {
		v := ex.verdict
		reason := v.Reason
		if reason == "" {
			reason = "allowed"
		}
		s.log(ex.req.decision(true, v.Rule, reason, "", resp.StatusCode))
	}
	return nil
}

// upstreamFailed answers and logs an allowed request that could not be
// sent, or not answered: 403 when Rewrite refused it, otherwise 502 (the
// request was allowed; the upstream, or the way to it, failed).
func (s *session) upstreamFailed(w http.ResponseWriter, r *http.Request, err error) {
	ex := exchangeFrom(r.Context())
	var (
		rwErr   *rewriteError
		certErr *upstreamCertError
	)
	ref := refusal{http.StatusBadGateway, ReasonUpstream, err.Error()}
	switch {
	case errors.As(err, &rwErr):
		ref = refusal{http.StatusForbidden, rewriteReason(rwErr.err), rwErr.err.Error()}
	case errors.As(err, &certErr):
		ref = refusal{http.StatusBadGateway, ReasonUpstreamCert, certErr.err.Error()}
	case r.Context().Err() != nil:
		ref.reason = ReasonCanceled
	}
	ref.detail = clip(ref.detail)
	s.refuse(w, ex.req, &ex.verdict, ref)
}

// rewriteReason is the log's reason for a refusal of Options.Rewrite: the
// error's own (a LogReason method) or ReasonRewrite.
func rewriteReason(err error) string {
	var r interface{ LogReason() string }
	if errors.As(err, &r) && r.LogReason() != "" {
		return r.LogReason()
	}
	return ReasonRewrite
}
