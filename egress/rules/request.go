package rules

import (
	"net/url"
	"slices"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/clawrun/clawrun/runtime/policy"
)

// Reasons of request checks (see AllowRequest).
const (
	ReasonRequest  Reason = "request"   // method, path or query not allowed by the endpoint's rules
	ReasonDenyRule Reason = "deny_rule" // a deny rule of the endpoint matched the request
	ReasonRPC      Reason = "rpc"       // a JSON-RPC call (method, MCP tool) not allowed, or a body that is not one
	// ReasonMethodOverride: a method-override header names a method the
	// endpoint's rules do not allow, or is not a method at all.
	ReasonMethodOverride Reason = "method_override"
)

// MethodOverrideHeaders are the header fields with which common server
// frameworks (Google APIs, Express's method-override, Rails, ASP.NET) let
// a request run another method than the one it was sent with: a GET that
// says X-HTTP-Method-Override: DELETE deletes. Their values are checked
// as methods of the request.
var MethodOverrideHeaders = []string{"X-HTTP-Method-Override", "X-HTTP-Method", "X-Method-Override"}

// MethodOverrides returns the methods that a request's method-override
// fields name, upper-cased as those frameworks read them, whatever their
// value (a value that is not a method token is kept: AllowRequest denies
// it). values returns every value of a field (case-insensitive name).
func MethodOverrides(values func(name string) []string) []string {
	var out []string
	for _, name := range MethodOverrideHeaders {
		for _, v := range values(name) {
			out = append(out, strings.ToUpper(strings.TrimSpace(v)))
		}
	}
	return out
}

// Request is one HTTP request to decide: plain HTTP, or one request of
// an inspected connection.
type Request struct {
	Method string
	// Target is the request-target as sent (origin-form, absolute-form
	// or "*").
	Target string
	// RPC is the body read as JSON-RPC, when it was (an inspected request
	// to a json-rpc or mcp endpoint); nil when it was not read.
	RPC *RPC
	// MethodOverrides: see MethodOverrides.
	MethodOverrides []string
	// WebSocket: the request asks to upgrade to WebSocket.
	WebSocket bool
}

// RPC is what a JSON-RPC body asks for: its calls, in order, and the
// number of responses (an MCP client answering its server) it carries.
type RPC struct {
	Calls     []RPCCall
	Responses int
}

// RPCCall is one JSON-RPC request or notification: its method and, for an
// MCP tools/call, the tool (params.name).
type RPCCall struct {
	Method string
	Tool   string
}

// Methods allowed by access: read-only and read-write.
var (
	readOnlyMethods  = []string{"GET", "HEAD", "OPTIONS"}
	readWriteMethods = []string{"GET", "HEAD", "OPTIONS", "POST", "PUT", "PATCH"}
)

