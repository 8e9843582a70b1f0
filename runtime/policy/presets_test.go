package policy

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
)

func TestPresets(t *testing.T) {
	names := PresetNames()
	if !slices.Contains(names, "agent-default") || !slices.IsSorted(names) {
		t.Fatalf("presets %v", names)
	}
	entries, err := presetFiles.ReadDir("presets")
	if err != nil || len(entries) != len(names) {
		t.Fatalf("%d embedded files, %d presets: %v", len(entries), len(names), err)
	}
	for _, e := range entries {
		name := strings.TrimSuffix(e.Name(), ".yaml")
		data, _ := presetFiles.ReadFile("presets/" + e.Name())
		if _, err := Parse(name, data); err != nil {
			t.Errorf("preset %s: %v", name, err)
		}
		if err := ValidName(name); err != nil {
			t.Errorf("preset %s: %v", name, err)
		}
		p, ok := Preset(name)
		if !ok || p.Name != name || len(p.Warnings) != 0 {
			t.Errorf("preset %s: %+v", name, p)
		}
		if _, err := Compile(p, nil, CompileOptions{Workdir: "/"}); err != nil {
			t.Errorf("preset %s with Docker's default workdir: %v", name, err)
		}
	}
	if _, ok := Preset("nope"); ok {
		t.Error("unknown preset found")
	}
}

func TestAgentDefault(t *testing.T) {
	p, _ := Preset("agent-default")
	fs := p.FilesystemPolicy
	for _, path := range []string{"/bin", "/usr", "/lib", "/lib64", "/etc", "/proc", "/dev/urandom"} {
		if !slices.Contains(fs.ReadOnly, path) {
			t.Errorf("%s not read-only", path)
		}
	}
	for _, path := range []string{"/sandbox", "/tmp", "/dev/null", "/dev/tty", "/dev/pts", "/dev/shm"} {
		if !slices.Contains(fs.ReadWrite, path) {
			t.Errorf("%s not read-write", path)
		}
	}
	if fs.IncludeWorkdir || p.HasNetwork || p.Landlock.Compatibility != BestEffort || p.Clawrun.Seccomp.Profile != ProfileAgent {
		t.Errorf("%+v", p)
	}
	// Preset returns a copy.
	p.FilesystemPolicy.ReadOnly[0] = "/changed"
	if q, _ := Preset("agent-default"); q.FilesystemPolicy.ReadOnly[0] == "/changed" {
		t.Error("Preset shares memory between calls")
	}
}

func TestParseShortcut(t *testing.T) {
	p, err := ParseShortcut(" api.github.com, pypi.org:8443 ,API.github.com:443,*.githubusercontent.com:80,pypi.org")
	if err != nil {
		t.Fatal(err)
	}
	want := []Endpoint{
		{Host: "api.github.com", Ports: []int{443}},
		{Host: "pypi.org", Ports: []int{443, 8443}},
		{Host: "*.githubusercontent.com", Ports: []int{80}},
	}
	np := p.NetworkPolicies[ShortcutPolicyName]
	if p.Name != "egress" || len(p.NetworkPolicies) != 1 || !reflect.DeepEqual(np.Endpoints, want) {
		t.Errorf("%+v", p)
	}
	if p.HasFilesystem || !p.HasNetwork || np.Binaries != nil {
		t.Errorf("a shortcut must not confine files: %+v", p)
	}
	if err := p.Validate(); err != nil {
		t.Error(err)
	}
	plan, err := Compile(nil, p, CompileOptions{Workdir: "/"})
	if err != nil || len(plan.Layers) != 0 || len(plan.Network) != 1 {
		t.Errorf("plan %+v, %v", plan, err)
	}

	for value, want := range map[string]string{
		"":               "run.clawrun.egress: no hosts",
		"a.com,,b.com":   `run.clawrun.egress[1]: "": empty entry`,
		"a.com:0":        `run.clawrun.egress[0]: "a.com:0": port "0" is not a number in 1-65535`,
		"a.com:70000":    "is not a number in 1-65535",
		"a.com:https":    "is not a number in 1-65535",
		"a.com:":         "is not a number in 1-65535",
		"a.com:+443":     "is not a number in 1-65535",
		"*.com":          "over-broad wildcard",
		"*":              "over-broad wildcard",
		"a.*.com":        "whole first label",
		"10.0.0.1:443":   "IP addresses are not allowed",
		"[::1]:443":      "IP addresses are not allowed",
		"ok.com,1.2.3.4": `run.clawrun.egress[1]: "1.2.3.4": "1.2.3.4": IP addresses`,
		"a.com:443:1":    "IP addresses are not allowed",
	} {
		_, err := ParseShortcut(value)
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("ParseShortcut(%q) = %v, want %q", value, err, want)
		}
	}
}

