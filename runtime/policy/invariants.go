package policy

import (
	"fmt"
	"slices"
	"strings"
)

// Validate checks a Policy value against the rules Parse enforces, for
// policies built or changed in code (a shortcut, a preset, one decoded from
// state). Parse's output always passes. Values must also be in the
// canonical form Parse produces (clean paths, lower-case hosts, sorted
// ports), since the runtime compares them as they are.
func (p *Policy) Validate() error {
	if p == nil {
		return ErrorList{{Reason: "nil policy"}}.asError()
	}
	v := &validator{file: p.Name}
	if p.Version != 1 {
		v.fail("version", "version %d is not supported; the only version is 1", p.Version)
	}
	v.filesystem(p)
	if reason := oneOf(string(p.Landlock.Compatibility), compats...); reason != "" {
		v.fail("landlock.compatibility", "%s", reason)
	}
	v.identity("process.run_as_user", p.Process.RunAsUser)
	v.identity("process.run_as_group", p.Process.RunAsGroup)
	if len(p.NetworkPolicies) > 0 && !p.HasNetwork {
		v.fail("network_policies", "set without HasNetwork, so it would not be enforced")
	}
	for _, key := range sortedKeys(p.NetworkPolicies) {
		v.networkPolicy("network_policies."+key, key, p.NetworkPolicies[key])
	}
	v.extensions(p)
	return v.errs.asError()
}

type validator struct {
	file string
	errs ErrorList
}

func (v *validator) fail(field, format string, args ...any) {
	v.errs = append(v.errs, Error{File: v.file, Field: field, Reason: fmt.Sprintf(format, args...)})
}

func (v *validator) check(field, reason string) bool {
	if reason != "" {
		v.fail(field, "%s", reason)
		return false
	}
	return true
}

func (v *validator) canonical(field, got, want string) {
	if got != want {
		v.fail(field, "%q is not in canonical form %q", truncate(got), truncate(want))
	}
}

func (v *validator) filesystem(p *Policy) {
	fs := p.FilesystemPolicy
	if !p.HasFilesystem {
		if len(fs.ReadOnly)+len(fs.ReadWrite) > 0 || fs.IncludeWorkdir {
			v.fail("filesystem_policy", "set without HasFilesystem, so it would not be enforced")
		}
		// The scopes are left alone: without a layer there is nothing to
		// scope, and a zero Policy has them false.
		if l := p.Clawrun.Landlock; l.TCPBind != nil || l.TCPConnect != nil {
			v.fail("clawrun.landlock", "has no effect without a filesystem_policy section, whose Landlock layer it configures")
		}
		return
	}
	if n := len(fs.ReadOnly) + len(fs.ReadWrite); n > MaxFilesystemPaths {
		v.fail("filesystem_policy", "%d paths; at most %d are allowed in read_only and read_write together", n, MaxFilesystemPaths)
	}
	for i, s := range fs.ReadOnly {
		field := index("filesystem_policy.read_only", i)
		if c, reason := cleanFSPath(s); v.check(field, reason) {
			v.canonical(field, s, c)
		}
	}
	readOnly := map[string]bool{}
	for _, s := range fs.ReadOnly {
		readOnly[s] = true
	}
	for i, s := range fs.ReadWrite {
		field := index("filesystem_policy.read_write", i)
		c, reason := cleanFSPath(s)
		switch {
		case !v.check(field, reason):
		case c == "/":
			v.fail(field, "%q: read-write / is not allowed", s)
		case readOnly[s]:
			v.fail(field, "%q is also in read_only; list it in one of the two", s)
		default:
			v.canonical(field, s, c)
		}
	}
}

func (v *validator) identity(field, id string) {
	if id == "" {
		return
	}
	if c, reason := normIdentity(id); v.check(field, reason) {
		v.canonical(field, id, c)
	}
}

