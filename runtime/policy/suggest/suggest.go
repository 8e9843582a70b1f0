// Package suggest learns a policy from a run: the decisions a container's
// egress filter logged, the container's current policy and the
// administrator's floor become an enforcing policy that allows what the
// container was seen doing, and nothing it was not.
//
// The endpoints of the current policy with enforcement: audit are what the
// run was to learn: they are replaced by what was seen through them (exact
// names, ports, binaries, and for plain HTTP and inspected HTTPS the
// methods and paths). Endpoints that enforce are kept as they are, and so
// are the policy's process and Landlock sections; its filesystem_policy
// gains the file accesses Landlock refused the run (see suggestFiles).
// Everything is pure: records, denials, policies in, a policy and notes
// out.
package suggest

import (
	"fmt"
	"maps"
	"slices"
	"strings"

	"github.com/clawrun/clawrun/egress/decisionlog"
	"github.com/clawrun/clawrun/egress/rules"
	"github.com/clawrun/clawrun/runtime/policy"
	"github.com/clawrun/clawrun/runtime/policy/hostname"
)

// Input is what a suggestion is made from.
type Input struct {
	// Records are the decision log's records, oldest first.
	Records []decisionlog.Record
	// Current is the container's policy; nil for none (a policy of
	// network_policies only is suggested).
	Current *policy.Policy
	// Floor is the network layer of the administrator's floor policy; nil
	// when the floor does not restrict egress.
	Floor *policy.NetworkLayer
	// FileDenials are the container's Landlock denials, oldest first; the
	// file accesses it needed and did not get (see suggestFiles).
	FileDenials []FileDenial
	// FloorFiles is the floor's Landlock layer; nil when the floor has no
	// filesystem rules.
	FloorFiles *policy.Layer
}

// Suggestion is a suggested policy and what was seen but not suggested.
type Suggestion struct {
	Policy *policy.Policy
	// Floor names the floor policy that bounded the suggestion ("" for
	// none).
	Floor string
	// Files are the paths added to filesystem_policy, learned from
	// Landlock denials.
	Files []FileGrant
	// Notes say, one line each, what the run did that the policy does not
	// allow, and why.
	Notes []string
}

// learnedKey names the network policy of what was allowed by no policy of
// the current one (a record of an earlier generation, say).
const learnedKey = "learned"

// Suggest makes the suggestion: see the package comment.
func Suggest(in Input) (*Suggestion, error) {
	base, learning := startingPolicy(in.Current)
	baseRules := compileLayers(policy.NetworkLayer{Source: base.Name, Policies: base.NetworkPolicies})
	var floorRules *rules.Rules
	if in.Floor != nil {
		floorRules = compileLayers(*in.Floor)
	}
	s := &Suggestion{}
	if in.Floor != nil {
		s.Floor = in.Floor.Source
	}
	notes := newNoteSet()
	groups := map[string]*group{}
	var learned []decisionlog.Record
	for _, rec := range in.Records {
		if reason, ok := skipped(rec); !ok {
			notes.add(target(rec), reason)
			continue
		}
		if allows(baseRules, rec) {
			continue
		}
		if floorRules != nil && !allows(floorRules, rec) {
			notes.add(target(rec), "the floor policy denies it")
			continue
		}
		key := learnedKey
		if _, ok := learning[rec.Rule]; ok {
			key = rec.Rule
		}
		g := groups[key]
		if g == nil {
			g = &group{source: learning[key]}
			groups[key] = g
		}
		g.add(rec)
		learned = append(learned, rec)
	}
	extra := map[string]policy.NetworkPolicy{}
	resolvedOnly := map[string]bool{}
	for _, key := range sortedKeys(groups) {
		g := groups[key]
		if np, ok := g.networkPolicy(key); ok {
			extra[key] = np
		}
		for _, name := range g.resolvedOnly() {
			resolvedOnly[name] = true
			notes.add("DNS "+name, "resolved but never connected to: an endpoint would open a port too")
		}
	}
	s.Policy = base.WithNetworkPolicies(extra)
	s.Files = learnFiles(s.Policy, in, notes)
	if err := s.Policy.Validate(); err != nil {
		return nil, fmt.Errorf("the suggested policy is not valid: %w", err)
	}
	// What the suggestion cannot express (a path no rule can spell) is
	// said, not silently left out.
	final := compileLayers(policy.NetworkLayer{Source: s.Policy.Name, Policies: s.Policy.NetworkPolicies})
	for _, rec := range learned {
		if name, _ := hostname.Canonical(rec.Host); resolvedOnly[name] {
			continue
		}
		if !allows(final, rec) {
			notes.add(target(rec), "no rule of the suggested policy can express it")
		}
	}
	s.Notes = notes.lines()
	return s, nil
}

