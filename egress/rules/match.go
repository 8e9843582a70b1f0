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
