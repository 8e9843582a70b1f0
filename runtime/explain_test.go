package runtime

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestExplainPolicy(t *testing.T) {
	dir := t.TempDir()
	write := func(name, content string) string {
		t.Helper()
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	policyDir := filepath.Join(dir, "policies")
	if err := os.Mkdir(policyDir, 0o755); err != nil {
		t.Fatal(err)
	}
	write("policies/team.yaml", "filesystem_policy: {read_only: [/usr], read_write: [/sandbox]}\nnetwork_policies:\n  x:\n    endpoints: [{host: a.example.com, port: 443, protocol: rest, access: read-only}]\n")
	config := write("config.yaml", "floor_policy: agent-default\ndefault_policy: team\npolicy_dir: "+policyDir+"\n"+
		"egress:\n  credentials:\n    - {name: A_KEY, env: A_KEY_SOURCE, endpoints: [{host: a.example.com}]}\n")
	file := write("local.yaml", "clawrun: {include: [pypi]}\n")

	for _, tc := range []struct {
		name, floor, ref                  string
		container, containerFrom, floorIs string
		want                              []string
	}{
		{name: "default policy under the config's floor", ref: "",
			container: "team", containerFrom: "the config's default_policy, " + filepath.Join(policyDir, "team.yaml"), floorIs: "agent-default",
			// The filter inspects the endpoint's TLS to enforce access, and
			// injects the config's credential bound to it, named.
			want: []string{"a.example.com:443: inspected", "credentials injected in place of their placeholders: A_KEY"}},
		{name: "preset", ref: "pypi", container: "pypi", containerFrom: "built-in preset", floorIs: "agent-default"},
		{name: "policy directory", ref: "team", container: "team", containerFrom: filepath.Join(policyDir, "team.yaml"), floorIs: "agent-default"},
		{name: "file", ref: file, container: file, floorIs: "agent-default", want: []string{"pypi.org:443"}},
		{name: "--policy wins over the config", floor: "github", ref: "pypi", container: "pypi", containerFrom: "built-in preset", floorIs: "github",
			want: []string{"Network denied by the floor: pypi.org:443 (pypi)"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o := PolicyOptions{Floor: tc.floor, ConfigFile: config, ConfigExplicit: true}
			e, err := o.Explain(tc.ref)
			if err != nil {
				t.Fatal(err)
			}
			if e.Container != tc.container || e.ContainerFrom != tc.containerFrom || e.Floor != tc.floorIs {
				t.Errorf("container %q from %q, floor %q", e.Container, e.ContainerFrom, e.Floor)
			}
			out := e.String()
			for _, s := range tc.want {
				if !strings.Contains(strings.Join(strings.Fields(out), " "), s) {
					t.Errorf("missing %q in:\n%s", s, out)
				}
			}
		})
	}

	o := PolicyOptions{ConfigFile: config, ConfigExplicit: true}
	for ref, want := range map[string]string{
		"missing":           "missing.yaml",
		"missing.yaml":      "no such file",
		"../x":              "no such file",
		"Bad Name":          "invalid policy name",
		file + ".nope.json": "no such file",
	} {
		if _, err := o.Explain(ref); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("Explain(%q) = %v, want %q", ref, err, want)
		}
	}
	// A missing default config file is an empty configuration: no floor,
	// no default policy.
	none := PolicyOptions{ConfigFile: filepath.Join(dir, "absent.yaml")}
	e, err := none.Explain("")
	if err != nil || e.Container != "" || e.Floor != "" || !strings.Contains(e.String(), "No policy") {
		t.Errorf("no config: %+v %v", e, err)
	}
}
