package rules

import (
	"slices"

	"github.com/clawrun/clawrun/runtime/policy"
	"github.com/clawrun/clawrun/runtime/policy/hostname"
)

// ExplainFilter builds the rules of a Plan's network layers, as the
// filter does (FromPlan), for policy.Explain: they say what the filter
// allows, and FromPlan's warnings what it does not enforce as written.
func ExplainFilter(layers []policy.NetworkLayer) (policy.NetworkFilter, []policy.Warning) {
	return FromPlan(layers, 0)
}

// FloorAllowance is what every layer but the last allows of an endpoint
// host (a pattern) of the last layer on port: what MatchBinary would
// allow for some process, lifted from names to patterns. A layer allows
// every name of the host when one of its endpoints on the port has the
// same host, or a wildcard matching an exact host; it allows some names
// of a wildcard host when its endpoints on the port name them. The
// binaries of the entries that allow it are its conditions, unless an
// entry without binaries allows every name.
func (r *Rules) FloorAllowance(host string, port int) policy.Allowance {
	a := policy.Allowance{All: true}
	if r == nil || len(r.Layers) == 0 {
		return policy.Allowance{}
	}
	floor := r.Layers[:len(r.Layers)-1]
	var names []string
	for i := range floor {
		la := floor[i].allowance(host, port)
		a.All = a.All && la.All
		a.Only = append(a.Only, la.Only...)
		names = append(names, la.Names...)
	}
	if a.All {
		return a
	}
	// A name some layer lists is allowed if every layer allows it.
	for _, n := range names {
		every := true
		for i := range floor {
			every = every && floor[i].allowsName(n, port)
		}
		if every && !slices.Contains(a.Names, n) {
			a.Names = append(a.Names, n)
		}
	}
	if len(a.Names) == 0 {
		a.Only = nil
	}
	return a
}

func (l *Layer) allowance(host string, port int) policy.Allowance {
	var a policy.Allowance
	unconditional := false
	for _, p := range l.Policies {
		for _, e := range p.Endpoints {
			if !slices.Contains(e.Ports, port) {
				continue
			}
			all := e.Host == host || !hostname.IsWildcard(host) && hostname.Match(e.Host, host)
			some := !all && hostname.IsWildcard(host) && !hostname.IsWildcard(e.Host) && hostname.Match(host, e.Host)
			if !all && !some {
				continue
			}
			if all {
				a.All = true
			} else if !slices.Contains(a.Names, e.Host) {
				a.Names = append(a.Names, e.Host)
			}
			if len(p.Binaries) > 0 {
				a.Only = append(a.Only, policy.Condition{Policy: p.Name, Binaries: p.Binaries})
			} else if all {
				unconditional = true
			}
		}
	}
	// One matching entry without binaries is enough for any process.
	if unconditional {
		a.Only = nil
	}
	return a
}

// allowsName reports whether an endpoint of the layer on port matches
// the name.
func (l *Layer) allowsName(name string, port int) bool {
	for _, p := range l.Policies {
		for _, e := range p.Endpoints {
			if slices.Contains(e.Ports, port) && hostname.Match(e.Host, name) {
				return true
			}
		}
	}
	return false
}