// learnFiles adds to p's filesystem_policy what the Landlock denials ask
// for, and returns the grants. A policy without filesystem_policy gets
// none: adding one would confine every other path too, and its denials
// were the floor's.
func learnFiles(p *policy.Policy, in Input, notes *noteSet) []FileGrant {
	if len(in.FileDenials) == 0 {
		return nil
	}
	if !p.HasFilesystem {
		for _, d := range in.FileDenials {
			notes.add(fmt.Sprintf("file %s (%s)", d.Path, strings.Join(d.Access, ",")), "the floor policy denies it")
		}
		return nil
	}
	own := policy.Layer{ReadOnly: p.FilesystemPolicy.ReadOnly, ReadWrite: p.FilesystemPolicy.ReadWrite}
	grants := suggestFiles(own, in.FloorFiles, in.FileDenials, notes)
	p.FilesystemPolicy = withFileGrants(p.FilesystemPolicy, grants)
	return grants
}

// startingPolicy is the current policy (or an empty one) with its audit
// endpoints taken out, every other endpoint enforcing, and the network
// policies those audit endpoints were in (key to policy, as they were).
func startingPolicy(current *policy.Policy) (*policy.Policy, map[string]policy.NetworkPolicy) {
	base := current.Clone()
	if base == nil {
		base = &policy.Policy{Name: "suggested", Version: 1, Landlock: policy.Landlock{Compatibility: policy.BestEffort},
			Clawrun: policy.Extensions{Seccomp: policy.SeccompSettings{Profile: policy.ProfileAgent}}}
	}
	base.HasNetwork = true
	base.Warnings = nil
	learning := map[string]policy.NetworkPolicy{}
	kept := map[string]policy.NetworkPolicy{}
	for key, np := range base.NetworkPolicies {
		var enforced []policy.Endpoint
		for _, ep := range np.Endpoints {
			if ep.Enforcement == "audit" {
				continue
			}
			ep.Enforcement = ""
			enforced = append(enforced, ep)
		}
		if len(enforced) < len(np.Endpoints) {
			learning[key] = np
		}
		if len(enforced) > 0 {
			np.Endpoints = enforced
			kept[key] = np
		}
	}
	base.NetworkPolicies = kept
	return base, learning
}

func compileLayers(layers ...policy.NetworkLayer) *rules.Rules {
	r, _ := rules.FromPlan(layers, 0)
	return r
}

// byDesign are the reasons of denials no policy can lift.
var byDesign = map[rules.Reason]string{
	rules.ReasonPrivateIP: "a private or reserved address",
	rules.ReasonIPLiteral: "an IP address, not a name",
	rules.ReasonNoSNI:     "TLS without a server name",
	rules.ReasonECH:       "an encrypted ClientHello",
}

// skipped says why a record is not something to allow (ok false), or
// that it is (ok true): a connection, request or query the filter let
// through, allowed or audited.
func skipped(rec decisionlog.Record) (reason string, ok bool) {
	switch {
	case rec.Decision == "dropped":
		return fmt.Sprintf("%d decisions not logged (the log's rate limit): what they were is not known", rec.Dropped), false
	case rec.Decision != "allow" && rec.Decision != "audit":
		if why, ok := byDesign[rec.Reason]; ok {
			return "denied by design: " + why, false
		}
		return fmt.Sprintf("denied or failed (%s)", rec.Reason), false
	case rec.Reason == rules.ReasonDenyRule:
		return "a deny rule of the policy matches it", false
	case rec.Host == "":
		return "no name to allow", false
	case strings.EqualFold(rec.Host, policy.InferenceHost):
		return "routed by the inference configuration, not by network_policies", false
	}
	return "", true
}

