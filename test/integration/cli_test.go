package integration

import (
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/opencontainers/runtime-spec/specs-go"

	"github.com/clawrun/clawrun/test/bundle"
)

// TestSpec: spec writes a usable config.json and never overwrites one.
func TestSpec(t *testing.T) {
	t.Parallel()
	r := newRuntime(t)

	check := func(dir string) {
		t.Helper()
		data, err := os.ReadFile(filepath.Join(dir, "config.json"))
		if err != nil {
			t.Fatalf("spec wrote no config.json: %v", err)
		}
		var s specs.Spec
		if err := json.Unmarshal(data, &s); err != nil {
			t.Fatalf("config.json: %v", err)
		}
		if !strings.HasPrefix(s.Version, "1.") || s.Process == nil || len(s.Process.Args) == 0 ||
			s.Root == nil || s.Root.Path != "rootfs" || s.Linux == nil || len(s.Linux.Namespaces) == 0 {
			t.Fatalf("config.json is not a usable default spec:\n%s", data)
		}
	}

	// In the working directory.
	cwd := t.TempDir()
	if res := r.runWith(runOpts{Dir: cwd}, "spec"); res.Code != 0 {
		t.Fatalf("spec:\n%s", res)
	}
	check(cwd)

	// With --bundle; and a second run must refuse to touch the existing file.
	dir := t.TempDir()
	r.ok("spec", "--bundle", dir)
	check(dir)
	const mine = `{"mine": true}`
	if err := os.WriteFile(filepath.Join(dir, "config.json"), []byte(mine), 0o644); err != nil {
		t.Fatal(err)
	}
	res := r.run("spec", "--bundle", dir)
	if res.Code == 0 {
		t.Fatalf("spec overwrote an existing config.json:\n%s", res)
	}
	if !strings.Contains(res.Stderr, "exists") {
		t.Errorf("stderr should say config.json exists:\n%s", res)
	}
	if got := readFile(filepath.Join(dir, "config.json")); got != mine {
		t.Fatalf("config.json changed to %q", got)
	}
}

// TestFeatures: features prints the runtime's capabilities as JSON.
func TestFeatures(t *testing.T) {
	t.Parallel()
	r := newRuntime(t)
	res := r.ok("features")
	var f struct {
		OCIVersionMin string            `json:"ociVersionMin"`
		OCIVersionMax string            `json:"ociVersionMax"`
		Hooks         []string          `json:"hooks"`
		Annotations   map[string]string `json:"annotations"`
		Linux         *json.RawMessage  `json:"linux"`
	}
	if err := json.Unmarshal([]byte(res.Stdout), &f); err != nil {
		t.Fatalf("features output is not JSON: %v\n%s", err, res)
	}
	if !strings.HasPrefix(f.OCIVersionMin, "1.") || !strings.HasPrefix(f.OCIVersionMax, "1.") || f.Linux == nil {
		t.Fatalf("features lacks ociVersionMin/Max or linux:\n%s", res)
	}
	if r.isClawrun() {
		var n int
		for k := range f.Annotations {
			if strings.HasPrefix(k, "run.clawrun.") {
				n++
			}
		}
		if n == 0 {
			t.Errorf("clawrun features: no run.clawrun.* annotations in %v", f.Annotations)
		}
	}
}

// TestVersion: --version names the runtime, its version and the spec version.
func TestVersion(t *testing.T) {
	t.Parallel()
	r := newRuntime(t)
	res := r.ok("--version")
	lines := strings.Split(strings.TrimSpace(res.Stdout), "\n")
	if !regexp.MustCompile(`^\S+ version \S+`).MatchString(lines[0]) {
		t.Fatalf("first line %q, want \"NAME version X\"", lines[0])
	}
	if !regexp.MustCompile(`(?m)^spec: 1\.\d+`).MatchString(res.Stdout) {
		t.Errorf("no \"spec: 1.x\" line:\n%s", res)
	}
	if r.isClawrun() {
		if !strings.HasPrefix(lines[0], "clawrun version ") {
			t.Errorf("first line %q, want \"clawrun version X\"", lines[0])
		}
		if !regexp.MustCompile(`(?m)^commit: \S+`).MatchString(res.Stdout) {
			t.Errorf("no \"commit: ...\" line:\n%s", res)
		}
	}
}

