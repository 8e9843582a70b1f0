package policy

import (
	"reflect"
	"slices"
	"strings"
	"testing"
)

var wantNetworkPresets = []string{"anthropic", "github", "huggingface", "npm_registry", "nvidia", "openai", "pypi", "telegram"}

func TestNetworkPresets(t *testing.T) {
	if got := NetworkPresetNames(); !reflect.DeepEqual(got, wantNetworkPresets) {
		t.Fatalf("network presets %v, want %v", got, wantNetworkPresets)
	}
	for _, name := range wantNetworkPresets {
		p, ok := Preset(name)
		if !ok {
			t.Fatalf("%s: not a preset", name)
		}
		if !p.HasNetwork || p.HasFilesystem || len(p.NetworkPolicies) == 0 {
			t.Errorf("%s: not a network-only policy: %+v", name, p)
		}
		for key, np := range p.NetworkPolicies {
			if key != name && !strings.HasPrefix(key, name+".") {
				t.Errorf("%s: key %q does not start with the preset's name", name, key)
			}
			if len(np.Binaries) != 0 {
				t.Errorf("%s: binaries %v", name, np.Binaries)
			}
			for _, ep := range np.Endpoints {
				// Plain TLS endpoints: nothing the egress filter would
				// turn into a denial.
				if !reflect.DeepEqual(ep.Ports, []int{443}) || ep.Protocol != "" || ep.Path != "" || ep.Access != "" || ep.Rules != nil || ep.AllowedIPs != nil {
					t.Errorf("%s: endpoint %+v", name, ep)
				}
			}
		}
	}
	// What each preset promises.
	for name, hosts := range map[string][]string{
		"github":       {"api.github.com", "github.com", "raw.githubusercontent.com", "codeload.github.com", "objects.githubusercontent.com"},
		"npm_registry": {"registry.npmjs.org"},
		"pypi":         {"pypi.org", "files.pythonhosted.org"},
		"nvidia":       {"api.ngc.nvidia.com", "build.nvidia.com", "integrate.api.nvidia.com"},
		"anthropic":    {"api.anthropic.com"},
		"openai":       {"api.openai.com"},
		"huggingface":  {"huggingface.co", "*.huggingface.co", "*.hf.co"},
		"telegram":     {"api.telegram.org"},
	} {
		p, _ := Preset(name)
		var got []string
		for _, ep := range p.NetworkPolicies[name].Endpoints {
			got = append(got, ep.Host)
		}
		for _, h := range hosts {
			if !slices.Contains(got, h) {
				t.Errorf("%s: %s missing from %v", name, h, got)
			}
		}
	}
}

func TestInclude(t *testing.T) {
	p := mustParse(t, "team", `
network_policies:
  internal:
    endpoints: [{host: git.example.com, port: 443}]
clawrun:
  include: [pypi, github]
`)
	keys := sortedKeys(p.NetworkPolicies)
	if !p.HasNetwork || !reflect.DeepEqual(keys, []string{"github", "internal", "pypi"}) {
		t.Fatalf("keys %v, HasNetwork %v", keys, p.HasNetwork)
	}
	pypi, _ := Preset("pypi")
	if !reflect.DeepEqual(p.NetworkPolicies["pypi"], pypi.NetworkPolicies["pypi"]) {
		t.Errorf("pypi entry %+v", p.NetworkPolicies["pypi"])
	}
	if p.HasFilesystem || len(p.Warnings) != 0 {
		t.Errorf("%+v", p)
	}
	if err := p.Validate(); err != nil {
		t.Error(err)
	}
	// The entries are copies: changing them leaves the preset alone.
	p.NetworkPolicies["pypi"].Endpoints[0].Host = "evil.example.com"
	if q := mustParse(t, "again", "clawrun: {include: [pypi]}"); q.NetworkPolicies["pypi"].Endpoints[0].Host != "pypi.org" {
		t.Error("an included entry shares memory with the preset")
	}

	// Without network_policies of its own, a policy that includes presets
	// confines egress to them.
	p = mustParse(t, "only", "clawrun: {include: [anthropic]}")
	plan, err := Compile(nil, p, CompileOptions{})
	if err != nil || len(plan.Network) != 1 || !reflect.DeepEqual(sortedKeys(plan.Network[0].Policies), []string{"anthropic"}) || len(plan.Layers) != 0 {
		t.Errorf("plan %+v, %v", plan, err)
	}

	// Including changes the digest, as the policy changed.
	a := mustParse(t, "x", "clawrun: {include: [openai]}")
	b := mustParse(t, "x", "clawrun: {include: [anthropic]}")
	if digest(nil, a) == digest(nil, b) {
		t.Error("same digest for different includes")
	}
}

