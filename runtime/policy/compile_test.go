package policy

import (
	"encoding/json"
	"reflect"
	"slices"
	"strings"
	"testing"
)

func mustParse(t *testing.T, name, doc string) *Policy {
	t.Helper()
	p, err := Parse(name, []byte(doc))
	if err != nil {
		t.Fatal(err)
	}
	return p
}

const floorDoc = `
filesystem_policy:
  read_only: [/usr, /lib, /etc]
  read_write: [/tmp, /sandbox]
process: {run_as_user: "1000"}
clawrun:
  seccomp: {deny_syscalls: [keyctl, add_key]}
network_policies:
  github:
    endpoints: [{host: api.github.com, port: 443}]
network_middlewares: {}
`

const containerDoc = `
filesystem_policy:
  include_workdir: true
  read_only: [/usr]
  read_write: [/tmp]
landlock: {compatibility: hard_requirement}
clawrun:
  seccomp: {profile: none, deny_syscalls: [keyctl, request_key]}
  landlock: {scope_signals: false, tcp_connect: [443]}
`

func TestCompileNil(t *testing.T) {
	plan, err := Compile(nil, nil, CompileOptions{})
	if plan != nil || err != nil {
		t.Errorf("got %v, %v", plan, err)
	}
}

func TestCompileFloorAndContainer(t *testing.T) {
	floor := mustParse(t, "site-floor", floorDoc)
	container := mustParse(t, "inline", containerDoc)
	plan, err := Compile(floor, container, CompileOptions{Workdir: "/work/"})
	if err != nil {
		t.Fatal(err)
	}
	want := &Plan{
		Name:          "floor:site-floor + inline",
		Digest:        plan.Digest,
		Compatibility: HardRequirement,
		Layers: []Layer{
			{Source: "site-floor", ReadOnly: []string{"/usr", "/lib", "/etc"}, ReadWrite: []string{"/tmp", "/sandbox"},
				ScopeSignals: true, ScopeAbstractUnix: true},
			{Source: "inline", ReadOnly: []string{"/usr"}, ReadWrite: []string{"/tmp", "/work"},
				ScopeSignals: false, ScopeAbstractUnix: true, TCPConnect: []uint16{443}},
		},
		Seccomp:   SeccompPlan{Profile: ProfileAgent, Deny: []string{"add_key", "keyctl", "request_key"}},
		RunAsUser: "1000",
		Network: []NetworkLayer{{Source: "site-floor", Policies: map[string]NetworkPolicy{
			"github": {Name: "github", Endpoints: []Endpoint{{Host: "api.github.com", Ports: []int{443}}}},
		}}},
		Warnings: floor.Warnings,
	}
	if !reflect.DeepEqual(plan, want) {
		a, _ := json.MarshalIndent(plan, "", " ")
		b, _ := json.MarshalIndent(want, "", " ")
		t.Errorf("got\n%s\nwant\n%s", a, b)
	}
	if !strings.HasPrefix(plan.Digest, "sha256:") || len(plan.Digest) != len("sha256:")+64 {
		t.Errorf("digest %q", plan.Digest)
	}
	// The plan does not share memory with its sources.
	plan.Layers[0].ReadOnly[0] = "/changed"
	plan.Network[0].Policies["github"].Endpoints[0].Ports[0] = 1
	if floor.FilesystemPolicy.ReadOnly[0] != "/usr" || floor.NetworkPolicies["github"].Endpoints[0].Ports[0] != 443 {
		t.Error("plan aliases its source policy")
	}
}

