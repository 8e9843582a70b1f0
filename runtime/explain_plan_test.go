package runtime

import (
	"os"
	"path"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/clawrun/clawrun/egress/rules"
	"github.com/clawrun/clawrun/runtime/policy"
	"github.com/clawrun/clawrun/runtime/policy/hostname"
)

// testWorkdir is the working directory the Plans of this test are
// compiled with: no policy lists it or a parent of it.
const testWorkdir = "/clawrun-test-workdir"

// TestExplainAgreesWithPlan: for every preset and good test policy, alone
// and under the agent-default floor (and agent-coding, a floor with
// network policies), what `clawrun policy explain` says
// is what Compile produced, and for the network what the egress filter's
// rules built from that Plan decide.
func TestExplainAgreesWithPlan(t *testing.T) {
	floor, _ := policy.Preset("agent-default")
	networkFloor, _ := policy.Preset("agent-coding")
	portFloor := portFloorPolicy(t)
	for name, container := range explainPolicyCases(t) {
		for _, f := range []*policy.Policy{nil, floor, networkFloor, portFloor} {
			title := name
			if f != nil {
				title += " under " + f.Name
			}
			t.Run(title, func(t *testing.T) {
				e, err := explainPolicies(f, container, nil, false)
				if err != nil {
					t.Fatal(err)
				}
				plan, err := policy.Compile(f, container, policy.CompileOptions{Workdir: testWorkdir})
				if err != nil {
					t.Fatal(err)
				}
				out := strings.Join(strings.Fields(e.String()), " ")
				checkExplainedFiles(t, e, out, plan)
				checkExplainedProcess(t, e, out, plan)
				rules, _ := rules.FromPlan(plan.Network, 1)
				checkExplainedNetwork(t, e, out, plan, rules)
			})
		}
	}
}

// portFloorPolicy is a floor whose Landlock layer lists TCP ports, so
// that the intersection of two layers' port lists is checked too.
func portFloorPolicy(t *testing.T) *policy.Policy {
	t.Helper()
	p, err := policy.Parse("port-floor", []byte(`version: 1
filesystem_policy:
  read_only: [/]
  read_write: [/tmp]
clawrun:
  landlock:
    tcp_bind: [8080, 9090]
    tcp_connect: [443, 8443]
`))
	if err != nil {
		t.Fatal(err)
	}
	p.Name = "port-floor"
	return p
}

func explainPolicyCases(t *testing.T) map[string]*policy.Policy {
	cases := map[string]*policy.Policy{}
	for _, name := range policy.PresetNames() {
		p, _ := policy.Preset(name)
		cases["preset "+name] = p
	}
	files, _ := filepath.Glob("policy/testdata/good/*")
	if len(files) == 0 {
		t.Fatal("no good test policies")
	}
	for _, file := range files {
		data, err := os.ReadFile(file)
		if err != nil {
			t.Fatal(err)
		}
		p, err := policy.Parse(filepath.Base(file), data)
		if err != nil {
			t.Fatal(err)
		}
		cases["good "+filepath.Base(file)] = p
	}
	return cases
}

// Access levels, as a Landlock layer grants them at a path.
const (
	noAccess = iota
	readOnly
	readWrite
)

var levelNames = []string{"no access", "read-only", "read-write"}

// levelIn is what lists of read-only and read-write paths grant at p:
// the rights of every listed path that is p or a parent of p.
func levelIn(ro, rw []string, p string) int {
	under := func(dir string) bool { return p == dir || dir == "/" || strings.HasPrefix(p, dir+"/") }
	lvl := noAccess
	if slices.ContainsFunc(ro, under) {
		lvl = readOnly
	}
	if slices.ContainsFunc(rw, under) {
		lvl = readWrite
	}
	return lvl
}

