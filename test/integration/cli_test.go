package integration

import (
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/opencontainers/runtime-spec/specs-go"
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