func TestIncludeErrors(t *testing.T) {
	for _, tc := range []struct{ doc, want string }{
		{"clawrun:\n  include: [github, gitub]", `p:2: clawrun.include[1]: unknown preset "gitub"; the presets that can be included are anthropic, github, huggingface`},
		{"clawrun:\n  include:\n    - agent-default", `p:3: clawrun.include[0]: preset "agent-default" is not a network preset (it has filesystem_policy, landlock, clawrun)`},
		{"clawrun:\n  include: [agent-coding]", `p:2: clawrun.include[0]: preset "agent-coding" is not a network preset`},
		{"clawrun:\n  include: [pypi, npm_registry, pypi]", `p:2: clawrun.include[2]: "pypi" is already included (clawrun.include[0])`},
		{"clawrun:\n  include: []", `p:2: clawrun.include: lists no presets; name network presets (anthropic, github,`},
		{"clawrun:\n  include:", `p:2: clawrun.include: lists no presets`},
		{"clawrun:\n  include: github", `p:2: clawrun.include: expected a list of preset names, got the string "github"`},
		{"clawrun:\n  include: [{name: github}]", `p:2: clawrun.include[0]: expected a string, got a mapping`},
		{"clawrun:\n  include: [/etc/clawrun/policies/x.yaml]", `p:2: clawrun.include[0]: unknown preset "/etc/clawrun/policies/x.yaml"`},
		{"network_policies:\n  github:\n    endpoints: [{host: a.example.com, port: 443}]\nclawrun:\n  include: [github]",
			`p:5: clawrun.include[0]: preset "github" brings network_policies.github, which this policy also defines (line 2); rename that entry`},
		{"clawrun:\n  include: [github]\n  include: [pypi]", `p:3: clawrun.include: duplicate key (first at line 2)`},
		{"clawrun:\n  includes: [github]", `p:2: clawrun.includes: unknown key "includes"; valid keys are seccomp, landlock, include`},
		// Unchanged: clawrun.landlock still needs a filesystem_policy.
		{"clawrun:\n  include: [github]\n  landlock: {scope_signals: false}", `p:3: clawrun.landlock: has no effect without a filesystem_policy`},
	} {
		_, err := Parse("p", []byte(tc.doc))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Parse(%q) = %v\nwant %q", tc.doc, err, tc.want)
		}
	}
}

func TestAgentCoding(t *testing.T) {
	def, _ := Preset("agent-default")
	p, ok := Preset("agent-coding")
	if !ok {
		t.Fatal("no agent-coding preset")
	}
	// agent-default plus network presets: everything else is the same.
	if !reflect.DeepEqual(p.FilesystemPolicy, def.FilesystemPolicy) || p.Landlock != def.Landlock ||
		p.Process != def.Process || !reflect.DeepEqual(p.Clawrun, def.Clawrun) || p.HasFilesystem != def.HasFilesystem {
		t.Errorf("agent-coding differs from agent-default outside network_policies:\n%+v\n%+v", p, def)
	}
	if def.HasNetwork {
		t.Error("agent-default filters egress")
	}
	want := []string{"anthropic", "github", "npm_registry", "openai", "pypi"}
	if got := sortedKeys(p.NetworkPolicies); !p.HasNetwork || !reflect.DeepEqual(got, want) {
		t.Errorf("agent-coding network %v, want %v", got, want)
	}
	for _, key := range want {
		src, _ := Preset(key)
		if !reflect.DeepEqual(p.NetworkPolicies[key], src.NetworkPolicies[key]) {
			t.Errorf("%s: %+v differs from the preset", key, p.NetworkPolicies[key])
		}
	}
}
