package egress

import (
	"fmt"
	"maps"
	"net/netip"
	"net/url"
	"path"
	"slices"
	"strings"
	"unicode/utf8"

	"github.com/clawrun/clawrun/runtime/policy"
	"github.com/clawrun/clawrun/runtime/policy/hostname"
)

// Reasons of plain-HTTP request checks (see AllowRequest).
const (
	ReasonRequest  Reason = "request"   // method, path or query not allowed by the endpoint's rules
	ReasonDenyRule Reason = "deny_rule" // a deny rule of the endpoint matched the request
)

// tlsPorts are ports whose endpoints are expected to carry TLS even
// without a tls setting.
var tlsPorts = []int{443}

// FromPlan converts the compiled network layers of a Plan into Rules.
//
// What the filter cannot enforce never becomes an allowance. clawrun does
// not terminate TLS, so over TLS only (SNI, port) can be checked: an
// endpoint with rules, deny_rules, path or access read-only/read-write
// gets L7 (checked on every plain-HTTP request) and Unenforceable (every
// TLS connection to it is denied). A Warning naming the field is returned
// when the endpoint is expected to carry TLS (tls is set, or it lists
// port 443), since there the endpoint as written will deny. JSON-RPC and
// MCP rules name methods found in the request body, which is never
// inspected: such endpoints deny every request (L7.DenyAll).
//
// Policies are named by their network_policies key and sorted by it, so
// that decisions do not depend on map order.
func FromPlan(layers []policy.NetworkLayer, generation int64) (*Rules, []policy.Warning) {
	r := &Rules{Generation: generation, Layers: make([]Layer, 0, len(layers))}
	var warns []policy.Warning
	for _, nl := range layers {
		l := Layer{Source: nl.Source, Policies: []Policy{}}
		keys := make([]string, 0, len(nl.Policies))
		for k := range nl.Policies {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		for _, key := range keys {
			np := nl.Policies[key]
			p := Policy{Name: key, Endpoints: []Endpoint{}}
			for _, b := range np.Binaries {
				p.Binaries = append(p.Binaries, b.Path)
			}
			for i, ep := range np.Endpoints {
				field := fmt.Sprintf("network_policies.%s.endpoints[%d]", key, i)
				e, ok, w := convertEndpoint(ep, field)
				for j := range w {
					w[j].File = nl.Source
				}
				warns = append(warns, w...)
				if ok {
					p.Endpoints = append(p.Endpoints, e)
				}
			}
			l.Policies = append(l.Policies, p)
		}
		r.Layers = append(r.Layers, l)
	}
	return r, warns
}

func convertEndpoint(ep policy.Endpoint, field string) (Endpoint, bool, []policy.Warning) {
	var warns []policy.Warning
	warn := func(key, reason string) {
		warns = append(warns, policy.Warning{Field: field + "." + key, Reason: reason})
	}
	host, err := hostname.ParsePattern(ep.Host)
	if err != nil {
		// The parser refuses such hosts; dropping the endpoint only narrows.
		warn("host", fmt.Sprintf("%q is not a host name (%v): the endpoint is ignored", ep.Host, err))
		return Endpoint{}, false, warns
	}
	e := Endpoint{
		Host:     host,
		Ports:    slices.Clone(ep.Ports),
		Protocol: ep.Protocol,
		Audit:    ep.Enforcement == "audit",
	}
	for i, s := range ep.AllowedIPs {
		p, err := parsePrefix(s)
		if err != nil {
			warn(fmt.Sprintf("allowed_ips[%d]", i), fmt.Sprintf("%q is not an address or prefix: ignored", s))
			continue
		}
		e.AllowedIPs = append(e.AllowedIPs, p)
	}

	// The fields that constrain requests rather than connections.
	var l7fields []string
	if ep.Path != "" {
		l7fields = append(l7fields, "path")
	}
	if ep.Access == "read-only" || ep.Access == "read-write" {
		l7fields = append(l7fields, "access")
	}
	if len(ep.Rules) > 0 {
		l7fields = append(l7fields, "rules")
	}
	if len(ep.DenyRules) > 0 {
		l7fields = append(l7fields, "deny_rules")
	}
	tlsExpected := ep.TLS != ""
	for _, p := range ep.Ports {
		tlsExpected = tlsExpected || slices.Contains(tlsPorts, p)
	}
	if len(l7fields) == 0 {
		if ep.TLS == "terminate" {
			warn("tls", "clawrun does not terminate TLS: only the server name and port of the connection are checked")
		}
		return e, true, warns
	}

	l7 := &L7Rules{Path: ep.Path, ReadOnly: ep.Access == "read-only", ReadWrite: ep.Access == "read-write"}
	bodyMethods := ep.Protocol == "json-rpc" || ep.Protocol == "mcp"
	for _, set := range []struct {
		key string
		in  []policy.Rule
		out *[]RequestRule
	}{{"rules", ep.Rules, &l7.Allow}, {"deny_rules", ep.DenyRules, &l7.Deny}} {
		inBody := false
		for _, pr := range set.in {
			inBody = inBody || bodyMethods && pr.Method != ""
			*set.out = append(*set.out, RequestRule{Method: pr.Method, Path: pr.Path, Query: maps.Clone(pr.Query)})
		}
		if inBody {
			// Dropping an allow rule would narrow, but dropping a deny rule
			// would widen: deny everything instead.
			l7.DenyAll = true
			warn(set.key, fmt.Sprintf("%s methods are carried in the request body, which clawrun does not inspect: every request to this endpoint is denied", ep.Protocol))
		}
	}
	e.L7 = l7
	e.Unenforceable = strings.Join(l7fields, ", ") + " need TLS termination, which clawrun does not do: TLS connections to this endpoint are denied"
	if tlsExpected {
		for _, f := range l7fields {
			warn(f, fmt.Sprintf("cannot be enforced on TLS without TLS termination, which clawrun does not do: TLS connections to %s are denied (plain HTTP requests are checked)", host))
		}
	}
	return e, true, warns
}

func parsePrefix(s string) (netip.Prefix, error) {
	if strings.Contains(s, "/") {
		p, err := netip.ParsePrefix(s)
		if err != nil {
			return p, err
		}
		return p.Masked(), nil
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Prefix{}, err
	}
	a = a.WithZone("")
	return netip.PrefixFrom(a, a.BitLen()), nil
}

// matchMode says what of a connection can be seen.
type matchMode int

const (
	modeName     matchMode = iota // the name for any process: no port, no process
	modeNameFor                   // DNS: the name for the asking process, no port
	modeOpaque                    // TLS or raw TCP: name (SNI) and port only
	modeRequest                   // one plain-HTTP request
	modeHTTPConn                  // an open plain-HTTP connection: name, port, process (requests are checked each)
)

type matchQuery struct {
	name           string
	port           int
	exes           []string
	mode           matchMode
	method, target string
}

// reasonRank orders the reasons a layer denies with: the further a
// connection got through the checks (name, port, binary, content), the
// more useful the reason.
var reasonRank = map[Reason]int{
	ReasonNotAllowed:    0,
	ReasonPort:          1,
	ReasonBinary:        2,
	ReasonUnenforceable: 3,
	ReasonRequest:       3,
	ReasonDenyRule:      3,
}

type layerResult struct {
	allow, audit bool
	reason       Reason
	policy       string
	endpoint     *Endpoint
	allowedIPs   []netip.Prefix
	binary       string // for reason binary: the executable its binaries refused
}

// Match decides a connection of which only the name (TLS SNI) and the
// port can be seen, made by an unknown process. It is MatchBinary with
// no executable: policies restricted to binaries never match.
func (r *Rules) Match(host string, port int) Decision {
	return r.MatchBinary(host, port, nil)
}

// MatchBinary decides a connection to host:port made by the processes
// exes lists (see JoinChains): for each process that holds the
// connection, its executable and its ancestors' (absolute paths).
//
// Every layer must allow it: a layer allows when one of its endpoints
// matches the name, lists the port, belongs to a policy without binaries
// or with binary globs matching an executable of every process's chain,
// and is not Unenforceable (a TLS connection to an endpoint with request
// rules). Otherwise the first denying layer (the floor comes first) gives
// the reason: not_allowed (no endpoint has the name), port (only on other
// ports), binary (only for other executables; Decision.Binary names the
// process refused), unenforceable.
//
// Audit: an endpoint with enforcement: audit that matches the name and
// the port allows what its other checks (binaries, unenforceable, L7
// rules) would deny; the Decision then has Audit set and the Reason that
// was waived. Names and ports are never audited: an audit endpoint does
// not open other names, nor other ports of its name, and a layer made
// only of audit endpoints still denies every name it does not list.
func (r *Rules) MatchBinary(host string, port int, exes []string) Decision {
	return r.decide(host, matchQuery{port: port, exes: exes, mode: modeOpaque})
}

// MatchRequest decides one plain-HTTP request, as MatchBinary plus the
// endpoints' L7 rules: host is the request's Host, target its
// request-target. Unenforceable is ignored here (it is about TLS), L7
// rules are checked instead. Call it for every request of a connection.
func (r *Rules) MatchRequest(host string, port int, exes []string, method, target string) Decision {
	return r.decide(host, matchQuery{port: port, exes: exes, mode: modeRequest, method: method, target: target})
}

// MatchHTTPConnection decides whether an open plain-HTTP connection may
// stay open (after a reload): MatchBinary without Unenforceable, which is
// about TLS; each next request is still checked with MatchRequest.
func (r *Rules) MatchHTTPConnection(host string, port int, exes []string) Decision {
	return r.decide(host, matchQuery{port: port, exes: exes, mode: modeHTTPConn})
}

// NameAllowed reports whether some process may use the name: is there,
// in every layer, an endpoint on any port whose host matches it? Binaries
// and audit mode are ignored. AllowedIPs are those of all the name's
// endpoints (any port), intersected across layers.
func (r *Rules) NameAllowed(host string) Decision {
	return r.decide(host, matchQuery{mode: modeName})
}

// NameAllowedFor decides a DNS query made by the processes exes lists (as
// for MatchBinary; nil when they are not known): is there, in every
// layer, an endpoint on any port whose host matches the name and whose
// policy's binaries, if any, match? An audit endpoint allows what its
// binaries would deny (Audit set, reason binary). AllowedIPs are those of
// the allowing endpoints, intersected across layers.
func (r *Rules) NameAllowedFor(host string, exes []string) Decision {
	return r.decide(host, matchQuery{mode: modeNameFor, exes: exes})
}

func (r *Rules) decide(host string, q matchQuery) Decision {
	if hostname.IsIPLiteral(host) {
		return Decision{Reason: ReasonIPLiteral}
	}
	name, ok := hostname.Canonical(host)
	if !ok || r == nil || len(r.Layers) == 0 {
		// No layer at all: nothing was allowed.
		return Decision{Reason: ReasonNotAllowed}
	}
	q.name = name
	if len(q.exes) > 0 {
		exes := make([]string, len(q.exes))
		for i, x := range q.exes {
			if x != chainEnd {
				exes[i] = path.Clean(x)
			}
		}
		q.exes = exes
	}
	d := Decision{Allow: true, Reason: ReasonAllowed}
	if len(q.exes) > 0 {
		d.Binary = q.exes[0]
	}
	for i := range r.Layers {
		l := &r.Layers[i]
		lr := r.matchLayer(l, q)
		if !lr.allow {
			deny := Decision{Reason: lr.reason, Rule: lr.policy, Layer: l.Source, Endpoint: lr.endpoint, Binary: d.Binary}
			if lr.reason == ReasonBinary {
				deny.Binary = lr.binary
			}
			return deny
		}
		if lr.audit && !d.Audit {
			d.Audit, d.Reason, d.Rule, d.Layer = true, lr.reason, lr.policy, l.Source
			if lr.reason == ReasonBinary {
				d.Binary = lr.binary
			}
		}
		if !d.Audit {
			d.Rule, d.Layer = lr.policy, l.Source
		}
		d.Endpoint = lr.endpoint
		if i == 0 {
			d.AllowedIPs = lr.allowedIPs
		} else {
			d.AllowedIPs = intersectPrefixes(d.AllowedIPs, lr.allowedIPs)
		}
	}
	return d
}

func (r *Rules) matchLayer(l *Layer, q matchQuery) layerResult {
	var allowed, audited, best layerResult
	best.reason = ReasonNotAllowed
	consider := func(reason Reason, p *Policy, e *Endpoint, binary string) {
		if best.endpoint == nil || reasonRank[reason] > reasonRank[best.reason] {
			best = layerResult{reason: reason, policy: p.Name, endpoint: e, binary: binary}
		}
	}
	for i := range l.Policies {
		p := &l.Policies[i]
		for j := range p.Endpoints {
			e := &p.Endpoints[j]
			if !hostname.Match(e.Host, q.name) {
				continue
			}
			if q.mode == modeName {
				// Any port: the allowed_ips of every endpoint of the name.
				if !allowed.allow {
					allowed = layerResult{allow: true, reason: ReasonAllowed, policy: p.Name, endpoint: e}
				}
				allowed.allowedIPs = append(allowed.allowedIPs, e.AllowedIPs...)
				continue
			}
			if q.mode != modeNameFor && !slices.Contains(e.Ports, q.port) {
				consider(ReasonPort, p, e, "")
				continue
			}
			waived, refused := ReasonAllowed, ""
			if len(p.Binaries) > 0 && refusedProcess(p.Binaries, q.exes, &refused) {
				waived = ReasonBinary
			} else if q.mode == modeOpaque && e.Unenforceable != "" {
				waived = ReasonUnenforceable
			} else if q.mode == modeRequest {
				if ok, why := r.AllowRequest(e, q.method, q.target); !ok {
					waived = why
				}
			}
			switch {
			case waived == ReasonAllowed:
				if !allowed.allow {
					allowed = layerResult{allow: true, reason: ReasonAllowed, policy: p.Name, endpoint: e}
				}
				allowed.allowedIPs = append(allowed.allowedIPs, e.AllowedIPs...)
			case e.Audit:
				if !audited.allow {
					audited = layerResult{allow: true, audit: true, reason: waived, policy: p.Name, endpoint: e, binary: refused}
				}
				audited.allowedIPs = append(audited.allowedIPs, e.AllowedIPs...)
			default:
				consider(waived, p, e, refused)
			}
		}
	}
	switch {
	case allowed.allow:
		return allowed
	case audited.allow:
		return audited
	}
	return best
}

// intersectPrefixes returns the addresses in both a and b, as prefixes:
// two prefixes overlap only if one contains the other, and then their
// intersection is the longer one.
func intersectPrefixes(a, b []netip.Prefix) []netip.Prefix {
	var out []netip.Prefix
	for _, p := range a {
		for _, q := range b {
			if !p.Overlaps(q) {
				continue
			}
			if p.Bits() >= q.Bits() {
				out = append(out, p)
			} else {
				out = append(out, q)
			}
		}
	}
	return out
}

// chainEnd ends each process's chain in a list of several (JoinChains):
// never an executable, which is an absolute path.
const chainEnd = ""

// JoinChains lists the executable chains of the processes that hold one
// connection (each: the process's executable, then its ancestors') as
// the one list the Match functions take. A list without chainEnd is one
// process's chain.
func JoinChains(chains ...[]string) []string {
	var out []string
	for i, c := range chains {
		if i > 0 {
			out = append(out, chainEnd)
		}
		out = append(out, c...)
	}
	return out
}

// processChains splits a list made by JoinChains; empty chains are kept
// (a process whose executable is unknown matches nothing).
func processChains(exes []string) [][]string {
	if len(exes) == 0 {
		return nil
	}
	var out [][]string
	start := 0
	for i, x := range exes {
		if x == chainEnd {
			out = append(out, exes[start:i])
			start = i + 1
		}
	}
	return append(out, exes[start:])
}

// refusedProcess reports whether a binary-restricted policy refuses the
// processes of exes: when none is known, or when some process's chain
// has no executable matching the globs; *refused then names that
// process's executable.
func refusedProcess(patterns, exes []string, refused *string) bool {
	chains := processChains(exes)
	if len(chains) == 0 {
		return true
	}
	for _, chain := range chains {
		if !chainMatches(patterns, chain) {
			if len(chain) > 0 {
				*refused = chain[0]
			}
			return true
		}
	}
	return false
}

// chainMatches reports whether an executable of one process's chain
// matches one of the globs.
func chainMatches(patterns, chain []string) bool {
	for _, exe := range chain {
		if !strings.HasPrefix(exe, "/") {
			continue
		}
		for _, pat := range patterns {
			if globMatch(pat, exe) {
				return true
			}
		}
	}
	return false
}

// TCPEndpoint returns the protocol: tcp endpoint for a name, for the
// resolver to answer it with a synthetic address (the server may speak
// first, so neither SNI nor Host will name it). The name must be allowed
// by every layer; the endpoint is searched from the last layer (the
// container's own policy) back, an exact host before a wildcard. The
// connection itself is still decided by MatchBinary.
func (r *Rules) TCPEndpoint(host string) (Endpoint, bool) {
	if !r.NameAllowed(host).Allow {
		return Endpoint{}, false
	}
	name, _ := hostname.Canonical(host)
	for i := len(r.Layers) - 1; i >= 0; i-- {
		var wild *Endpoint
		for _, p := range r.Layers[i].Policies {
			for j := range p.Endpoints {
				e := &p.Endpoints[j]
				if e.Protocol != "tcp" || !hostname.Match(e.Host, name) {
					continue
				}
				if e.Host == name {
					return *e, true
				}
				if wild == nil {
					wild = e
				}
			}
		}
		if wild != nil {
			return *wild, true
		}
	}
	return Endpoint{}, false
}

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
		return slices.ContainsFunc(l7.Allow, func(rule RequestRule) bool { return ruleMatches(rule, method, p, query, qerr, false) })
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
			if i+2 >= len(raw) || !isHex(raw[i+1]) || !isHex(raw[i+2]) {
				return targetPath{}, false
			}
			c = unhex(raw[i+1])<<4 | unhex(raw[i+2])
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

func isHex(c byte) bool {
	return c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F'
}

func unhex(c byte) byte {
	switch {
	case c >= '0' && c <= '9':
		return c - '0'
	case c >= 'a' && c <= 'f':
		return c - 'a' + 10
	}
	return c - 'A' + 10
}

func ruleMatches(rule RequestRule, method, p string, query url.Values, qerr error, deny bool) bool {
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

// globMatch matches a path against a glob: path.Match within a segment,
// "**" as a whole segment for zero or more segments. A malformed pattern
// matches nothing.
func globMatch(pattern, name string) bool {
	return globMatchOr(pattern, name, false)
}

// globMatchOr is globMatch where a malformed pattern matches everything
// when bad is true (for deny rules: failing closed).
func globMatchOr(pattern, name string, bad bool) bool {
	m, err := globSegs(strings.Split(pattern, "/"), strings.Split(name, "/"))
	if err != nil {
		return bad
	}
	return m
}

func globSegs(pat, segs []string) (bool, error) {
	for len(pat) > 0 {
		if pat[0] == "**" {
			for len(pat) > 1 && pat[1] == "**" {
				pat = pat[1:]
			}
			for i := 0; i <= len(segs); i++ {
				if m, err := globSegs(pat[1:], segs[i:]); m || err != nil {
					return m, err
				}
			}
			return false, nil
		}
		if len(segs) == 0 {
			return false, nil
		}
		m, err := path.Match(pat[0], segs[0])
		if err != nil || !m {
			return false, err
		}
		pat, segs = pat[1:], segs[1:]
	}
	return len(segs) == 0, nil
}

// wildMatch matches s against a pattern where only '*' is special (any
// sequence, '/' included): for query values.
func wildMatch(pattern, s string) bool {
	star := strings.Split(pattern, "*")
	if len(star) == 1 {
		return pattern == s
	}
	if !strings.HasPrefix(s, star[0]) {
		return false
	}
	s = s[len(star[0]):]
	last := star[len(star)-1]
	for _, part := range star[1 : len(star)-1] {
		i := strings.Index(s, part)
		if i < 0 {
			return false
		}
		s = s[i+len(part):]
	}
	return strings.HasSuffix(s, last)
}