func (v *validator) networkPolicy(field, key string, np NetworkPolicy) {
	v.check(field, checkNetworkKey(key))
	if np.Name != "" {
		v.check(field+".name", checkText(np.Name, 128))
	}
	if len(np.Endpoints) == 0 {
		v.fail(field+".endpoints", "at least one endpoint is required")
	}
	for i, ep := range np.Endpoints {
		v.endpoint(index(field+".endpoints", i), ep)
	}
	for i, b := range np.Binaries {
		v.check(index(field+".binaries", i)+".path", checkBinary(b.Path))
	}
}

func (v *validator) endpoint(field string, ep Endpoint) {
	if h, reason := normHost(ep.Host); v.check(field+".host", reason) {
		v.canonical(field+".host", ep.Host, h)
	}
	if len(ep.Ports) == 0 {
		v.fail(field+".port", "no port: set port or ports")
	}
	for i, p := range ep.Ports {
		v.check(index(field+".ports", i), checkPort(int64(p)))
	}
	if !slices.IsSorted(ep.Ports) || len(slices.Compact(slices.Clone(ep.Ports))) != len(ep.Ports) {
		v.fail(field+".ports", "not sorted and unique")
	}
	if ep.Path != "" {
		v.check(field+".path", checkURLPath(ep.Path))
	}
	for _, f := range []struct {
		key, value string
		valid      []string
	}{{"protocol", ep.Protocol, protocols}, {"tls", ep.TLS, tlsModes}, {"enforcement", ep.Enforcement, enforcements}, {"access", ep.Access, accesses}} {
		if f.value != "" {
			v.check(field+"."+f.key, oneOf(f.value, f.valid...))
		}
	}
	for i, s := range ep.AllowedIPs {
		if p, reason := normCIDR(s); v.check(index(field+".allowed_ips", i), reason) {
			v.canonical(index(field+".allowed_ips", i), s, p.String())
		}
	}
	v.rules(field+".rules", ep.Rules, ep.Protocol)
	v.rules(field+".deny_rules", ep.DenyRules, ep.Protocol)
	for _, pr := range endpointProblems(ep) {
		v.fail(field+"."+pr.key, "%s", pr.reason)
	}
}

func (v *validator) rules(field string, rules []Rule, protocol string) {
	for i, r := range rules {
		f := index(field, i)
		if r.Method == "" && r.Path == "" && len(r.Query) == 0 {
			v.fail(f, "an empty rule; set method, path or query")
		}
		if r.Method != "" {
			if m, reason := normMethod(r.Method, protocol); v.check(f+".method", reason) {
				v.canonical(f+".method", r.Method, m)
			}
		}
		if r.Path != "" {
			v.check(f+".path", checkURLPath(r.Path))
		}
		if r.Tool != "" {
			v.check(f+".tool", checkTool(r.Tool, protocol))
		}
		v.check(f+".tool", checkToolMethod(r))
		for _, k := range sortedKeys(r.Query) {
			v.check(f+".query", checkQueryKey(k))
			v.check(f+".query."+k, checkText(r.Query[k], 1024))
		}
	}
}

func (v *validator) extensions(p *Policy) {
	s := p.Clawrun.Seccomp
	v.check("clawrun.seccomp.profile", oneOf(s.Profile, profiles...))
	for i, name := range s.DenySyscalls {
		v.check(index("clawrun.seccomp.deny_syscalls", i), checkSyscall(name))
	}
	if !slices.IsSorted(s.DenySyscalls) || len(slices.Compact(slices.Clone(s.DenySyscalls))) != len(s.DenySyscalls) {
		v.fail("clawrun.seccomp.deny_syscalls", "not sorted and unique")
	}
	for _, f := range []struct {
		key   string
		ports []uint16
		bind  bool
	}{{"tcp_bind", p.Clawrun.Landlock.TCPBind, true}, {"tcp_connect", p.Clawrun.Landlock.TCPConnect, false}} {
		field := "clawrun.landlock." + f.key
		if f.ports != nil && len(f.ports) == 0 {
			v.fail(field, "must list at least one port; nil leaves TCP to the egress filter")
		}
		for i, port := range f.ports {
			v.check(index(field, i), checkTCPPort(int64(port), f.bind))
		}
	}
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.SortFunc(keys, strings.Compare)
	return keys
}
