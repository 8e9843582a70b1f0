package policy_test

import (
	"encoding/json"
	"reflect"
	"strings"
	"testing"

	"github.com/clawrun/clawrun/egress/rules"
	"github.com/clawrun/clawrun/runtime/policy"
)

var testFacts = policy.ExplainFacts{
	SeccompDenied:       []string{"ptrace", "mount"},
	SeccompRules:        []string{"clone with CLONE_NEWUSER: denied."},
	RefusedCapabilities: []string{"CAP_SYS_ADMIN"},
	DroppedCapabilities: []string{"CAP_NET_RAW"},
}

func TestExplain(t *testing.T) {
	preset := func(name string) *policy.Policy {
		p, ok := policy.Preset(name)
		if !ok {
			t.Fatalf("no preset %s", name)
		}
		return p
	}
	parse := func(name, doc string) *policy.Policy { return parsePolicy(t, name, doc) }

	for _, tc := range []struct {
		name             string
		floor, container *policy.Policy
		facts            policy.ExplainFacts
		check            func(t *testing.T, e *policy.Explanation)
		want             []string // in String()
		not              []string // not in String()
	}{{
		name: "no policy",
		check: func(t *testing.T, e *policy.Explanation) {
			if e.Files != nil || e.Network != nil || e.FloorTakes != nil {
				t.Errorf("%+v", e)
			}
		},
		want: []string{"No policy: the container runs unconfined"},
		not:  []string{"Files", "Network"},
	}, {
		name:      "agent-default",
		container: preset("agent-default"),
		facts:     testFacts,
		check: func(t *testing.T, e *policy.Explanation) {
			if e.Files == nil || e.Network != nil || e.RunAsUser != "" || e.Seccomp.Profile != policy.ProfileAgent || e.Compatibility != policy.BestEffort {
				t.Errorf("%+v", e)
			}
			if !reflect.DeepEqual(e.Files.ReadWrite, []string{"/dev/console", "/dev/null", "/dev/ptmx", "/dev/pts", "/dev/shm", "/dev/tty", "/sandbox", "/tmp", "/var/tmp"}) {
				t.Errorf("read-write %v", e.Files.ReadWrite)
			}
			if !e.ScopeSignals || !e.ScopeAbstractUnix || e.MinABI != 0 || e.TCPConnect != nil {
				t.Errorf("%+v", e)
			}
		},
		want: []string{
			"Policy agent-default, without a floor policy.",
			"Read and execute:\n    /app /bin /dev/full",
			"Read, write, create, delete and execute:\n    /dev/console /dev/null",
			"Denied: every other path.",
			"Not filtered: no network_policies",
			"Runs as the container's own user: no run_as_user.",
			"Capabilities removed: CAP_NET_RAW.",
			"a container holding CAP_SYS_ADMIN is not created",
			"Signals: only to processes of its own sandbox",
			`seccomp profile "agent"`,
			"Denied with EPERM:\n    ptrace mount\n",
			"clone with CLONE_NEWUSER: denied.",
			"best_effort: listed paths that do not exist are skipped",
		},
		not: []string{"Warnings", "takes away", "Also denied"},
	}, {
		name:      "agent-coding: egress filtered by presets",
		container: preset("agent-coding"),
		check: func(t *testing.T, e *policy.Explanation) {
			var keys []string
			for _, entry := range e.Network.Entries {
				keys = append(keys, entry.Key)
				if entry.Source != "agent-coding" {
					t.Errorf("source %q", entry.Source)
				}
			}
			if !reflect.DeepEqual(keys, []string{"anthropic", "github", "npm_registry", "openai", "pypi"}) {
				t.Errorf("keys %v", keys)
			}
		},
		want: []string{"Only these destinations (host:ports):\n    anthropic\n      api.anthropic.com:443\n    github\n      api.github.com:443\n",
			"Denied: every other name (NXDOMAIN"},
	}, {
		name:      "network preset alone: files not confined",
		container: preset("huggingface"),
		want: []string{"Files (Landlock)\n  Not confined: no filesystem_policy.",
			"*.hf.co:443: one label before .hf.co, not hf.co itself",
			"no Landlock layer"},
		not: []string{"Signals:"},
	}, {
		name:      "empty network_policies denies all egress",
		container: parse("closed", "network_policies: {}"),
		check: func(t *testing.T, e *policy.Explanation) {
			if e.Network == nil || len(e.Network.Entries) != 0 {
				t.Errorf("%+v", e.Network)
			}
		},
		want: []string{"No destination is allowed: every connection is denied."},
	}, {
		name:  "floor narrows files",
		floor: parse("site", "filesystem_policy: {read_only: [/usr/bin, /a], read_write: [/tmp, /a/b]}"),
		container: parse("team", `
filesystem_policy:
  read_only: [/usr, /etc]
  read_write: [/tmp, /sandbox, /a]
  include_workdir: true
`),
		check: func(t *testing.T, e *policy.Explanation) {
			// The floor does not add the working directory: the
			// container's include_workdir gives only what the floor's
			// paths cover of it.
			want := &policy.FileAccess{ReadOnly: []string{"/a", "/usr/bin"}, ReadWrite: []string{"/a/b", "/tmp"}}
			if !reflect.DeepEqual(e.Files, want) {
				t.Errorf("files %+v, want %+v", e.Files, want)
			}
			want2 := []string{
				"Files read-only in team, no access under the floor: /etc.",
				"Files read-write in team, no access under the floor: /sandbox.",
				"Files: /usr is read-only in team; the floor allows no access there, and more only inside it: /usr/bin (read-only).",
				"Files: /a is read-write in team; the floor allows read-only there, and more only inside it: /a/b (read-write).",
				"Working directory: team adds it read-write; the floor allows only what its own paths cover of it.",
			}
			if !reflect.DeepEqual(e.FloorTakes, want2) {
				t.Errorf("floor takes\n%q\nwant\n%q", e.FloorTakes, want2)
			}
		},
		want: []string{"Policy team, under the floor policy site", "What the floor site takes away from team\n  - Files"},
		not:  []string{"Also the container's working directory"},
	}, {
		name:      "working directory in every layer",
		floor:     parse("site", "filesystem_policy: {read_only: [/usr], include_workdir: true}"),
		container: parse("team", "filesystem_policy: {read_only: [/usr], include_workdir: true}"),
		check: func(t *testing.T, e *policy.Explanation) {
			if want := (&policy.FileAccess{ReadOnly: []string{"/usr"}, Workdir: true}); !reflect.DeepEqual(e.Files, want) {
				t.Errorf("files %+v, want %+v", e.Files, want)
			}
		},
		want: []string{"Also the container's working directory (process.cwd), read-write", "Nothing: team stays within the floor."},
	}, {
		name:      "container within the floor",
		floor:     preset("agent-default"),
		container: parse("narrow", "filesystem_policy: {read_only: [/usr], read_write: [/sandbox/out]}"),
		check: func(t *testing.T, e *policy.Explanation) {
			if len(e.FloorTakes) != 0 || e.FloorTakes == nil {
				t.Errorf("floor takes %q", e.FloorTakes)
			}
			if !reflect.DeepEqual(e.Files, &policy.FileAccess{ReadOnly: []string{"/usr"}, ReadWrite: []string{"/sandbox/out"}}) {
				t.Errorf("files %+v", e.Files)
			}
		},
		want: []string{"Nothing: narrow stays within the floor."},
	}, {
		name: "floor narrows egress",
		floor: parse("site", `
network_policies:
  web:
    endpoints:
      - {host: a.example.com, port: 443}
      - {host: a.other.com, port: 443}
  pip:
    endpoints: [{host: pypi.org, port: 443}]
    binaries: [{path: /usr/bin/pip}]
`),
		container: parse("team", `
network_policies:
  mine:
    name: My hosts
    endpoints:
      - {host: "*.example.com", ports: [443, 80]}
      - {host: a.other.com, ports: [80, 443], enforcement: audit}
      - {host: pypi.org, port: 443}
`),
		check: func(t *testing.T, e *policy.Explanation) {
			want := []policy.EgressEntry{{Key: "mine", Name: "My hosts", Source: "team", Endpoints: []policy.EgressEndpoint{
				{Host: "*.example.com", Ports: []int{443}, Notes: []string{"one label before .example.com, not example.com itself", "only a.example.com (the floor allows no other name)"}},
				{Host: "a.other.com", Ports: []int{443}, Notes: []string{"audit: what its other conditions would deny is allowed and logged"}},
				{Host: "pypi.org", Ports: []int{443}, Notes: []string{"the floor's pip allows it only for /usr/bin/pip"}},
			}}}
			if !reflect.DeepEqual(e.Network.Entries, want) {
				t.Errorf("entries\n%+v\nwant\n%+v", e.Network.Entries, want)
			}
			want2 := []string{
				"Network: *.example.com:443 (mine) only for a.example.com.",
				"Network denied by the floor: *.example.com:80 (mine), a.other.com:80 (mine).",
			}
			if !reflect.DeepEqual(e.FloorTakes, want2) {
				t.Errorf("floor takes\n%q\nwant\n%q", e.FloorTakes, want2)
			}
		},
		want: []string{"    mine: My hosts\n      *.example.com:443: one label before"},
	}, {
		name: "a floor entry without binaries opens a host to every process",
		floor: parse("site", `
network_policies:
  pip:
    endpoints: [{host: pypi.org, port: 443}]
    binaries: [{path: /usr/bin/pip}]
  any:
    endpoints: [{host: pypi.org, port: 443}]
`),
		container: preset("pypi"),
		check: func(t *testing.T, e *policy.Explanation) {
			if ep := e.Network.Entries[0].Endpoints[0]; ep.Host != "pypi.org" || ep.Notes != nil {
				t.Errorf("%+v", ep)
			}
		},
		want: []string{"Network denied by the floor: files.pythonhosted.org:443 (pypi)."},
		not:  []string{"only for /usr/bin/pip", "This tells tools apart"},
	}, {
		name: "binaries: what they promise and what they do not",
		container: parse("tools", `
network_policies:
  git:
    endpoints: [{host: github.com, port: 443}]
    binaries: [{path: /usr/bin/git}]
`),
		check: func(t *testing.T, e *policy.Explanation) {
			if !e.Network.Binaries {
				t.Errorf("binaries not reported: %+v", e.Network)
			}
		},
		want: []string{
			"      only for connections of /usr/bin/git (the process or an ancestor)",
			"  Only for connections of an executable: every process that holds the\n    connection's socket",
			"a query over UDP is answered empty and truncated",
			"  This tells tools apart; it is not a boundary against code the agent chooses.",
			"LD_PRELOAD, LD_LIBRARY_PATH",
			"  Closed: the agent seccomp profile refuses injecting code into an allowed",
			"  Open: without a filesystem_policy, Landlock guards neither /proc/PID/mem",
		},
	}, {
		name: "binaries with Landlock and without the agent seccomp profile",
		container: parse("tools", `
filesystem_policy: {read_only: [/usr, /proc], read_write: [/tmp]}
clawrun: {seccomp: {profile: none}}
network_policies:
  git:
    endpoints: [{host: github.com, port: 443}]
    binaries: [{path: /usr/bin/git}]
`),
		want: []string{
			"  Closed: Landlock refuses writing another process's memory through",
			"  Open: without the agent seccomp profile, a process of the same user can\n    inject code into an allowed process already running (ptrace); Landlock's",
		},
	}, {
		name:      "the floor filters egress the container leaves open",
		floor:     preset("pypi"),
		container: preset("agent-default"),
		check: func(t *testing.T, e *policy.Explanation) {
			if len(e.Network.Entries) != 1 || e.Network.Entries[0].Source != "pypi" {
				t.Errorf("%+v", e.Network)
			}
		},
		want: []string{"    pypi, from the floor\n      pypi.org:443", "Network: agent-default does not filter egress; the floor allows only its own network_policies."},
	}, {
		name: "floor settings",
		floor: parse("site", `
filesystem_policy: {read_only: [/usr]}
landlock: {compatibility: hard_requirement}
process: {run_as_user: agent, run_as_group: "100"}
clawrun:
  seccomp: {deny_syscalls: [getcpu, keyctl]}
  landlock: {tcp_connect: [443], tcp_bind: [8080]}
`),
		container: parse("team", `
filesystem_policy: {read_only: [/usr]}
clawrun:
  seccomp: {profile: none, deny_syscalls: [keyctl]}
  landlock: {scope_signals: false, scope_abstract_unix: false, tcp_connect: [443, 80]}
`),
		facts: testFacts,
		check: func(t *testing.T, e *policy.Explanation) {
			if e.RunAsUser != "agent" || e.RunAsGroup != "100" || e.Seccomp.Profile != policy.ProfileAgent ||
				!reflect.DeepEqual(e.Seccomp.Deny, []string{"getcpu", "keyctl"}) || e.Compatibility != policy.HardRequirement || e.MinABI != 6 ||
				!reflect.DeepEqual(e.TCPConnect, []uint16{443}) || !reflect.DeepEqual(e.TCPBind, []uint16{8080}) || !e.ScopeSignals {
				t.Errorf("%+v", e)
			}
			want := []string{
				"User: the floor makes the agent run as agent.",
				"Group: the floor makes the agent run as group 100.",
				"System calls: team asks for no agent seccomp profile; the floor keeps it.",
				"System calls: the floor also denies getcpu.",
				"Enforcement: the floor is hard_requirement: any gap in enforcement fails the container's creation.",
				"Signals: the floor confines them to the agent's own sandbox.",
				"Abstract unix sockets: the floor confines them to the agent's own sandbox.",
				"TCP bind: the floor allows only ports 8080.",
				"TCP connect: ports 80 are denied by the floor.",
			}
			if !reflect.DeepEqual(e.FloorTakes, want) {
				t.Errorf("floor takes\n%q\nwant\n%q", e.FloorTakes, want)
			}
		},
		want: []string{
			"Runs as user agent, group 100 (root is never allowed).",
			"TCP connect (Landlock): only to ports 443.",
			"TCP bind (Landlock): only ports 8080.",
			"Also denied (clawrun.seccomp.deny_syscalls): getcpu, keyctl.",
			"lacks Landlock\n    ABI 6 (Linux 6.12 or later)",
		},
	}, {
		name:      "hard requirement without scopes needs ABI 4 for TCP",
		container: parse("p", "filesystem_policy: {read_only: [/usr]}\nlandlock: {compatibility: hard_requirement}\nclawrun: {landlock: {scope_signals: false, scope_abstract_unix: false, tcp_connect: [443]}}"),
		check: func(t *testing.T, e *policy.Explanation) {
			if e.MinABI != 4 || e.ScopeSignals {
				t.Errorf("%+v", e)
			}
		},
		want: []string{"Signals: not scoped.", "Landlock ABI 4 (Linux 6.7 or later)"},
	}, {
		name:      "seccomp none",
		container: parse("p", "clawrun: {seccomp: {profile: none}}"),
		facts:     testFacts,
		want:      []string{"Only the container's own seccomp profile: clawrun.seccomp.profile is none."},
		not:       []string{"ptrace"},
	}, {
		name:      "warnings",
		container: parse("p", "network_middlewares: {}\nnetwork_policies:\n  x:\n    endpoints: [{host: a.example.com, port: 443, protocol: rest, access: read-only, tls: skip}]"),
		check: func(t *testing.T, e *policy.Explanation) {
			if len(e.Warnings) != 2 {
				t.Errorf("warnings %v", e.Warnings)
			}
		},
		// The policy's own, then the egress filter's.
		want: []string{"Warnings (accepted, but not enforced as written)\n  p:1: network_middlewares: accepted but not enforced by clawrun\n  p: network_policies.x.endpoints[0].access: cannot be enforced on TLS with tls: skip",
			"request rules: checked on plain HTTP; tls: skip, so TLS to it is denied"},
	}, {
		name:      "inspected endpoints",
		container: parse("p", "network_policies:\n  x:\n    endpoints: [{host: a.example.com, port: 443, tls: terminate}, {host: b.example.com, port: 443, protocol: rest, access: read-only}]"),
		check: func(t *testing.T, e *policy.Explanation) {
			if len(e.Warnings) != 0 {
				t.Errorf("warnings %v", e.Warnings)
			}
		},
		want: []string{"a.example.com:443: inspected: its TLS is decrypted with the container's CA; every request must be for this name",
			"b.example.com:443: inspected: its TLS is decrypted with the container's CA and every request checked against its request rules"},
	}, {
		// Credentials are named on the inspected endpoints they are bound
		// to, never on one the filter does not inspect.
		name:      "credentials of inspected endpoints",
		container: parse("p", "network_policies:\n  x:\n    endpoints: [{host: a.example.com, port: 443, tls: terminate}, {host: b.example.com, port: 443}, {host: c.example.com, port: 443, tls: terminate}]"),
		facts: policy.ExplainFacts{Credentials: []policy.Credential{
			{Name: "A_KEY", File: "/secret/a-key-file", Endpoints: []policy.CredentialEndpoint{{Host: "a.example.com", Ports: []int{443}}}},
			{Name: "B_KEY", Env: "B_KEY_ENV", Endpoints: []policy.CredentialEndpoint{{Host: "*.example.com", Ports: []int{443}}}},
			{Name: "C_ALT_PORT", Env: "C", Endpoints: []policy.CredentialEndpoint{{Host: "c.example.com", Ports: []int{8443}}}},
		}},
		check: func(t *testing.T, e *policy.Explanation) {
			got := map[string][]string{}
			for _, ep := range e.Network.Entries[0].Endpoints {
				got[ep.Host] = ep.Credentials
			}
			want := map[string][]string{"a.example.com": {"A_KEY", "B_KEY"}, "b.example.com": nil, "c.example.com": {"B_KEY"}}
			if !reflect.DeepEqual(got, want) {
				t.Errorf("credentials %v, want %v", got, want)
			}
		},
		want: []string{"a.example.com:443: inspected: its TLS is decrypted with the container's CA; every request must be for this name; credentials injected in place of their placeholders: A_KEY, B_KEY",
			"b.example.com:443\n"},
		// Names only: never where a value comes from.
		not: []string{"/secret/a-key-file", "B_KEY_ENV", "C_ALT_PORT"},
	}} {
		t.Run(tc.name, func(t *testing.T) {
			facts := tc.facts
			facts.Filter = rules.ExplainFilter
			e, err := policy.Explain(tc.floor, tc.container, facts)
			if err != nil {
				t.Fatal(err)
			}
			if tc.check != nil {
				tc.check(t, e)
			}
			out := e.String()
			// A sentence may be wrapped anywhere: compare words too.
			words := func(s string) string { return strings.Join(strings.Fields(s), " ") }
			for _, s := range tc.want {
				if !strings.Contains(out, s) && !strings.Contains(words(out), words(s)) {
					t.Errorf("missing %q in:\n%s", s, out)
				}
			}
			for _, s := range tc.not {
				if strings.Contains(out, s) {
					t.Errorf("unexpected %q in:\n%s", s, out)
				}
			}
			for _, line := range strings.Split(out, "\n") {
				// Only a word longer than the width may overflow.
				if len(line) > policy.ExplainWidth && strings.Contains(strings.TrimSpace(line), " ") {
					t.Errorf("line longer than %d: %q", policy.ExplainWidth, line)
				}
			}
			if _, err := json.Marshal(e); err != nil {
				t.Error(err)
			}
		})
	}
}

