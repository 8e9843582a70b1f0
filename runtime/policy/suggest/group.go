package suggest

import (
	"cmp"
	"slices"
	"strings"

	"github.com/clawrun/clawrun/egress/decisionlog"
	"github.com/clawrun/clawrun/runtime/policy"
	"github.com/clawrun/clawrun/runtime/policy/hostname"
)

// group is what was learned through one network policy of the current
// policy (source), or through none: the endpoints seen and who used them.
type group struct {
	source    policy.NetworkPolicy
	endpoints map[hostPort]*seen
	// resolved are the names queried (DNS) in this group.
	resolved map[string]bool
	binaries map[string]bool
	// unnamed: some record named no binary, so the policy cannot be
	// restricted to binaries.
	unnamed bool
}

type hostPort struct {
	host string
	port int
}

// seen is what was seen of one host and port.
type seen struct {
	tcp      bool            // a protocol: tcp endpoint (the filter's synthetic address)
	requests map[request]int // method and path of HTTP requests
	calls    map[call]bool   // JSON-RPC calls of requests (learned on a json-rpc or mcp endpoint)
}

type request struct{ method, path string }

type call struct{ method, tool string }

// add learns one record the current policy does not allow.
func (g *group) add(rec decisionlog.Record) {
	host, ok := hostname.Canonical(rec.Host)
	if !ok {
		return
	}
	if rec.Binary != "" {
		if g.binaries == nil {
			g.binaries = map[string]bool{}
		}
		g.binaries[rec.Binary] = true
	} else if rec.Protocol != "dns" {
		// A query over UDP never names its process: only connections
		// say whether every use named one.
		g.unnamed = true
	}
	if rec.Protocol == "dns" {
		if g.resolved == nil {
			g.resolved = map[string]bool{}
		}
		g.resolved[host] = true
		return
	}
	if g.endpoints == nil {
		g.endpoints = map[hostPort]*seen{}
	}
	hp := hostPort{host, rec.Port}
	s := g.endpoints[hp]
	if s == nil {
		s = &seen{requests: map[request]int{}, calls: map[call]bool{}}
		g.endpoints[hp] = s
	}
	s.tcp = s.tcp || rec.Protocol == "tcp"
	if rec.Method == "" {
		return
	}
	for _, c := range rec.Calls {
		method, tool, _ := strings.Cut(c, ":")
		s.calls[call{method, tool}] = true
	}
	s.requests[request{rec.Method, rec.Path}]++
}

// resolvedOnly are the names queried in this group and never connected
// to: no endpoint is suggested for them.
func (g *group) resolvedOnly() []string {
	var out []string
	for name := range g.resolved {
		connected := false
		for hp := range g.endpoints {
			connected = connected || hp.host == name
		}
		if !connected {
			out = append(out, name)
		}
	}
	slices.Sort(out)
	return out
}

// networkPolicy is the group's endpoints as one network policy, false
// when none was seen (only names resolved).
func (g *group) networkPolicy(key string) (policy.NetworkPolicy, bool) {
	if len(g.endpoints) == 0 {
		return policy.NetworkPolicy{}, false
	}
	np := policy.NetworkPolicy{Name: key}
	if g.source.Name != "" {
		np.Name = g.source.Name
	}
	hps := make([]hostPort, 0, len(g.endpoints))
	for hp := range g.endpoints {
		hps = append(hps, hp)
	}
	slices.SortFunc(hps, func(a, b hostPort) int { return cmp.Or(cmp.Compare(a.host, b.host), cmp.Compare(a.port, b.port)) })
	for _, hp := range hps {
		np.Endpoints = append(np.Endpoints, g.endpoint(hp, g.endpoints[hp]))
	}
	if !g.unnamed {
		for _, b := range sortedKeys(g.binaries) {
			np.Binaries = append(np.Binaries, policy.Binary{Path: b})
		}
	}
	return np, true
}

// endpoint is one learned endpoint: the name and port seen, and the
// requests seen as rules. From the audit endpoint it was learned through
// it keeps what narrows it (deny_rules, the endpoint's path) or what its
// traffic needed (allowed_ips, the protocol of its rules).
func (g *group) endpoint(hp hostPort, s *seen) policy.Endpoint {
	ep := policy.Endpoint{Host: hp.host, Ports: []int{hp.port}}
	src, hasSource := sourceEndpoint(g.source, hp.host, hp.port)
	if hasSource {
		ep.AllowedIPs = slices.Clone(src.AllowedIPs)
	}
	if s.tcp {
		ep.Protocol = "tcp"
		return ep
	}
	if len(s.requests) == 0 {
		return ep
	}
	ep.Protocol = "rest"
	if hasSource && src.Protocol != "" && src.Protocol != "tcp" {
		ep.Protocol = src.Protocol
	}
	if hasSource {
		ep.Path = src.Path
		ep.DenyRules = slices.Clone(src.DenyRules)
		if src.TLS == "terminate" {
			ep.TLS = src.TLS
		}
	}
	if policy.RPCProtocol(ep.Protocol) {
		// Rules name the calls in the body; the path is the endpoint's.
		ep.Rules = callRules(s.calls)
	} else {
		ep.Rules = pathRules(s.requests)
	}
	return ep
}

// callRules are the JSON-RPC calls seen, one rule each.
func callRules(calls map[call]bool) []policy.Rule {
	var out []policy.Rule
	for c := range calls {
		out = append(out, policy.Rule{Method: c.method, Tool: c.tool})
	}
	slices.SortFunc(out, func(a, b policy.Rule) int {
		return cmp.Or(cmp.Compare(a.Method, b.Method), cmp.Compare(a.Tool, b.Tool))
	})
	return out
}
