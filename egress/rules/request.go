package rules

import (
	"net/url"
	"slices"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/clawrun/clawrun/runtime/policy"
)

// Reasons of plain-HTTP request checks (see AllowRequest).
const (
	ReasonRequest  Reason = "request"   // method, path or query not allowed by the endpoint's rules
	ReasonDenyRule Reason = "deny_rule" // a deny rule of the endpoint matched the request
)

// Methods allowed by access: read-only and read-write.
var (
	readOnlyMethods  = []string{"GET", "HEAD", "OPTIONS"}
	readWriteMethods = []string{"GET", "HEAD", "OPTIONS", "POST", "PUT", "PATCH"}
)

// AllowRequest checks one plain-HTTP request (method and request-target)
// against the endpoint's L7 rules. In order: DenyAll denies
// (unenforceable); an ambiguous target (dot segments, encoded '/', '\'
// or '%', backslashes, empty segments, control characters, bytes that
// are not UTF-8 once decoded, a fragment; the same once ;parameters are
// removed) denies, since the server may read it differently; the
// endpoint's path must match; any deny rule that matches denies
// (deny_rule); access read-only allows only GET, HEAD, OPTIONS and
// read-write also POST, PUT, PATCH; allow rules, when present, must match
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
func (r *Rules) AllowRequest(e *Endpoint, method, target string) (bool, Reason) {
	if e == nil || e.L7 == nil {
		return true, ReasonAllowed
	}
	l7 := e.L7
	if l7.DenyAll {
		return false, ReasonUnenforceable
	}
	tp, ok := requestPath(target)
	if !ok {
		return false, ReasonRequest
	}
	query, qerr := url.ParseQuery(tp.query)
	exact, broad := tp.readings(false), tp.readings(true)
	if l7.Path != "" && !everyReading(exact, func(p string) bool { return globMatch(l7.Path, p) }) {
		return false, ReasonRequest
	}
	for _, rule := range l7.Deny {
		for _, p := range broad {
			if ruleMatches(rule, method, p, query, qerr, true) {
				return false, ReasonDenyRule
			}
		}
	}
	switch {
	case l7.ReadOnly:
		if !slices.Contains(readOnlyMethods, method) {
			return false, ReasonRequest
		}
	case l7.ReadWrite:
		if !slices.Contains(readWriteMethods, method) {
			return false, ReasonRequest
		}
	}
	if len(l7.Allow) == 0 {
		return true, ReasonAllowed
	}
	allowed := everyReading(exact, func(p string) bool {
		return slices.ContainsFunc(l7.Allow, func(rule policy.Rule) bool { return ruleMatches(rule, method, p, query, qerr, false) })
	})
	if allowed {
		return true, ReasonAllowed
	}
	return false, ReasonRequest
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
