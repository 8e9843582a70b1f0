package inspect

import (
	"context"
	"errors"
	"net/http"
)

// serveHTTP serves one request of an inspected connection (HTTP/1.x or an
// HTTP/2 stream): the engine's own checks, the JSON-RPC body when asked
// for, Decide, then the upstream, or the refusal.
func (e *Engine) serveHTTP(w http.ResponseWriter, r *http.Request) {
	s := sessionFrom(r.Context())
	if !s.begin() {
		return
	}
	defer s.handlers.Done()
	if s.h1conn != nil {
		s.h1conn.handling()
	}

	req, ref := s.newRequest(r)
	if ref == nil && s.opts.InspectRPC != nil && s.opts.InspectRPC(*req) {
		var body *heldBody
		body, ref = s.readRPC(r, req)
		defer body.free() // if it was not sent
	}
	if ref != nil {
		s.refuse(w, req, nil, *ref)
		return
	}
	v := s.opts.Decide(*req)
	if !v.allows() {
		s.deny(w, req, v)
		return
	}
	ex := &exchange{req: req, verdict: v, session: s}
	s.proxy.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), exchangeKey{}, ex)))
}

// exchange is an allowed request on its way upstream.
type exchange struct {
	req     *Request
	verdict Verdict
	session *session // whose DialUpstream a new upstream connection uses
	// rewriteErr is why Options.Rewrite refused the request.
	rewriteErr error
}

type exchangeKey struct{}

func exchangeFrom(ctx context.Context) *exchange {
	ex, _ := ctx.Value(exchangeKey{}).(*exchange)
	return ex
}

// errRewriteDestination: Options.Rewrite changed where the request goes.
var errRewriteDestination = errors.New("inspect: Rewrite changed the request's destination")

// decision is the log line of a request.
func (req *Request) decision(allow bool, rule, reason, detail string, status int) Decision {
	d := Decision{Allow: allow, Proto: req.Proto, Method: req.Method, Authority: req.Authority, Path: req.Path,
		WebSocket: req.WebSocket, Rule: rule, Reason: reason, Detail: detail, Status: status}
	if req.RPC != nil {
		d.Calls = req.RPC.Calls
	}
	return d
}