// AllowRequest checks one request against the endpoint's L7 rules and
// returns, when it is denied for some JSON-RPC calls, their indices in
// req.RPC.Calls. In order: an ambiguous target (dot segments, encoded
// '/', '\' or '%', backslashes, empty segments, control characters, bytes
// that are not UTF-8 once decoded, a fragment; the same once ;parameters
// are removed) denies, since the server may read it differently; the
// endpoint's path must match; then a JSON-RPC endpoint decides by the
// calls of the body (allowRPC); otherwise any deny rule that matches
// denies (deny_rule); access read-only allows only GET, HEAD, OPTIONS (and
// no WebSocket upgrade, whose messages write, but on protocol: websocket)
// and read-write also POST, PUT, PATCH; allow rules, when present, must match
// one rule. Other failures are reason request. Paths are matched
// percent-decoded.
//
// Allow rules match exactly (method and path case-sensitive; every value
// of a query parameter must match; the path both as sent and without its
// ;parameters) and deny rules broadly (case-insensitive; any value
// matching; any reading of the path a lenient server routes on: as sent,
// without ;parameters, without a trailing slash, without the last
// segment's extension), so that neither can be dodged by spelling a
// request the way a lenient server would read it.
//
// A request with method-override fields (MethodOverrideHeaders) is
// allowed only if it would be with its own method and with each method
// they name, since the server may run either.
func (r *Rules) AllowRequest(e *Endpoint, req Request) (bool, Reason, []int) {
	if e == nil || e.L7 == nil {
		return true, ReasonAllowed, nil
	}
	if len(req.MethodOverrides) > 0 {
		return r.allowOverridden(e, req)
	}
	l7 := e.L7
	tp, ok := requestPath(req.Target)
	if !ok {
		return false, ReasonRequest, nil
	}
	m := requestMatch{method: req.Method, exact: tp.readings(false), broad: tp.readings(true)}
	if l7.namesQuery() { // parsed only for rules that read it
		m.query, m.qerr = url.ParseQuery(tp.query)
	}
	if l7.Path != "" && !everyReading(m.exact, func(p string) bool { return globMatch(l7.Path, p) }) {
		return false, ReasonRequest, nil
	}
	if l7.RPC != "" {
		return allowRPC(l7, req, m)
	}
	for _, rule := range l7.Deny {
		if m.matches(rule, true) {
			return false, ReasonDenyRule, nil
		}
	}
	switch {
	case l7.ReadOnly:
		if !slices.Contains(readOnlyMethods, req.Method) || req.WebSocket && !l7.WebSocket {
			return false, ReasonRequest, nil
		}
	case l7.ReadWrite:
		if !slices.Contains(readWriteMethods, req.Method) {
			return false, ReasonRequest, nil
		}
	}
	if len(l7.Allow) == 0 || slices.ContainsFunc(l7.Allow, func(rule policy.Rule) bool { return m.matches(rule, false) }) {
		return true, ReasonAllowed, nil
	}
	return false, ReasonRequest, nil
}

// allowOverridden decides a request with method-override fields: as sent,
// then as each method they name.
func (r *Rules) allowOverridden(e *Endpoint, req Request) (bool, Reason, []int) {
	overrides := req.MethodOverrides
	req.MethodOverrides = nil
	if ok, reason, calls := r.AllowRequest(e, req); !ok {
		return ok, reason, calls
	}
	for _, m := range overrides {
		if !isMethodToken(m) {
			return false, ReasonMethodOverride, nil
		}
		as := req
		as.Method = m
		if ok, _, calls := r.AllowRequest(e, as); !ok {
			return false, ReasonMethodOverride, calls
		}
	}
	return true, ReasonAllowed, nil
}

// isMethodToken: an HTTP method is a token (RFC 9110); only letters here,
// which every method in use is.
func isMethodToken(m string) bool {
	if m == "" || len(m) > 32 {
		return false
	}
	for i := 0; i < len(m); i++ {
		if c := m[i]; c < 'A' || c > 'Z' {
			return false
		}
	}
	return true
}

// requestMatch is a request as rules match it: its method, the readings
// of its path (exact for allow rules, broad for deny rules) and its
// query.
type requestMatch struct {
	method       string
	exact, broad []string
	query        url.Values
	qerr         error
}

// matches reports whether an HTTP rule matches the request: for an allow
// rule, in every exact reading of its path; for a deny rule, in any broad
// one.
func (m requestMatch) matches(rule policy.Rule, deny bool) bool {
	one := func(p string) bool { return ruleMatches(rule, m.method, p, m.query, m.qerr, deny) }
	if deny {
		return slices.ContainsFunc(m.broad, one)
	}
	return everyReading(m.exact, one)
}