func TestParseConfig(t *testing.T) {
	c, err := ParseConfig("config.yaml", nil)
	if err != nil || c.PolicyDir != DefaultPolicyDir || c.FloorPolicy != "" {
		t.Fatalf("%+v %v", c, err)
	}
	c, err = ParseConfig("config.yaml", []byte(`
floor_policy: /etc/clawrun/floor.yaml
default_policy: agent-default
policy_dir: /srv/policies/
egress:
  upstream_dns: ["1.1.1.1:53", "9.9.9.9", "[2606:4700::1111]:53"]
  allowed_upstream_ranges: [10.0.0.0/8]
  upstream_ca_file: /etc/clawrun//upstream-ca.pem
`))
	if err != nil {
		t.Fatal(err)
	}
	want := &Config{FloorPolicy: "/etc/clawrun/floor.yaml", DefaultPolicy: "agent-default", PolicyDir: "/srv/policies",
		Egress: EgressConfig{UpstreamDNS: []string{"1.1.1.1:53", "9.9.9.9:53", "[2606:4700::1111]:53"}, AllowedUpstreamRanges: []string{"10.0.0.0/8"},
			UpstreamCAFile: "/etc/clawrun/upstream-ca.pem"}}
	if !reflect.DeepEqual(c, want) {
		t.Errorf("got %+v\nwant %+v", c, want)
	}

	for doc, want := range map[string]string{
		"floor: x":                                        `c:1: floor: unknown key "floor"; valid keys are floor_policy, default_policy, policy_dir, egress`,
		"floor_policy: ../x":                              `c:1: floor_policy: invalid policy name "../x"`,
		"floor_policy: /etc/../x":                         `c:1: floor_policy: "/etc/../x": ".." components are not allowed`,
		"default_policy: /etc/x.yaml":                     `c:1: default_policy: invalid policy name`,
		"policy_dir: policies":                            `c:1: policy_dir: "policies": must be an absolute path`,
		"egress: {upstream_dns: 1.1.1.1}":                 `c:1: egress.upstream_dns: expected a list of addresses, got the string "1.1.1.1"`,
		"egress: {upstream_dns: [dns.google:53]}":         `c:1: egress.upstream_dns[0]: "dns.google:53": not an IP:PORT address`,
		"egress: {upstream_dns: ['1.1.1.1:0']}":           `port 0 is not allowed`,
		"egress: {upstream_ca_file: ca.pem}":              `c:1: egress.upstream_ca_file: "ca.pem": must be an absolute path`,
		"egress: {allowed_upstream_ranges: [10.0.0.1]}":   `c:1: egress.allowed_upstream_ranges[0]: "10.0.0.1": not a CIDR prefix`,
		"egress: {dns: []}":                               `c:1: egress.dns: unknown key "dns"; valid keys are upstream_dns, allowed_upstream_ranges`,
		"egress:\n  upstream_dns: []\n  upstream_dns: []": `c:3: egress.upstream_dns: duplicate key (first at line 2)`,
	} {
		_, err := ParseConfig("c", []byte(doc))
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("ParseConfig(%q) = %v, want %q", doc, err, want)
		}
	}
}

