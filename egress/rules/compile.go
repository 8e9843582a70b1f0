package rules

import (
	"fmt"
	"maps"
	"net/netip"
	"slices"
	"strings"

	"github.com/clawrun/clawrun/runtime/policy"
	"github.com/clawrun/clawrun/runtime/policy/hostname"
)

// tlsPorts are ports whose endpoints are expected to carry TLS even
// without a tls setting.
var tlsPorts = []int{443}

// FromPlan converts the compiled network layers of a Plan into Rules.
//
// What the filter cannot enforce never becomes an allowance. An endpoint
// with request fields (rules, deny_rules, path, access read-only or
// read-write) gets L7, checked on every plain-HTTP request and, unless
// tls: skip opts out, on every request of its TLS connections, which are
// inspected (Inspect: terminated with the container's CA); tls: terminate
// inspects an endpoint without request fields too (every request must be
// for its name). With tls: skip the request fields cannot be seen over
// TLS: the endpoint gets Unenforceable (its TLS connections are denied),
// with a Warning naming each field when it is expected to carry TLS (tls
// is set, or it lists port 443). JSON-RPC and MCP rules name calls in the
// request body: only inspection reads it, so on plain HTTP such an
// endpoint's POSTs are denied.
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

	l7fields := ep.RequestFields()
	e.Inspect = ep.Inspected()
	if len(l7fields) == 0 {
		return e, true, warns
	}
	e.L7 = l7Rules(ep)
	if e.Inspect {
		return e, true, warns
	}
	e.Unenforceable = strings.Join(l7fields, ", ") + " cannot be seen on TLS that is not inspected (tls: skip): TLS connections to this endpoint are denied"
	tlsExpected := ep.TLS != ""
	for _, p := range ep.Ports {
		tlsExpected = tlsExpected || slices.Contains(tlsPorts, p)
	}
	if tlsExpected {
		for _, f := range l7fields {
			warn(f, fmt.Sprintf("cannot be enforced on TLS with tls: skip, which opts out of inspection: TLS connections to %s are denied (plain HTTP requests are checked)", host))
		}
	}
	return e, true, warns
}

// l7Rules are the request rules of an endpoint that has some.
func l7Rules(ep policy.Endpoint) *L7Rules {
	l7 := &L7Rules{Path: ep.Path, ReadOnly: ep.Access == "read-only", ReadWrite: ep.Access == "read-write",
		WebSocket: ep.Protocol == "websocket"}
	if policy.RPCProtocol(ep.Protocol) {
		l7.RPC = ep.Protocol
	}
	for _, pr := range ep.Rules {
		l7.Allow = append(l7.Allow, cloneRule(pr))
	}
	for _, pr := range ep.DenyRules {
		l7.Deny = append(l7.Deny, cloneRule(pr))
	}
	return l7
}

func cloneRule(r policy.Rule) policy.Rule {
	r.Query = maps.Clone(r.Query)
	return r
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
