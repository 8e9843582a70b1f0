package runtime

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/opencontainers/runtime-spec/specs-go"
)

// TestPodRole: only a container whose annotations name it as the sandbox
// of its own id is a pod's sandbox; a claim without the id is an ordinary
// container.
func TestPodRole(t *testing.T) {
	const id = "f00d"
	for _, tc := range []struct {
		name        string
		annotations map[string]string
		want        string
	}{
		{"containerd sandbox", map[string]string{annotationCRIContainerType: "sandbox", annotationCRISandboxID: id}, criSandbox},
		{"containerd sandbox type only", map[string]string{annotationCRIContainerType: "sandbox"}, ""},
		{"containerd sandbox of another id", map[string]string{annotationCRIContainerType: "sandbox", annotationCRISandboxID: "beef"}, ""},
		{"containerd container", map[string]string{annotationCRIContainerType: "container", annotationCRISandboxID: "beef"}, criContainer},
		{"cri-o infra container", map[string]string{annotationCRIOContainerType: "sandbox", annotationCRIOSandboxID: id}, criSandbox},
		{"cri-o sandbox type only", map[string]string{annotationCRIOContainerType: "sandbox"}, ""},
		{"cri-o container", map[string]string{annotationCRIOContainerType: "container", annotationCRIOSandboxID: "beef"}, ""},
		// One CRI's type with the other's id proves nothing.
		{"mixed annotations", map[string]string{annotationCRIContainerType: "sandbox", annotationCRIOSandboxID: id}, ""},
		{"no annotations", nil, ""},
	} {
		if got := podRole(tc.annotations, id); got != tc.want {
			t.Errorf("%s: podRole = %q, want %q", tc.name, got, tc.want)
		}
	}
	if got := podRole(map[string]string{annotationCRIContainerType: "sandbox", annotationCRISandboxID: ""}, ""); got != "" {
		t.Errorf("an empty id matched an empty sandbox id: %q", got)
	}
}

// TestSandboxCommand: a sandbox's command as the floor grants it: an
// absolute path as given, anything else found in the root filesystem.
func TestSandboxCommand(t *testing.T) {
	rootfs := t.TempDir()
	for _, f := range []string{"bin/sh", "app/run", "usr/bin/notexec"} {
		p := filepath.Join(rootfs, f)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		mode := os.FileMode(0o755)
		if f == "usr/bin/notexec" {
			mode = 0o644
		}
		if err := os.WriteFile(p, nil, mode); err != nil {
			t.Fatal(err)
		}
	}
	for _, tc := range []struct {
		args0, cwd, want string
	}{
		{"/pause", "/", "/pause"},        // not looked up: the exec will say
		{"/usr/../pause", "/", "/pause"}, // cleaned
		{"sh", "/", "/bin/sh"},
		{"./run", "/app", "/app/run"},
		{"notexec", "/", ""},
		{"missing", "/", ""},
	} {
		spec := &specs.Spec{
			Root:    &specs.Root{Path: rootfs},
			Process: &specs.Process{Args: []string{tc.args0}, Cwd: tc.cwd, Env: []string{"PATH=/usr/bin:/bin"}},
		}
		if got := sandboxCommand(spec); got != tc.want {
			t.Errorf("%s (cwd %s): %q, want %q", tc.args0, tc.cwd, got, tc.want)
		}
	}
}
