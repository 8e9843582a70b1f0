package inspect

import (
	"net/http"
	"net/url"
)

// Request is what Decide gets to see of one HTTP request: everything a
// policy's request rules can name. The engine has already made sure the
// request is for the connection's server name (see Options.ServerName);
// what Decide allows is exactly what is sent upstream.
type Request struct {
	// Proto is "HTTP/1.1" (or "HTTP/1.0") or "HTTP/2.0".
	Proto  string
	Method string
	// Host is the server name the request is for: the connection's
	// ServerName (the Host or :authority, checked equal to it).
	Host string
	// Authority is the Host header or :authority as sent (its port, if
	// any, is the connection's).
	Authority string
	// Path is the request target's path exactly as sent, still
	// percent-encoded ("*" for OPTIONS *); DecodedPath is it decoded.
	Path        string
	DecodedPath string
	// RawQuery is the query as sent, without the '?'.
	RawQuery string
	// WebSocket: an HTTP/1.1 upgrade to the WebSocket protocol. Once the
	// server switches, the connection's bytes flow both ways unread.
	WebSocket bool
	// Header holds the request's header fields (read only).
	Header http.Header
	// RPC is the request body read as JSON-RPC, when Options.InspectRPC
	// asked for it; nil otherwise.
	RPC *RPC
}

// Query parses RawQuery (invalid pairs are dropped, as net/url does).
func (r *Request) Query() url.Values {
	q, _ := url.ParseQuery(r.RawQuery)
	return q
}

// Verdict is Decide's answer for one request.
type Verdict struct {
	Allow bool
	// Rule names what decided (a policy's name), for the client's answer
	// and the log.
	Rule string
	// Reason says why, in a word or two ("allowed", "not_allowed",
	// "method", "audit"...).
	Reason string
	// DeniedCalls, on a denial of a JSON-RPC request, are the indices in
	// Request.RPC.Calls of the calls the policy refuses; empty means all.
	// A request with a denied call is denied whole (nothing of a batch is
	// sent), and a Verdict that allows but lists denied calls denies.
	DeniedCalls []int
}

// allows reports whether v lets the request through: Allow, and no call
// refused.
func (v Verdict) allows() bool { return v.Allow && len(v.DeniedCalls) == 0 }

// Decision is one line of the engine's log: what was decided for one
// request, and what the client was answered.
type Decision struct {
	Allow     bool   `json:"allow"`
	Proto     string `json:"proto,omitempty"`
	Method    string `json:"method,omitempty"`
	Authority string `json:"authority,omitempty"`
	Path      string `json:"path,omitempty"`
	WebSocket bool   `json:"websocket,omitempty"`
	// Calls are the JSON-RPC calls of the request, when it was read as
	// JSON-RPC; DeniedCalls their indices that the policy refused.
	Calls       []Call `json:"calls,omitempty"`
	DeniedCalls []int  `json:"denied_calls,omitempty"`
	Rule        string `json:"rule,omitempty"`
	// Reason is the Verdict's, or one of the engine's own (Reason*) when
	// the engine refused the request before or after Decide.
	Reason string `json:"reason"`
	// Detail adds what the reason alone does not say (the upstream's
	// error, the parser's complaint).
	Detail string `json:"detail,omitempty"`
	// Status is the HTTP status the client was answered (the upstream's
	// when the request was sent).
	Status int `json:"status,omitempty"`
}

// Reasons of the engine's own refusals, as Decision.Reason.
const (
	// ReasonClientHandshake: the client's TLS handshake with the engine
	// failed; most often a client that does not trust the container's CA
	// (its trust bundle is not the one it reads, or it pins certificates).
	ReasonClientHandshake = "client_handshake"
	// ReasonMisdirected: the Host or :authority is not the connection's
	// server name (domain fronting, or a client reusing a connection for
	// another name): 421, so that an honest client retries on a
	// connection of its own for that name, which the filter checks.
	ReasonMisdirected = "misdirected"
	// ReasonConnect: CONNECT (a tunnel inside the tunnel), including
	// HTTP/2's extended CONNECT (WebSocket over HTTP/2).
	ReasonConnect = "connect"
	// ReasonUpgrade: an upgrade to another protocol than WebSocket.
	ReasonUpgrade = "upgrade"
	// ReasonMalformed: a request the HTTP parser refused before it could
	// be decided (two Host fields, a bad request line...).
	ReasonMalformed = "malformed_request"
	// ReasonBodyTooLarge: a body to inspect is larger than the engine
	// reads (Config.MaxRPCBody).
	ReasonBodyTooLarge = "body_too_large"
	// ReasonRPCInvalid: a body to inspect is not JSON-RPC that reads one
	// way only (ErrRPC).
	ReasonRPCInvalid = "rpc_invalid"
	// ReasonRewrite: Options.Rewrite failed or tried to change the
	// destination.
	ReasonRewrite = "rewrite_failed"
	// ReasonUpstreamCert: the upstream's certificate did not verify.
	ReasonUpstreamCert = "upstream_cert"
	// ReasonUpstream: the upstream could not be reached or failed.
	ReasonUpstream = "upstream_failed"
	// ReasonCanceled: the client went away before the upstream answered.
	ReasonCanceled = "canceled"
)