func TestCompileSemantics(t *testing.T) {
	for _, tc := range []struct {
		name             string
		floor, container string // YAML; "" for nil
		workdir          string
		check            func(t *testing.T, plan *Plan)
		err              string
	}{
		{
			name: "container only", container: "filesystem_policy: {read_only: [/usr]}",
			check: func(t *testing.T, plan *Plan) {
				if plan.Name != "c" || len(plan.Layers) != 1 || plan.Seccomp.Profile != ProfileAgent || plan.Compatibility != BestEffort {
					t.Errorf("%+v", plan)
				}
			},
		},
		{
			name: "floor only", floor: "clawrun: {seccomp: {profile: none}}",
			check: func(t *testing.T, plan *Plan) {
				if plan.Name != "f" || len(plan.Layers) != 0 || plan.Seccomp.Profile != ProfileNone || plan.Network != nil {
					t.Errorf("%+v", plan)
				}
			},
		},
		{
			name: "seccomp none only if all say none", floor: "clawrun: {seccomp: {profile: none}}", container: "{}",
			check: func(t *testing.T, plan *Plan) {
				if plan.Seccomp.Profile != ProfileAgent {
					t.Errorf("profile %q", plan.Seccomp.Profile)
				}
			},
		},
		{
			name: "hard_requirement from the floor wins", floor: "landlock: {compatibility: hard_requirement}",
			container: "landlock: {compatibility: best_effort}",
			check: func(t *testing.T, plan *Plan) {
				if plan.Compatibility != HardRequirement {
					t.Errorf("compatibility %q", plan.Compatibility)
				}
			},
		},
		{
			name: "floor user applies", floor: "process: {run_as_user: sandbox, run_as_group: sandbox}", container: "process: {run_as_group: sandbox}",
			check: func(t *testing.T, plan *Plan) {
				if plan.RunAsUser != "sandbox" || plan.RunAsGroup != "sandbox" {
					t.Errorf("%q %q", plan.RunAsUser, plan.RunAsGroup)
				}
			},
		},
		{
			name: "container user applies", floor: "{}", container: "process: {run_as_user: 1000}",
			check: func(t *testing.T, plan *Plan) {
				if plan.RunAsUser != "1000" {
					t.Errorf("%q", plan.RunAsUser)
				}
			},
		},
		{
			name: "user conflict", floor: "process: {run_as_user: sandbox}", container: "process: {run_as_user: agent}",
			err: `c: process.run_as_user: "agent" conflicts with "sandbox" set by the floor policy f`,
		},
		{
			name: "workdir /", container: "filesystem_policy: {include_workdir: true}", workdir: "/",
			err: "c: filesystem_policy.include_workdir: the container's working directory is /; a read-write / is not allowed",
		},
		{
			name: "workdir empty", floor: "filesystem_policy: {include_workdir: true}",
			err: "f: filesystem_policy.include_workdir: the container's working directory is /",
		},
		{
			name: "workdir relative", container: "filesystem_policy: {include_workdir: true}", workdir: "work",
			err: `must be an absolute path`,
		},
		{
			name: "workdir ignored without include_workdir", container: "filesystem_policy: {read_only: [/usr]}", workdir: "/",
			check: func(t *testing.T, plan *Plan) {
				if len(plan.Layers[0].ReadWrite) != 0 {
					t.Errorf("%+v", plan.Layers)
				}
			},
		},
		{
			name: "workdir already listed", container: "filesystem_policy: {include_workdir: true, read_write: [/work]}", workdir: "/work",
			check: func(t *testing.T, plan *Plan) {
				if !reflect.DeepEqual(plan.Layers[0].ReadWrite, []string{"/work"}) {
					t.Errorf("%+v", plan.Layers)
				}
			},
		},
		{
			name: "network layers per policy", floor: "network_policies: {}", container: "network_policies: {a: {endpoints: [{host: a.com, port: 1}]}}",
			check: func(t *testing.T, plan *Plan) {
				if len(plan.Network) != 2 || plan.Network[0].Policies == nil || len(plan.Network[0].Policies) != 0 || len(plan.Network[1].Policies) != 1 {
					t.Errorf("%+v", plan.Network)
				}
			},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var floor, container *Policy
			if tc.floor != "" {
				floor = mustParse(t, "f", tc.floor)
			}
			if tc.container != "" {
				container = mustParse(t, "c", tc.container)
			}
			plan, err := Compile(floor, container, CompileOptions{Workdir: tc.workdir})
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("error %v, want %q", err, tc.err)
				}
				if plan != nil {
					t.Error("a plan with an error")
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			tc.check(t, plan)
		})
	}
}