// allowRPC decides a request to a JSON-RPC endpoint by the calls of its
// body, as OpenShell does: a POST whose every call some allow rule
// matches (any call, without allow rules) and no deny rule does; a call's
// rule names its method (mcp: a glob; json-rpc: exact or "*"), an MCP
// tools/call's tool (a glob) and, if it says so, the request's path and
// query. A batch with a denied call is denied whole. MCP tool names
// outside [A-Za-z0-9_.-]{1,128} are denied (OpenShell's strict_tool_names).
// JSON-RPC responses in a body are denied but on mcp, whose clients
// answer their server's requests; and MCP's GET opens the server's
// stream (it carries no body: the engine refuses one). A POST whose body
// was not read (plain HTTP) cannot be decided: unenforceable.
func allowRPC(l7 *L7Rules, req Request, m requestMatch) (bool, Reason, []int) {
	switch {
	case req.Method == "GET" && l7.RPC == "mcp" && req.RPC == nil:
		return true, ReasonAllowed, nil
	case req.Method != "POST":
		return false, ReasonRequest, nil
	case req.RPC == nil:
		return false, ReasonUnenforceable, nil
	case req.RPC.Responses > 0 && l7.RPC != "mcp":
		return false, ReasonRPC, nil
	}
	var denied []int
	reason := ReasonRPC
	for i, call := range req.RPC.Calls {
		ok, why := allowCall(l7, call, m)
		if !ok {
			denied = append(denied, i)
			if why == ReasonDenyRule {
				reason = why
			}
		}
	}
	if len(denied) > 0 {
		return false, reason, denied
	}
	return true, ReasonAllowed, nil
}

// validToolName: MCP's recommended tool names ([A-Za-z0-9_.-]{1,128}),
// which OpenShell requires (strict_tool_names) before a policy sees them.
// No regexp: this package is linked into every clawrun process, and one
// compiled at init costs each of them.
func validToolName(name string) bool {
	if len(name) < 1 || len(name) > 128 {
		return false
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '.' || c == '-') {
			return false
		}
	}
	return true
}

// allowCall decides one call of a JSON-RPC body (see allowRPC).
func allowCall(l7 *L7Rules, call RPCCall, m requestMatch) (bool, Reason) {
	if l7.RPC == "mcp" && call.Method == "tools/call" && !validToolName(call.Tool) {
		return false, ReasonRPC
	}
	for _, rule := range l7.Deny {
		if m.matchesCall(rule, call, l7.RPC, true) {
			return false, ReasonDenyRule
		}
	}
	if len(l7.Allow) == 0 || slices.ContainsFunc(l7.Allow, func(rule policy.Rule) bool { return m.matchesCall(rule, call, l7.RPC, false) }) {
		return true, ReasonAllowed
	}
	return false, ReasonRPC
}

// matchesCall reports whether a JSON-RPC rule matches one call of the
// request: its method and tool, and the request's path and query as
// matches does. Deny rules match case-insensitively.
func (m requestMatch) matchesCall(rule policy.Rule, call RPCCall, protocol string, deny bool) bool {
	fold := func(s string) string { return s }
	if deny {
		fold = strings.ToLower
	}
	switch {
	case rule.Method == "" || rule.Method == "*":
	case protocol == "mcp":
		if !wildMatch(fold(rule.Method), fold(call.Method)) {
			return false
		}
	case fold(rule.Method) != fold(call.Method):
		return false
	}
	if rule.Tool != "" && (fold(call.Method) != "tools/call" || !wildMatch(fold(rule.Tool), fold(call.Tool))) {
		return false
	}
	rule.Method, rule.Tool = "", ""
	return m.matches(rule, deny)
}

// namesQuery reports whether a rule of l7 names query parameters.
func (l7 *L7Rules) namesQuery() bool {
	hasQuery := func(rule policy.Rule) bool { return len(rule.Query) > 0 }
	return slices.ContainsFunc(l7.Allow, hasQuery) || slices.ContainsFunc(l7.Deny, hasQuery)
}

func everyReading(readings []string, ok func(string) bool) bool {
	for _, p := range readings {
		if !ok(p) {
			return false
		}
	}
	return true
}

// targetPath is the path of a request-target as servers read it.
type targetPath struct {
	decoded string // percent-decoded
	// bare is decoded without the ;parameters of its segments, which
	// servers of the Servlet family (Tomcat, Jetty, Spring) drop before
	// routing: /admin;x is /admin there.
	bare  string
	query string // raw
}

