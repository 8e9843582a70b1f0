package inspect

import (
	"encoding/json"
	"net/http"
	"slices"
)

// What a refused request is answered: a small JSON object saying which
// rule refused what, and why, so that an agent can tell a policy denial
// from a server's error. The connection stays open for the next request.

// answer is the JSON body of a refusal.
type answer struct {
	// Error is "egress_denied" when the filter refused the request,
	// "egress_upstream" when the upstream failed it.
	Error  string `json:"error"`
	Reason string `json:"reason"`
	Rule   string `json:"rule,omitempty"`
	Detail string `json:"detail,omitempty"`
	Method string `json:"method,omitempty"`
	Host   string `json:"host,omitempty"`
	Path   string `json:"path,omitempty"`
}

func (req *Request) answer(rule, reason, detail string, status int) answer {
	kind := "egress_denied"
	if status >= 500 {
		kind = "egress_upstream"
	}
	return answer{Error: kind, Reason: reason, Rule: rule, Detail: detail, Method: req.Method, Host: req.Host, Path: req.Path}
}

// refuse answers and logs a request the engine refused by itself (rule:
// the verdict's, when Decide had allowed it).
func (s *session) refuse(w http.ResponseWriter, req *Request, v *Verdict, ref refusal) {
	rule := ""
	if v != nil {
		rule = v.Rule
	}
	s.log(req.decision(false, rule, ref.reason, ref.detail, ref.status))
	writeJSON(w, ref.status, req.answer(rule, ref.reason, ref.detail, ref.status))
}

// deny answers and logs a request Decide refused: a JSON-RPC request with
// an id gets a JSON-RPC error for each of its ids (HTTP 200, as a server
// answers a failed call, so that the client's call fails with the rule's
// name instead of a transport error); any other request a 403.
func (s *session) deny(w http.ResponseWriter, req *Request, v Verdict) {
	reason := v.Reason
	if reason == "" {
		reason = "denied"
	}
	d := req.decision(false, v.Rule, reason, "", http.StatusForbidden)
	d.DeniedCalls = v.DeniedCalls
	var body any = req.answer(v.Rule, reason, "", http.StatusForbidden)
	if rpcBody, ok := rpcDenial(req, v.Rule, reason, v.DeniedCalls); ok {
		d.Status, body = http.StatusOK, rpcBody
	}
	// Logged before the answer leaves: whoever reads the answer can find
	// the decision.
	s.log(d)
	writeJSON(w, d.Status, body)
}

// JSON-RPC error codes of refused calls (the implementation-defined
// server error range of JSON-RPC 2.0, 5.1).
const (
	// RPCCodeDenied: the policy refuses this call.
	RPCCodeDenied = -32001
	// RPCCodeWithheld: this call of a batch was allowed, but another call
	// of the batch was refused, and a batch is sent whole or not at all.
	RPCCodeWithheld = -32002
)

type rpcResponse struct {
	JSONRPC string          `json:"jsonrpc"`
	ID      json.RawMessage `json:"id"`
	Error   rpcError        `json:"error"`
}

type rpcError struct {
	Code    int    `json:"code"`
	Message string `json:"message"`
	Data    answer `json:"data"`
}

// rpcDenial is the JSON-RPC answer to a refused request: an error object
// for each call with an id (in an array for a batch). ok is false when no
// call has an id (notifications only, or no JSON-RPC at all): there is no
// one to answer in JSON-RPC.
func rpcDenial(req *Request, rule, reason string, denied []int) (body any, ok bool) {
	if req.RPC == nil {
		return nil, false
	}
	var out []rpcResponse
	for i, c := range req.RPC.Calls {
		if c.ID == nil {
			continue
		}
		data := req.answer(rule, reason, "", http.StatusForbidden)
		data.Detail = c.Method
		if c.Tool != "" {
			data.Detail += " " + c.Tool
		}
		e := rpcError{Code: RPCCodeDenied, Message: "clawrun: denied by the egress policy", Data: data}
		if len(denied) > 0 && !slices.Contains(denied, i) {
			e.Code, e.Message = RPCCodeWithheld, "clawrun: not sent: another call of the batch was denied"
		}
		out = append(out, rpcResponse{JSONRPC: "2.0", ID: c.ID, Error: e})
	}
	switch {
	case len(out) == 0:
		return nil, false
	case req.RPC.Batch:
		return out, true
	default:
		return out[0], true
	}
}

func writeJSON(w http.ResponseWriter, status int, body any) {
	b, err := json.Marshal(body)
	if err != nil {
		b = []byte(`{"error":"egress_denied"}`)
	}
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_, _ = w.Write(append(b, '\n'))
}
