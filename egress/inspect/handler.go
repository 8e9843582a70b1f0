package inspect

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
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
		ref = s.readRPC(r, req)
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
	ex := &exchange{req: req, verdict: v}
	s.proxy.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), exchangeKey{}, ex)))
}

// readRPC reads the body of a request to inspect as JSON-RPC into
// req.RPC, and puts it back for the upstream. An empty body (MCP's GET of
// the server's stream, a DELETE ending a session) has no calls.
func (s *session) readRPC(r *http.Request, req *Request) *refusal {
	if ce := r.Header.Get("Content-Encoding"); ce != "" && ce != "identity" {
		return &refusal{http.StatusUnsupportedMediaType, ReasonRPCInvalid, "Content-Encoding " + clip(ce)}
	}
	max := s.e.maxRPCBody
	if r.ContentLength > max {
		return &refusal{http.StatusRequestEntityTooLarge, ReasonBodyTooLarge, fmt.Sprintf("body of %d bytes, over %d", r.ContentLength, max)}
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, max+1))
	if err != nil {
		return &refusal{http.StatusBadRequest, ReasonMalformed, "body: " + err.Error()}
	}
	if int64(len(body)) > max {
		return &refusal{http.StatusRequestEntityTooLarge, ReasonBodyTooLarge, fmt.Sprintf("body over %d bytes", max)}
	}
	req.RPC = &RPC{}
	if len(body) > 0 {
		if req.RPC, err = ParseRPC(body); err != nil {
			return &refusal{http.StatusBadRequest, ReasonRPCInvalid, err.Error()}
		}
	}
	// The upstream gets the bytes that were read, framed by their length.
	r.Body = io.NopCloser(bytes.NewReader(body))
	r.ContentLength = int64(len(body))
	r.TransferEncoding = nil
	r.Header.Del("Expect") // the body is here already
	return nil
}

// exchange is an allowed request on its way upstream.
type exchange struct {
	req     *Request
	verdict Verdict
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