// TestFailureWording: a failed create or run says "NAME COMMAND failed: "
// as runc's do, NAME being the name the runtime was called by: installed
// as runc (a drop-in replacement), clawrun words its failures as runc, and
// by its own name as clawrun.
func TestFailureWording(t *testing.T) {
	t.Parallel()
	r := newRuntime(t)
	asRunc := *r
	asRunc.bin = filepath.Join(t.TempDir(), "runc")
	if err := os.Symlink(r.bin, asRunc.bin); err != nil {
		t.Fatal(err)
	}
	missing := filepath.Join(t.TempDir(), "no-such-bundle")
	check := func(rt *rtest, name string) {
		for _, cmd := range []string{"create", "run"} {
			id := newID(t)
			rt.track(id)
			res := rt.run(cmd, "--bundle", missing, id)
			if want := name + " " + cmd + " failed: "; res.Code == 0 || !strings.Contains(res.Stderr, want) {
				t.Errorf("called as %s, %s of a missing bundle: want a failure saying %q:\n%s", filepath.Base(rt.bin), cmd, want, res)
			}
		}
	}
	check(&asRunc, "runc")
	if r.isClawrun() {
		check(r, "clawrun")
	}
}

// TestKillCLI: kill as runc's callers use it. Signal 0 is a liveness
// probe (exit 0 while the container runs, "container not running" once it
// stopped: containerd's shim matches that text); swapped arguments look up
// the signal's name as a container id, as runc does.
func TestKillCLI(t *testing.T) {
	t.Parallel()
	r := newRuntime(t)
	b := r.bundle(bundle.Shell(sleeper))
	id := newID(t)
	st := r.runDetached(id, b)

	r.ok("kill", id, "0")
	if st2 := r.state(id); st2.Status != "running" || !pidAlive(st.Pid) {
		t.Fatalf("kill %s 0 changed the container: %+v", id, st2)
	}
	res := r.run("kill", "KILL", id)
	assertFailure(t, res, "container does not exist")
	if !pidAlive(st.Pid) {
		t.Fatalf("kill KILL %s (swapped arguments) killed the container", id)
	}

	r.ok("kill", id, "KILL")
	r.waitStatus(id, "stopped")
	for _, sig := range []string{"KILL", "0"} {
		assertFailure(t, r.run("kill", id, sig), "container not running")
	}
	r.ok("kill", "-a", id, "0")
}

// TestFlagsAfterArguments: runc takes a command's flags after its
// arguments too ("update ID --pids-limit 50"); exec keeps what follows the
// id as the process's command line.
func TestFlagsAfterArguments(t *testing.T) {
	t.Parallel()
	r := newRuntime(t)
	b := r.bundle(bundle.Shell(sleeper))
	id := newID(t)
	st := r.runDetached(id, b)
	pidsMax := filepath.Join(cgroupDirOf(t, st.Pid, "pids"), "pids.max")

	r.ok("update", id, "--pids-limit", "50")
	if v := readTrim(t, pidsMax); v != "50" {
		t.Errorf("after update ID --pids-limit 50, pids.max = %s", v)
	}
	r.ok("update", id, "--pids-limit=40")
	if v := readTrim(t, pidsMax); v != "40" {
		t.Errorf("after update ID --pids-limit=40, pids.max = %s", v)
	}
	if res := r.ok("exec", id, "echo", "--pids-limit", "-d"); res.Stdout != "--pids-limit -d\n" {
		t.Errorf("exec's command lost its flag-like arguments:\n%s", res)
	}
	r.ok("kill", id, "KILL", "--all")
	r.waitStatus(id, "stopped")
	r.ok("delete", id, "--force")
	r.assertGone(id, b)
}

// TestCheckpointUnsupported: clawrun has no CRIU checkpoint/restore, and
// says so wherever a caller looks: the commands fail (checkpoint --help
// too: Podman takes its success to mean support), features carries runc's
// checkpoint annotation set to false, and --help names it.
func TestCheckpointUnsupported(t *testing.T) {
	t.Parallel()
	r := newRuntime(t)
	if !r.isClawrun() {
		t.Skipf("not clawrun: %s implements checkpoint/restore", r.bin)
	}
	for _, args := range [][]string{{"checkpoint", "x"}, {"checkpoint", "--help"}, {"restore", "x"}, {"restore", "--bundle", "b", "x"}} {
		assertFailure(t, r.run(args...), "checkpoint/restore (CRIU) is not supported")
	}
	var f struct {
		Annotations map[string]string `json:"annotations"`
	}
	res := r.ok("features")
	if err := json.Unmarshal([]byte(res.Stdout), &f); err != nil {
		t.Fatal(err)
	}
	if v, ok := f.Annotations["org.opencontainers.runc.checkpoint.enabled"]; !ok || v != "false" {
		t.Errorf("features: org.opencontainers.runc.checkpoint.enabled = %q (set: %v), want \"false\"", v, ok)
	}
	if res := r.ok("--help"); !strings.Contains(res.Stdout, "Not supported: checkpoint and restore") {
		t.Errorf("--help does not say that checkpoint/restore is not supported:\n%s", res)
	}
}
