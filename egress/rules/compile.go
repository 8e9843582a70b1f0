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
		out *[]policy.Rule
	}{{"rules", ep.Rules, &l7.Allow}, {"deny_rules", ep.DenyRules, &l7.Deny}} {
		inBody := false
		for _, pr := range set.in {
			inBody = inBody || bodyMethods && pr.Method != ""
			*set.out = append(*set.out, policy.Rule{Method: pr.Method, Path: pr.Path, Query: maps.Clone(pr.Query)})
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
