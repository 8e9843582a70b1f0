package policy

import (
	"fmt"
	"maps"
	"slices"
)

// Clone returns a deep copy of p, so that presets and Plans never share
// slices or maps with a Policy a caller might modify.
func (p *Policy) Clone() *Policy {
	if p == nil {
		return nil
	}
	c := *p
	c.FilesystemPolicy.ReadOnly = slices.Clone(p.FilesystemPolicy.ReadOnly)
	c.FilesystemPolicy.ReadWrite = slices.Clone(p.FilesystemPolicy.ReadWrite)
	c.NetworkPolicies = cloneNetwork(p.NetworkPolicies)
	if p.NetworkPolicies == nil {
		c.NetworkPolicies = nil
	}
	c.Clawrun.Seccomp.DenySyscalls = slices.Clone(p.Clawrun.Seccomp.DenySyscalls)
	c.Clawrun.Landlock.TCPBind = slices.Clone(p.Clawrun.Landlock.TCPBind)
	c.Clawrun.Landlock.TCPConnect = slices.Clone(p.Clawrun.Landlock.TCPConnect)
	c.Warnings = slices.Clone(p.Warnings)
	return &c
}

// cloneNetwork deep-copies network_policies; it never returns nil, so a
// NetworkLayer's Policies encode as {} (deny all) rather than null.
func cloneNetwork(in map[string]NetworkPolicy) map[string]NetworkPolicy {
	out := make(map[string]NetworkPolicy, len(in))
	for k, np := range in {
		np.Binaries = slices.Clone(np.Binaries)
		eps := make([]Endpoint, len(np.Endpoints))
		for i, ep := range np.Endpoints {
			ep.Ports = slices.Clone(ep.Ports)
			ep.AllowedIPs = slices.Clone(ep.AllowedIPs)
			ep.Rules = cloneRules(ep.Rules)
			ep.DenyRules = cloneRules(ep.DenyRules)
			eps[i] = ep
		}
		if np.Endpoints == nil {
			eps = nil
		}
		np.Endpoints = eps
		out[k] = np
	}
	return out
}

func cloneRules(in []Rule) []Rule {
	if in == nil {
		return nil
	}
	out := make([]Rule, len(in))
	for i, r := range in {
		r.Query = maps.Clone(r.Query)
		out[i] = r
	}
	return out
}

// WithNetworkPolicies returns a copy of p whose network_policies also hold
// extra (for a policy combined with the run.clawrun.egress shortcut). Within
// one policy network entries add up, so the result allows p's egress plus
// extra's; a policy that had no network_policies now confines egress to
// extra. An extra key already in p gets the first free suffix ("egress-2"),
// rather than merging into an entry whose binaries would restrict it.
func (p *Policy) WithNetworkPolicies(extra map[string]NetworkPolicy) *Policy {
	c := p.Clone()
	if c.NetworkPolicies == nil {
		c.NetworkPolicies = map[string]NetworkPolicy{}
	}
	c.HasNetwork = true
	for _, key := range sortedKeys(extra) {
		name := key
		for i := 2; ; i++ {
			if _, taken := c.NetworkPolicies[name]; !taken {
				break
			}
			name = fmt.Sprintf("%s-%d", key, i)
		}
		c.NetworkPolicies[name] = cloneNetwork(map[string]NetworkPolicy{key: extra[key]})[key]
	}
	return c
}

// NetworkOnly returns a copy of p that keeps its network_policies and
// process identity, and nothing that confines files or system calls: no
// filesystem_policy (so no Landlock layer), the seccomp profile "none"
// with no extra denials, best_effort. A pod's sandbox takes this much of
// its pod's policy.
func (p *Policy) NetworkOnly() *Policy {
	c := newPolicy(p.Name)
	c.Clawrun.Seccomp.Profile = ProfileNone
	c.Process = p.Process
	c.HasNetwork = p.HasNetwork
	if p.NetworkPolicies != nil {
		c.NetworkPolicies = cloneNetwork(p.NetworkPolicies)
	}
	c.Warnings = slices.Clone(p.Warnings)
	return c
}