func checkExplainedFiles(t *testing.T, e *policy.Explanation, out string, plan *policy.Plan) {
	t.Helper()
	if len(plan.Layers) == 0 {
		if e.Files != nil || !strings.Contains(out, "Not confined: no filesystem_policy") {
			t.Errorf("the Plan has no Landlock layer, explain says files are %+v", e.Files)
		}
		return
	}
	if e.Files == nil {
		t.Fatalf("the Plan has %d Landlock layers, explain says files are not confined", len(plan.Layers))
	}
	// Access changes only at listed paths: probe each, a path inside it,
	// its parents, and the working directory.
	probes := []string{"/", testWorkdir, testWorkdir + "/x"}
	for _, l := range plan.Layers {
		for _, p := range append(slices.Clone(l.ReadOnly), l.ReadWrite...) {
			for d := p; d != "/"; d = path.Dir(d) {
				probes = append(probes, d)
			}
			probes = append(probes, p+"/x")
		}
	}
	slices.Sort(probes)
	for _, p := range slices.Compact(probes) {
		enforced := readWrite
		for _, l := range plan.Layers {
			enforced = min(enforced, levelIn(l.ReadOnly, l.ReadWrite, p))
		}
		claimed := levelIn(e.Files.ReadOnly, e.Files.ReadWrite, p)
		if inWorkdir := p == testWorkdir || strings.HasPrefix(p, testWorkdir+"/"); inWorkdir && e.Files.Workdir {
			claimed = readWrite
		} else if inWorkdir && e.Files.WorkdirReadOnly {
			claimed = max(claimed, readOnly)
		}
		if claimed != enforced {
			t.Errorf("files: explain says %s is %s, the Plan's layers allow %s", p, levelNames[claimed], levelNames[enforced])
		}
	}
	// The trust bundle's directory: said when, and only when, the Plan
	// grants it.
	if said := strings.Contains(out, policy.TrustDir+" can be read in every layer"); said != (plan.TrustDir != "") {
		t.Errorf("files: the Plan's trust dir is %q, explain mentions it: %v", plan.TrustDir, said)
	}
	for title, paths := range map[string][]string{
		"Read and execute: ":                        e.Files.ReadOnly,
		"Read, write, create, delete and execute: ": e.Files.ReadWrite,
	} {
		for _, p := range paths {
			if !strings.Contains(out, title) || !slices.Contains(strings.Fields(section(out, title)), p) {
				t.Errorf("files: %s is not listed under %q", p, title)
			}
		}
	}

	scopeSignals, scopeUnix := false, false
	var bind, connect []uint16
	restrictsBind, restrictsConnect := false, false
	for _, l := range plan.Layers {
		scopeSignals = scopeSignals || l.ScopeSignals
		scopeUnix = scopeUnix || l.ScopeAbstractUnix
		bind = append(bind, l.TCPBind...)
		connect = append(connect, l.TCPConnect...)
		restrictsBind = restrictsBind || l.TCPBind != nil
		restrictsConnect = restrictsConnect || l.TCPConnect != nil
	}
	if e.ScopeSignals != scopeSignals || e.ScopeAbstractUnix != scopeUnix {
		t.Errorf("scopes: explain says signals %v, abstract unix %v; the Plan %v, %v", e.ScopeSignals, e.ScopeAbstractUnix, scopeSignals, scopeUnix)
	}
	for _, c := range []struct {
		what      string
		claimed   []uint16
		restricts bool
		ports     []uint16
		get       func(policy.Layer) []uint16
	}{
		{"tcp_bind", e.TCPBind, restrictsBind, bind, func(l policy.Layer) []uint16 { return l.TCPBind }},
		{"tcp_connect", e.TCPConnect, restrictsConnect, connect, func(l policy.Layer) []uint16 { return l.TCPConnect }},
	} {
		if (c.claimed != nil) != c.restricts {
			t.Errorf("%s: explain says %v, the Plan restricts: %v", c.what, c.claimed, c.restricts)
		}
		for _, port := range append(c.ports, 1, 65535) {
			enforced := true
			for _, l := range plan.Layers {
				enforced = enforced && (c.get(l) == nil || slices.Contains(c.get(l), port))
			}
			if claimed := c.claimed == nil || slices.Contains(c.claimed, port); claimed != enforced {
				t.Errorf("%s: explain says port %d allowed: %v; the Plan: %v", c.what, port, claimed, enforced)
			}
		}
	}
}

// section returns what follows title in out, up to the next heading-like
// sentence ending in ':' of another list.
func section(out, title string) string {
	_, rest, _ := strings.Cut(out, title)
	for _, end := range []string{" Read, write", " Also the", " Denied:"} {
		if i := strings.Index(rest, end); i >= 0 {
			rest = rest[:i]
		}
	}
	return rest
}

func checkExplainedProcess(t *testing.T, e *policy.Explanation, out string, plan *policy.Plan) {
	t.Helper()
	if e.RunAsUser != plan.RunAsUser || e.RunAsGroup != plan.RunAsGroup {
		t.Errorf("user: explain says %q:%q, the Plan %q:%q", e.RunAsUser, e.RunAsGroup, plan.RunAsUser, plan.RunAsGroup)
	}
	if plan.RunAsUser != "" && !strings.Contains(out, "Runs as user "+plan.RunAsUser) {
		t.Errorf("user %s not said", plan.RunAsUser)
	}
	if e.Compatibility != plan.Compatibility {
		t.Errorf("compatibility: explain says %s, the Plan %s", e.Compatibility, plan.Compatibility)
	}
	if e.Seccomp.Profile != plan.Seccomp.Profile || !slices.Equal(e.Seccomp.Deny, plan.Seccomp.Deny) {
		t.Errorf("seccomp: explain says %+v, the Plan %+v", e.Seccomp, plan.Seccomp)
	}
	if agent := strings.Contains(out, `seccomp profile "agent"`); agent != (plan.Seccomp.Profile == policy.ProfileAgent) {
		t.Errorf("seccomp: the Plan's profile is %s, explain says agent: %v", plan.Seccomp.Profile, agent)
	}
	for _, s := range plan.Seccomp.Deny {
		if !slices.Contains(strings.Fields(strings.NewReplacer(",", " ", ".", " ").Replace(section(out, "Also denied (clawrun.seccomp.deny_syscalls): "))), s) {
			t.Errorf("seccomp: %s is denied by the Plan, not said", s)
		}
	}
}