func TestCompileDeterministic(t *testing.T) {
	var first []byte
	for i := range 20 {
		floor := mustParse(t, "site-floor", floorDoc)
		container := mustParse(t, "inline", containerDoc)
		plan, err := Compile(floor, container, CompileOptions{Workdir: "/work"})
		if err != nil {
			t.Fatal(err)
		}
		b, err := json.Marshal(plan)
		if err != nil {
			t.Fatal(err)
		}
		if i == 0 {
			first = b
		} else if string(b) != string(first) {
			t.Fatalf("plan JSON differs:\n%s\n%s", first, b)
		}
	}
	// The digest depends on the policies, not on warnings or the order of
	// map entries in the source, and changes when a policy does.
	a := mustParse(t, "p", "network_policies: {a: {endpoints: [{host: a.com, port: 1}]}, b: {endpoints: [{host: b.com, port: 2}]}}")
	b := mustParse(t, "p", "network_middlewares: {}\nnetwork_policies: {b: {endpoints: [{host: b.com, port: 2}]}, a: {endpoints: [{host: a.com, port: 1}]}}")
	c := mustParse(t, "p", "network_policies: {a: {endpoints: [{host: a.com, port: 1}]}, b: {endpoints: [{host: b.com, port: 3}]}}")
	if digest(nil, a) != digest(nil, b) {
		t.Error("digest depends on key order or warnings")
	}
	if digest(nil, a) == digest(nil, c) || digest(nil, a) == digest(a, nil) {
		t.Error("digest does not depend on the policies")
	}
}

func TestCompileValidates(t *testing.T) {
	p := mustParse(t, "p", "filesystem_policy: {read_write: [/tmp]}")
	p.FilesystemPolicy.ReadWrite = append(p.FilesystemPolicy.ReadWrite, "/")
	if _, err := Compile(nil, p, CompileOptions{}); err == nil || !strings.Contains(err.Error(), "read-write / is not allowed") {
		t.Errorf("got %v", err)
	}
	zero := &Policy{Name: "zero"}
	if _, err := Compile(zero, nil, CompileOptions{}); err == nil {
		t.Error("a zero Policy compiled")
	}
}

func TestWithNetworkPolicies(t *testing.T) {
	short, err := ParseShortcut("api.example.com,pypi.org:8443")
	if err != nil {
		t.Fatal(err)
	}
	fsOnly := mustParse(t, "team", "filesystem_policy: {read_only: [/usr]}")
	p := fsOnly.WithNetworkPolicies(short.NetworkPolicies)
	if fsOnly.HasNetwork || fsOnly.NetworkPolicies != nil {
		t.Error("WithNetworkPolicies modified its receiver")
	}
	if !p.HasNetwork || !p.HasFilesystem || len(p.NetworkPolicies["egress"].Endpoints) != 2 || p.Name != "team" {
		t.Errorf("%+v", p)
	}
	withNet := mustParse(t, "team", "network_policies: {egress: {endpoints: [{host: a.com, port: 1}]}, egress-2: {endpoints: [{host: b.com, port: 2}]}}")
	p = withNet.WithNetworkPolicies(short.NetworkPolicies)
	if len(p.NetworkPolicies) != 3 || p.NetworkPolicies["egress-3"].Endpoints[0].Host != "api.example.com" ||
		p.NetworkPolicies["egress"].Endpoints[0].Host != "a.com" {
		t.Errorf("%+v", p.NetworkPolicies)
	}
	if err := p.Validate(); err != nil {
		t.Error(err)
	}
	plan, err := Compile(nil, p, CompileOptions{})
	if err != nil || len(plan.Network) != 1 || len(plan.Network[0].Policies) != 3 {
		t.Errorf("%+v %v", plan, err)
	}
}