// allows reports whether r allows what rec records without audit: the
// same decision the filter makes for a record of that protocol.
func allows(r *rules.Rules, rec decisionlog.Record) bool {
	var exes []string
	if rec.Binary != "" {
		exes = []string{rec.Binary}
	}
	var d rules.Decision
	switch {
	case rec.Protocol == "dns" && len(exes) == 0:
		// A query that names no process (over UDP): for a name of
		// binaries only it is answered tcp_required and asked again
		// over TCP, by a process that is then known.
		d = r.NameAllowed(rec.Host)
	case rec.Protocol == "dns":
		d = r.NameAllowedFor(rec.Host, exes)
	case rec.Method != "":
		d = r.MatchRequest(rec.Host, rec.Port, exes, httpRequest(rec))
	case rec.Protocol == "http":
		d = r.MatchHTTPConnection(rec.Host, rec.Port, exes)
	default:
		d = r.MatchBinary(rec.Host, rec.Port, exes)
	}
	return d.Allow && !d.Audit
}

// httpRequest is the HTTP request a record names, with its JSON-RPC calls.
func httpRequest(rec decisionlog.Record) rules.Request {
	req := rules.Request{Method: rec.Method, Target: rec.Path}
	if len(rec.Calls) > 0 {
		req.RPC = &rules.RPC{}
		for _, c := range rec.Calls {
			method, tool, _ := strings.Cut(c, ":")
			req.RPC.Calls = append(req.RPC.Calls, rules.RPCCall{Method: method, Tool: tool})
		}
	}
	return req
}

// target is what a record was about, as a note names it.
func target(rec decisionlog.Record) string {
	what := rec.Host
	if what == "" {
		what = rec.Destination
	}
	if what == "" {
		what = "(unknown destination)"
	}
	switch {
	case rec.Protocol == "dns":
		what = "DNS " + what
	case rec.Port != 0 && !strings.HasSuffix(what, fmt.Sprintf(":%d", rec.Port)):
		what = fmt.Sprintf("%s:%d", what, rec.Port)
	}
	if rec.Method != "" {
		what += " " + rec.Method + " " + rec.Path
	}
	if rec.Binary != "" {
		what += " by " + rec.Binary
	}
	return what
}

// noteSet collects notes once each, in the order first seen, counting
// repeats.
type noteSet struct {
	order []string
	count map[string]int64
}

func newNoteSet() *noteSet { return &noteSet{count: map[string]int64{}} }

func (n *noteSet) add(what, why string) {
	line := what + ": " + why
	if _, seen := n.count[line]; !seen {
		n.order = append(n.order, line)
	}
	n.count[line]++
}

func (n *noteSet) lines() []string {
	out := make([]string, len(n.order))
	for i, l := range n.order {
		out[i] = l
		if c := n.count[l]; c > 1 {
			out[i] += fmt.Sprintf(" (%d times)", c)
		}
	}
	return out
}

// sortedKeys are a map's keys in order.
func sortedKeys[V any](m map[string]V) []string {
	return slices.Sorted(maps.Keys(m))
}

// sourceEndpoint is the audit endpoint of a learning policy through
// which host:port (any port when 0) was reached, if any.
func sourceEndpoint(np policy.NetworkPolicy, host string, port int) (policy.Endpoint, bool) {
	for _, ep := range np.Endpoints {
		if ep.Enforcement == "audit" && hostname.Match(ep.Host, host) && (port == 0 || slices.Contains(ep.Ports, port)) {
			return ep, true
		}
	}
	return policy.Endpoint{}, false
}