// readings returns the paths a server may route the request on: as
// decoded and bare; when broad (for deny rules) also each without a
// trailing slash (/admin/ for /admin) and without the last segment's
// extension (Spring's suffix matching: /admin.json for /admin).
func (tp targetPath) readings(broad bool) []string {
	out := []string{tp.decoded}
	add := func(p string) {
		if !slices.Contains(out, p) {
			out = append(out, p)
		}
	}
	add(tp.bare)
	if broad {
		for _, p := range slices.Clone(out) {
			if len(p) > 1 {
				p = strings.TrimSuffix(p, "/")
			}
			add(p)
			add(withoutExtension(p))
		}
	}
	return out
}

// withoutExtension cuts the last segment of p at its first dot (one that
// does not start the segment: /.well-known stays).
func withoutExtension(p string) string {
	seg := strings.LastIndexByte(p, '/') + 1
	if dot := strings.IndexByte(p[seg:], '.'); dot > 0 {
		return p[:seg+dot]
	}
	return p
}

// requestPath returns the path and the raw query of a request-target
// (origin-form, absolute-form, or "*"), or false when the target is
// ambiguous.
func requestPath(target string) (targetPath, bool) {
	if target == "*" {
		return targetPath{decoded: "*", bare: "*"}, true
	}
	if i := strings.Index(target, "://"); i > 0 && !strings.HasPrefix(target, "/") {
		rest := target[i+3:]
		j := strings.IndexAny(rest, "/?")
		if j < 0 {
			target = "/"
		} else if rest[j] == '?' {
			target = "/" + rest[j:]
		} else {
			target = rest[j:]
		}
	}
	raw, query, _ := strings.Cut(target, "?")
	if !strings.HasPrefix(raw, "/") || strings.ContainsAny(target, "#\\") {
		return targetPath{}, false
	}
	var b strings.Builder
	for i := 0; i < len(raw); i++ {
		c := raw[i]
		if c == '%' {
			if i+2 >= len(raw) {
				return targetPath{}, false
			}
			v, err := strconv.ParseUint(raw[i+1:i+3], 16, 8)
			if err != nil {
				return targetPath{}, false
			}
			c = byte(v)
			i += 2
			if c == '/' || c == '\\' || c == '%' {
				// An encoded separator is one segment to us and maybe two to
				// the server; "%25" decoded twice is the same problem.
				return targetPath{}, false
			}
		}
		if c <= ' ' || c == 0x7f {
			return targetPath{}, false
		}
		b.WriteByte(c)
	}
	tp := targetPath{decoded: b.String(), query: query}
	if !utf8.ValidString(tp.decoded) {
		// Overlong or broken sequences ("%c0%af") decode to '/' or '.' on
		// some servers.
		return targetPath{}, false
	}
	segs := strings.Split(tp.decoded, "/")
	for i, s := range segs {
		segs[i], _, _ = strings.Cut(s, ";")
	}
	tp.bare = strings.Join(segs, "/")
	for _, p := range []string{tp.decoded, tp.bare} {
		if !plainSegments(p) {
			return targetPath{}, false
		}
	}
	return tp, true
}

// plainSegments reports a path without dot segments and without empty
// segments (but the last: a trailing slash), which servers resolve or
// collapse in different ways.
func plainSegments(p string) bool {
	segs := strings.Split(p, "/")
	for i, s := range segs[1:] {
		if s == "." || s == ".." || (s == "" && i != len(segs)-2) {
			return false
		}
	}
	return true
}

func ruleMatches(rule policy.Rule, method, p string, query url.Values, qerr error, deny bool) bool {
	fold := func(s string) string { return s }
	if deny {
		fold = strings.ToLower
	}
	if rule.Method != "" && rule.Method != "*" && fold(rule.Method) != fold(method) {
		return false
	}
	if rule.Path != "" && !globMatchOr(fold(rule.Path), fold(p), deny) {
		return false
	}
	for k, pat := range rule.Query {
		if qerr != nil {
			// An unparsable query cannot be checked: it matches a deny
			// rule and no allow rule.
			return deny
		}
		vals := query[k]
		if len(vals) == 0 {
			return false
		}
		n := 0
		for _, v := range vals {
			if wildMatch(fold(pat), fold(v)) {
				n++
			}
		}
		if deny && n == 0 || !deny && n != len(vals) {
			return false
		}
	}
	return true
}