// A pod's sandbox: the floor applies in full, of the container's policy
// only the network policies (and the process identity) are compiled, and
// the sandbox's command is readable and executable in every layer.
func TestCompilePodSandbox(t *testing.T) {
	pod := mustParse(t, "inline", `
filesystem_policy:
  read_only: [/usr]
  read_write: [/tmp]
landlock: {compatibility: hard_requirement}
process: {run_as_user: "1000"}
clawrun:
  seccomp: {profile: agent, deny_syscalls: [getcpu]}
network_policies:
  web:
    endpoints: [{host: api.example.com, port: 443}]
`)
	agentDefault, _ := Preset("agent-default")
	noSeccomp := mustParse(t, "no-seccomp", "clawrun:\n  seccomp: {profile: none}\n")
	sandbox := CompileOptions{Workdir: "/", PodSandbox: true, SandboxCommand: "/pause"}
	for _, tc := range []struct {
		name             string
		floor, container *Policy
		opts             CompileOptions
		layers           []string // sources
		readOnlyPause    bool     // /pause in every layer's read_only
		seccomp          string
		deny             []string
		network          []string // sources
		compat           Compatibility
	}{
		{"floor and pod policy", agentDefault, pod, sandbox,
			[]string{"agent-default"}, true, ProfileAgent, nil, []string{"inline"}, BestEffort},
		{"no floor", nil, pod, sandbox,
			nil, false, ProfileNone, nil, []string{"inline"}, BestEffort},
		{"a floor without seccomp", noSeccomp, pod, sandbox,
			nil, false, ProfileNone, nil, []string{"inline"}, BestEffort},
		{"floor only", agentDefault, nil, sandbox,
			[]string{"agent-default"}, true, ProfileAgent, nil, nil, BestEffort},
		// Not a sandbox: everything, and no grant for the command.
		{"an ordinary container", agentDefault, pod, CompileOptions{Workdir: "/", SandboxCommand: "/pause"},
			[]string{"agent-default", "inline"}, false, ProfileAgent, []string{"getcpu"}, []string{"inline"}, HardRequirement},
	} {
		t.Run(tc.name, func(t *testing.T) {
			plan, err := Compile(tc.floor, tc.container, tc.opts)
			if err != nil {
				t.Fatal(err)
			}
			var layers, network []string
			for _, l := range plan.Layers {
				layers = append(layers, l.Source)
				if has := slices.Contains(l.ReadOnly, "/pause"); has != tc.readOnlyPause {
					t.Errorf("layer %s: /pause read-only %v, want %v (read_only %q)", l.Source, has, tc.readOnlyPause, l.ReadOnly)
				}
				if slices.Contains(l.ReadWrite, "/pause") {
					t.Errorf("layer %s: /pause is read-write", l.Source)
				}
			}
			for _, n := range plan.Network {
				network = append(network, n.Source)
			}
			if !slices.Equal(layers, tc.layers) || plan.Seccomp.Profile != tc.seccomp || !slices.Equal(plan.Seccomp.Deny, tc.deny) ||
				!slices.Equal(network, tc.network) || plan.Compatibility != tc.compat {
				t.Errorf("got layers %q, seccomp %s %q, network %q, %s; want %q, %s %q, %q, %s",
					layers, plan.Seccomp.Profile, plan.Seccomp.Deny, network, plan.Compatibility,
					tc.layers, tc.seccomp, tc.deny, tc.network, tc.compat)
			}
			if tc.container != nil && plan.RunAsUser != "1000" {
				t.Errorf("run_as_user %q, want the pod policy's 1000", plan.RunAsUser)
			}
		})
	}
}

// TestCompileTrustDir: when the filter terminates TLS (an inspected
// endpoint, or inference.local routed by the config), every Landlock
// layer reads TrustDir, and only then; nothing wider is granted.
func TestCompileTrustDir(t *testing.T) {
	floor := mustParse(t, "floor", "version: 1\nfilesystem_policy:\n  read_only: [/usr]\n  read_write: [/tmp]\n")
	files := "version: 1\nfilesystem_policy:\n  read_only: [/usr, /lib]\n"
	network := func(endpoint string) string {
		return "network_policies:\n  api:\n    endpoints:\n      - host: api.example.com\n        port: 443\n" + endpoint
	}
	inspected := mustParse(t, "inspected", files+network("        protocol: rest\n        access: read-only\n"))
	spliced := mustParse(t, "spliced", files+network(""))
	skipped := mustParse(t, "skipped", files+network("        protocol: rest\n        access: read-only\n        tls: skip\n"))
	noNetwork := mustParse(t, "files", files)
	for _, tc := range []struct {
		name             string
		floor, container *Policy
		inference        bool
		want             bool
	}{
		{"inspected", nil, inspected, false, true},
		{"inspected under a floor", floor, inspected, false, true},
		{"spliced", floor, spliced, false, false},
		{"tls: skip", nil, skipped, false, false},
		{"inference routed", floor, spliced, true, true},
		{"inference routed, no network policies", nil, noNetwork, true, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			plan, err := Compile(tc.floor, tc.container, CompileOptions{RoutesInference: tc.inference})
			if err != nil {
				t.Fatal(err)
			}
			if got := plan.TrustDir != ""; got != tc.want {
				t.Fatalf("TrustDir %q, want set: %v", plan.TrustDir, tc.want)
			}
			for _, l := range plan.Layers {
				if slices.Contains(l.ReadOnly, TrustDir) != tc.want {
					t.Errorf("layer %s read_only %v: want %s granted: %v", l.Source, l.ReadOnly, TrustDir, tc.want)
				}
				for _, p := range l.ReadOnly {
					if p == "/etc" || p == "/" {
						t.Errorf("layer %s grants %s", l.Source, p)
					}
				}
			}
		})
	}
}