// onlyNote is how explain qualifies a wildcard the floor opens for some
// of its names only.
const onlyNote = " (the floor allows no other name)"

func checkExplainedNetwork(t *testing.T, e *policy.Explanation, out string, plan *policy.Plan, rules *rules.Rules) {
	t.Helper()
	if len(plan.Network) == 0 {
		if e.Network != nil || !strings.Contains(out, "Not filtered: no network_policies") {
			t.Errorf("the Plan filters no egress, explain says %+v", e.Network)
		}
		return
	}
	if e.Network == nil {
		t.Fatal("the Plan filters egress, explain says it does not")
	}
	own := plan.Network[len(plan.Network)-1]
	// One process that runs every executable any policy names: what it
	// is refused, no process gets.
	var everyBinary []string
	for _, l := range plan.Network {
		for _, np := range l.Policies {
			for _, b := range np.Binaries {
				everyBinary = append(everyBinary, globSample(b.Path))
			}
		}
	}
	explained := map[string]bool{} // key/host/port
	for _, entry := range e.Network.Entries {
		np, ok := own.Policies[entry.Key]
		if !ok || entry.Source != own.Source {
			t.Errorf("network: explain lists %s of %s, not in the Plan's last layer %s", entry.Key, entry.Source, own.Source)
			continue
		}
		for _, ep := range entry.Endpoints {
			if !slices.ContainsFunc(np.Endpoints, func(pe policy.Endpoint) bool { return pe.Host == ep.Host }) {
				t.Errorf("network: explain lists %s in %s, the Plan does not", ep.Host, entry.Key)
			}
			if !strings.Contains(out, ep.Host+":"+joinPorts(ep.Ports)) {
				t.Errorf("network: %s:%v not said", ep.Host, ep.Ports)
			}
			names := []string{sampleName(ep.Host)}
			for _, n := range ep.Notes {
				if list, ok := strings.CutSuffix(n, onlyNote); ok {
					names = strings.Split(strings.TrimPrefix(list, "only "), ", ")
					// Other names of the wildcard are denied.
					for _, port := range ep.Ports {
						if d := rules.MatchHTTPConnection(sampleName(ep.Host), port, everyBinary); d.Allow {
							t.Errorf("network: explain says only %v of %s:%d, the filter allows %s", names, ep.Host, port, sampleName(ep.Host))
						}
					}
				}
			}
			exes := explainedBinaries(entry, ep)
			for _, port := range ep.Ports {
				explained[entry.Key+"/"+ep.Host+"/"+strconv.Itoa(port)] = true
				for _, name := range names {
					if d := rules.MatchHTTPConnection(name, port, exes); !d.Allow {
						t.Errorf("network: explain allows %s:%d (%s) for %v, the filter denies it: %s", name, port, entry.Key, exes, d.Reason)
					}
					if len(exes) > 0 {
						if d := rules.MatchHTTPConnection(name, port, []string{"/explain/other"}); d.Allow && !d.Audit {
							t.Errorf("network: explain allows %s:%d only for %v, the filter allows any process", name, port, exes)
						}
					}
				}
			}
		}
	}
	for key, np := range own.Policies {
		for _, pe := range np.Endpoints {
			for _, port := range pe.Ports {
				if explained[key+"/"+pe.Host+"/"+strconv.Itoa(port)] {
					continue
				}
				if d := rules.MatchHTTPConnection(sampleName(pe.Host), port, everyBinary); d.Allow {
					t.Errorf("network: explain leaves out %s:%d (%s), the filter allows it", pe.Host, port, key)
				}
			}
		}
	}
}

// explainedBinaries is one process chain that meets the conditions
// explain states for an endpoint: its entry's binaries and the floor's.
func explainedBinaries(entry policy.EgressEntry, ep policy.EgressEndpoint) []string {
	var exes []string
	if len(entry.Binaries) > 0 {
		exes = append(exes, globSample(entry.Binaries[0]))
	}
	for _, n := range ep.Notes {
		if _, list, ok := strings.Cut(n, " allows it only for "); ok {
			exes = append(exes, globSample(strings.Split(list, ", ")[0]))
		}
	}
	return exes
}

// sampleName is a name the pattern matches.
func sampleName(pattern string) string {
	if hostname.IsWildcard(pattern) {
		return "explain-sample" + pattern[1:]
	}
	return pattern
}

// globSample is a path the binary glob matches.
func globSample(glob string) string {
	return strings.NewReplacer("**", "x", "*", "x", "?", "x").Replace(glob)
}

func joinPorts(ports []int) string {
	s := make([]string, len(ports))
	for i, p := range ports {
		s[i] = strconv.Itoa(p)
	}
	return strings.Join(s, ",")
}