func TestExplainErrors(t *testing.T) {
	floor := parsePolicy(t, "site", "process: {run_as_user: agent}")
	container := parsePolicy(t, "team", "process: {run_as_user: other}")
	if _, err := policy.Explain(floor, container, policy.ExplainFacts{Filter: rules.ExplainFilter}); err == nil || !strings.Contains(err.Error(), `team: process.run_as_user: "other" conflicts with "agent" set by the floor policy site`) {
		t.Errorf("conflict: %v", err)
	}
	bad := &policy.Policy{Name: "code", Version: 2}
	if _, err := policy.Explain(nil, bad, policy.ExplainFacts{Filter: rules.ExplainFilter}); err == nil || !strings.Contains(err.Error(), "version 2 is not supported") {
		t.Errorf("invalid: %v", err)
	}
}

// The explanation of every preset and contrib policy renders, and says
// what each one is about.
func TestExplainPresets(t *testing.T) {
	for _, name := range policy.PresetNames() {
		p, _ := policy.Preset(name)
		e, err := policy.Explain(nil, p, policy.ExplainFacts{Filter: rules.ExplainFilter})
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		out := e.String()
		if p.HasNetwork == strings.Contains(out, "Not filtered") || p.HasFilesystem == strings.Contains(out, "Not confined") {
			t.Errorf("%s:\n%s", name, out)
		}
	}
}

func parsePolicy(t *testing.T, name, doc string) *policy.Policy {
	t.Helper()
	p, err := policy.Parse(name, []byte(doc))
	if err != nil {
		t.Fatal(err)
	}
	return p
}