func TestLoad(t *testing.T) {
	files := map[string]string{
		"/etc/clawrun/policies/team.yaml":          "filesystem_policy: {read_only: [/usr]}",
		"/etc/clawrun/policies/agent-default.yaml": "version: 2", // presets cannot be shadowed
		"/etc/clawrun/floor.yaml":                  "process: {run_as_user: sandbox}",
	}
	read := func(path string) ([]byte, error) {
		if s, ok := files[path]; ok {
			return []byte(s), nil
		}
		return nil, fs.ErrNotExist
	}
	c, _ := ParseConfig("c", nil)
	if p, err := c.LoadNamed("team", read); err != nil || p.Name != "team" || !p.HasFilesystem {
		t.Errorf("team: %+v %v", p, err)
	}
	if p, err := c.LoadNamed("agent-default", read); err != nil || p.Name != "agent-default" {
		t.Errorf("agent-default: %+v %v", p, err)
	}
	if _, err := c.LoadNamed("missing", read); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("missing: %v", err)
	}
	for _, bad := range []string{"/etc/clawrun/floor.yaml", "../floor", "a/b"} {
		if _, err := c.LoadNamed(bad, read); err == nil {
			t.Errorf("LoadNamed(%q) accepted a path", bad)
		}
	}
	if p, err := c.LoadFloor(read); p != nil || err != nil {
		t.Errorf("no floor: %v %v", p, err)
	}
	c.FloorPolicy = "/etc/clawrun/floor.yaml"
	if p, err := c.LoadFloor(read); err != nil || p.Process.RunAsUser != "sandbox" {
		t.Errorf("floor file: %+v %v", p, err)
	}
	c.FloorPolicy = "agent-default"
	if p, err := c.LoadFloor(read); err != nil || p.Name != "agent-default" {
		t.Errorf("floor preset: %+v %v", p, err)
	}
}

// TestContribPolicies checks the ready-made policies of contrib/policies:
// each parses and compiles without a warning, alone and under the
// agent-default floor, and keeps the promises its comments make.
func TestContribPolicies(t *testing.T) {
	files, err := filepath.Glob("../../contrib/policies/*.yaml")
	if err != nil || len(files) < 4 {
		t.Fatalf("contrib policies: %v %v", files, err)
	}
	floor, _ := Preset("agent-default")
	for _, file := range files {
		name := strings.TrimSuffix(filepath.Base(file), ".yaml")
		t.Run(name, func(t *testing.T) {
			data, err := os.ReadFile(file)
			if err != nil {
				t.Fatal(err)
			}
			// Installed as /etc/clawrun/policies/NAME.yaml and named in
			// run.clawrun.policy: the name must be valid and not a preset's.
			if err := ValidName(name); err != nil {
				t.Error(err)
			}
			if _, isPreset := Preset(name); isPreset {
				t.Errorf("%s shadows a preset", name)
			}
			p, err := Parse(name, data)
			if err != nil {
				t.Fatal(err)
			}
			if len(p.Warnings) != 0 {
				t.Errorf("warnings: %v", p.Warnings)
			}
			for _, f := range []*Policy{nil, floor} {
				plan, err := Compile(f, p, CompileOptions{Workdir: "/sandbox"})
				if err != nil {
					t.Fatal(err)
				}
				if len(plan.Warnings) != 0 {
					t.Errorf("plan warnings: %v", plan.Warnings)
				}
			}
			// A confined agent: its own workspace, never root, egress
			// filtered, no gap tolerated.
			if !p.HasFilesystem || !slices.Contains(p.FilesystemPolicy.ReadWrite, "/sandbox") || p.FilesystemPolicy.IncludeWorkdir {
				t.Errorf("filesystem %+v", p.FilesystemPolicy)
			}
			if p.Process.RunAsUser == "" || p.Process.RunAsGroup == "" {
				t.Errorf("process %+v", p.Process)
			}
			if p.Landlock.Compatibility != HardRequirement || p.Clawrun.Seccomp.Profile != ProfileAgent {
				t.Errorf("landlock %+v, seccomp %+v", p.Landlock, p.Clawrun.Seccomp)
			}
			if !p.HasNetwork || len(p.NetworkPolicies) == 0 {
				t.Error("egress is not filtered")
			}
			for key, np := range p.NetworkPolicies {
				for _, ep := range np.Endpoints {
					// Plain HTTPS endpoints: nothing that the egress filter
					// would turn into a denial with a warning, and no
					// wildcard that opens a whole organisation's hosts.
					if !reflect.DeepEqual(ep.Ports, []int{443}) || ep.Protocol != "" || ep.Path != "" || ep.Access != "" ||
						ep.Rules != nil || ep.DenyRules != nil || ep.AllowedIPs != nil || strings.HasPrefix(ep.Host, "*.") {
						t.Errorf("%s: endpoint %+v", key, ep)
					}
				}
			}
		})
	}
}
