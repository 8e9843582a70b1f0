package rules

import (
	"net/netip"
	"path"
	"slices"

	"github.com/clawrun/clawrun/runtime/policy/hostname"
)

// matchMode says what of a connection can be seen.
type matchMode int

const (
	modeName     matchMode = iota // the name for any process: no port, no process
	modeNameFor                   // DNS: the name for the asking process, no port
	modeOpaque                    // TLS or raw TCP: name (SNI) and port only
	modeRequest                   // one HTTP request (plain, or of an inspected connection)
	modeHTTPConn                  // an open plain-HTTP connection: name, port, process (requests are checked each)
)

type matchQuery struct {
	name string
	port int
	exes []string
	mode matchMode
	req  Request
}

// reasonRank orders the reasons a layer denies with: the further a
// connection got through the checks (name, port, binary, content), the
// more useful the reason.
var reasonRank = map[Reason]int{
	ReasonNotAllowed:     0,
	ReasonPort:           1,
	ReasonBinary:         2,
	ReasonUnenforceable:  3,
	ReasonRequest:        3,
	ReasonDenyRule:       3,
	ReasonRPC:            3,
	ReasonMethodOverride: 3,
}

type layerResult struct {
	allow, audit bool
	reason       Reason
	policy       string
	endpoint     *Endpoint
	allowedIPs   []netip.Prefix
	binary       string // for reason binary: the executable its binaries refused
	inspect      bool   // allowed only through inspected endpoints
	deniedCalls  []int  // for a JSON-RPC request: the calls refused
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
// rules that opted out of inspection). Otherwise the first denying layer
// (the floor comes first) gives the reason: not_allowed (no endpoint has
// the name), port (only on other ports), binary (only for other
// executables; Decision.Binary names the process refused), unenforceable.
// When some layer allows it only through inspected endpoints, the
// Decision has Inspect set: the connection is to be inspected, and each
// of its requests decided with MatchRequest.
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

// MatchRequest decides one HTTP request, as MatchBinary plus the
// endpoints' L7 rules (AllowRequest): host is the request's Host (or the
// inspected connection's server name), req the request. Unenforceable is
// ignored here (it is about TLS), L7 rules are checked instead. Call it
// for every request of a connection: plain HTTP and inspected alike.
func (r *Rules) MatchRequest(host string, port int, exes []string, req Request) Decision {
	return r.decide(host, matchQuery{port: port, exes: exes, mode: modeRequest, req: req})
}

// MatchHTTPConnection decides whether an open plain-HTTP connection may
// stay open (after a reload): MatchBinary without Unenforceable, which is
// about TLS; each next request is still checked with MatchRequest.
func (r *Rules) MatchHTTPConnection(host string, port int, exes []string) Decision {
	return r.decide(host, matchQuery{port: port, exes: exes, mode: modeHTTPConn})
}

// ReadsRPC reports whether a request to host:port is to have its body
// read as JSON-RPC before it is decided: a POST to a name some endpoint of
// a json-rpc or mcp endpoint matches on the port, path included. Others
// are decided without their body (a REST endpoint of the same name must
// not have its uploads refused as bad JSON-RPC).
func (r *Rules) ReadsRPC(host string, port int, method, target string) bool {
	name, ok := hostname.Canonical(host)
	if !ok || r == nil || method != "POST" {
		return false
	}
	tp, ok := requestPath(target)
	if !ok {
		return false
	}
	for _, l := range r.Layers {
		for _, p := range l.Policies {
			for _, e := range p.Endpoints {
				if e.L7 == nil || e.L7.RPC == "" || !hostname.Match(e.Host, name) || !slices.Contains(e.Ports, port) {
					continue
				}
				if e.L7.Path == "" || globMatch(e.L7.Path, tp.decoded) {
					return true
				}
			}
		}
	}
	return false
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
			deny := Decision{Reason: lr.reason, Rule: lr.policy, Layer: l.Source, Endpoint: lr.endpoint, Binary: d.Binary, DeniedCalls: lr.deniedCalls}
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
		d.Inspect = d.Inspect || lr.inspect
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
	consider := func(reason Reason, p *Policy, e *Endpoint, binary string, denied []int) {
		if best.endpoint == nil || reasonRank[reason] > reasonRank[best.reason] {
			best = layerResult{reason: reason, policy: p.Name, endpoint: e, binary: binary, deniedCalls: denied}
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
				consider(ReasonPort, p, e, "", nil)
				continue
			}
			waived, refused := ReasonAllowed, ""
			var denied []int
			if len(p.Binaries) > 0 && refusedProcess(p.Binaries, q.exes, &refused) {
				waived = ReasonBinary
			} else if q.mode == modeOpaque && e.Unenforceable != "" {
				waived = ReasonUnenforceable
			} else if q.mode == modeRequest {
				if ok, why, calls := r.AllowRequest(e, q.req); !ok {
					waived, denied = why, calls
				}
			}
			switch {
			case waived == ReasonAllowed:
				allowed.addEndpoint(p, e, false)
			case e.Audit:
				audited.addEndpoint(p, e, true)
				if audited.reason == ReasonAllowed {
					audited.reason, audited.binary = waived, refused
				}
			default:
				consider(waived, p, e, refused, denied)
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

// addEndpoint adds an endpoint that allows (or audits) the connection to
// the layer's result: the first names the policy; the layer needs
// inspection only if every one of them is inspected (one that is not
// allows any request).
func (lr *layerResult) addEndpoint(p *Policy, e *Endpoint, audit bool) {
	if !lr.allow {
		*lr = layerResult{allow: true, audit: audit, reason: ReasonAllowed, policy: p.Name, endpoint: e, inspect: true}
	}
	lr.inspect = lr.inspect && e.Inspect
	lr.allowedIPs = append(lr.allowedIPs, e.AllowedIPs...)
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

// InspectedEndpoint returns the first inspected endpoint's host, "" when
// no endpoint is inspected: such rules need an inspection engine (the
// container's CA).
func (r *Rules) InspectedEndpoint() string {
	if r == nil {
		return ""
	}
	for _, l := range r.Layers {
		for _, p := range l.Policies {
			for _, e := range p.Endpoints {
				if e.Inspect {
					return e.Host
				}
			}
		}
	}
	return ""
}
