package integration

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/clawrun/clawrun/test/bundle"
)

// Annotations through which a container asks for a policy.
const (
	annPolicy = "run.clawrun.policy"
	annInline = "run.clawrun.policy.inline"
	annEgress = "run.clawrun.egress"
)

// probePath is where probeBundle puts test/probe in the rootfs (on the
// spec's PATH, and read-only under agent-default).
const probePath = "/usr/bin/probe"

// --- the probe binary ---

var probeBuild struct {
	once sync.Once
	data []byte
	err  error
}

// probeBinary builds test/probe once per test process (static, with
// CGO_ENABLED=0) and returns its contents; the binary is kept in memory so
// that no build output is left behind and concurrent runs cannot clash.
func probeBinary(t *testing.T) []byte {
	t.Helper()
	repo := bundle.RepoRoot(t) // outside Do: it may t.Fatal
	probeBuild.once.Do(func() {
		probeBuild.data, probeBuild.err = buildProbe(repo)
	})
	if probeBuild.err != nil {
		t.Fatalf("building test/probe: %v", probeBuild.err)
	}
	return probeBuild.data
}

func buildProbe(repo string) ([]byte, error) {
	// go test puts $GOROOT/bin first on the test's PATH.
	goBin, err := exec.LookPath("go")
	if err != nil {
		return nil, fmt.Errorf("the go command, to build the probe: %w", err)
	}
	dir, err := os.MkdirTemp("", "clawrun-probe")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	out := filepath.Join(dir, "probe")
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, goBin, "build", "-trimpath", "-ldflags=-s -w", "-o", out, "./test/probe")
	cmd.Dir = repo
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if msg, err := cmd.CombinedOutput(); err != nil {
		return nil, fmt.Errorf("%v: %v\n%s", cmd.Args, err, msg)
	}
	return os.ReadFile(out)
}

// installProbe copies the probe to path (as the container sees it) in the
// bundle's rootfs, owned by root, with mode (e.g. 0o4755 for setuid).
func installProbe(t *testing.T, bundleDir, path string, mode os.FileMode) {
	t.Helper()
	writeRootfs(t, bundleDir, path, string(probeBinary(t)), mode)
}

// --- the rootfs ---

// inRootfs is path (as the container sees it) on the host.
func inRootfs(bundleDir, path string) string {
	return filepath.Join(bundleDir, "rootfs", filepath.FromSlash(path))
}

// writeRootfs writes a file into the rootfs, making its directories.
func writeRootfs(t *testing.T, bundleDir, path, content string, mode os.FileMode) {
	t.Helper()
	p := inRootfs(bundleDir, path)
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(content), mode.Perm()); err != nil {
		t.Fatal(err)
	}
	// WriteFile goes through the umask and never sets setuid.
	if err := os.Chmod(p, mode); err != nil {
		t.Fatal(err)
	}
}

// mkdirRootfs makes directories in the rootfs.
func mkdirRootfs(t *testing.T, bundleDir string, paths ...string) {
	t.Helper()
	for _, path := range paths {
		if err := os.MkdirAll(inRootfs(bundleDir, path), 0o755); err != nil {
			t.Fatal(err)
		}
	}
}

// mergeUsr makes the busybox rootfs "merged /usr" like current
// distributions: /bin is a symlink to usr/bin. Policies written for such
// images (OpenShell's list /usr, not /bin) can then run its shell.
func mergeUsr(t *testing.T, bundleDir string) {
	t.Helper()
	bin, usrBin := inRootfs(bundleDir, "/bin"), inRootfs(bundleDir, "/usr/bin")
	ents, err := os.ReadDir(bin)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range ents {
		if err := os.Rename(filepath.Join(bin, e.Name()), filepath.Join(usrBin, e.Name())); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Remove(bin); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("usr/bin", bin); err != nil {
		t.Fatal(err)
	}
}

// --- spec edits ---

// annotate sets annotations (key, value, key, value...).
func annotate(kv ...string) func(*specs.Spec) {
	return func(s *specs.Spec) {
		if s.Annotations == nil {
			s.Annotations = map[string]string{}
		}
		for i := 0; i+1 < len(kv); i += 2 {
			s.Annotations[kv[i]] = kv[i+1]
		}
	}
}

// withPolicy asks for a preset or named policy.
func withPolicy(name string) func(*specs.Spec) { return annotate(annPolicy, name) }

// withInline carries a whole policy document.
func withInline(doc string) func(*specs.Spec) { return annotate(annInline, doc) }

// writableRoot turns off root.readonly, which the generated spec sets:
// writes must reach Landlock, not fail with EROFS for the wrong reason.
func writableRoot(s *specs.Spec) { s.Root.Readonly = false }

// writableKernelFS makes /proc/sys and /sys writable mounts, so that only
// a policy can keep a process from opening their files for writing.
func writableKernelFS(s *specs.Spec) {
	s.Linux.ReadonlyPaths = slices.DeleteFunc(s.Linux.ReadonlyPaths, func(p string) bool { return p == "/proc/sys" })
	for i, m := range s.Mounts {
		if m.Destination == "/sys" && m.Type == "sysfs" {
			s.Mounts[i].Options = slices.DeleteFunc(slices.Clone(m.Options), func(o string) bool { return o == "ro" })
		}
	}
}

// addCaps grants capabilities (bounding, effective, permitted).
func addCaps(caps ...string) func(*specs.Spec) {
	return func(s *specs.Spec) {
		c := s.Process.Capabilities
		c.Bounding = append(c.Bounding, caps...)
		c.Effective = append(c.Effective, caps...)
		c.Permitted = append(c.Permitted, caps...)
	}
}

// asUser runs the process as uid:gid.
func asUser(uid, gid uint32) func(*specs.Spec) {
	return func(s *specs.Spec) { s.Process.User = specs.User{UID: uid, GID: gid} }
}

// --- runtime ---

// policyRuntime is newRuntime for the policy tests: they need clawrun
// (runc has no policies) and a host without a clawrun config of its own,
// which would confine the baselines too.
func policyRuntime(t *testing.T) *rtest {
	t.Helper()
	r := newRuntime(t)
	if !r.isClawrun() {
		t.Skipf("not clawrun: %s has no policies", r.bin)
	}
	if _, err := os.Stat("/etc/clawrun/config.yaml"); !errors.Is(err, os.ErrNotExist) {
		t.Fatal("/etc/clawrun/config.yaml exists: its floor or default policy would confine the baselines (move it away while testing)")
	}
	return r
}

// probeBundle is a busybox bundle with a writable root, the probe at
// /usr/bin/probe, and the edits applied.
func (r *rtest) probeBundle(edits ...func(*specs.Spec)) string {
	r.t.Helper()
	b := r.bundle(append([]func(*specs.Spec){writableRoot}, edits...)...)
	installProbe(r.t, b, probePath, 0o755)
	return b
}

// runOnce runs the bundle's process in the foreground and wants exit 0.
func (r *rtest) runOnce(b string, globals ...string) result {
	r.t.Helper()
	return r.runOnceAs(newID(r.t), b, globals...)
}

// runOnceAs is runOnce with a given container id (for a spec that names
// it, as a pod's sandbox does).
func (r *rtest) runOnceAs(id, b string, globals ...string) result {
	r.t.Helper()
	r.track(id)
	res := r.run(append(slices.Clone(globals), "run", "--bundle", b, id)...)
	if res.Code != 0 {
		r.t.Fatalf("run failed:\n%s", res)
	}
	return res
}

// runReady is runDetachedOut that waits until the container's stdout has
// each of ready (its init's servers listen, say), and returns that file.
func (r *rtest) runReady(id, b string, ready ...string) string {
	r.t.Helper()
	_, out := r.runDetachedOut(id, b)
	waitFor(r.t, 10*time.Second, fmt.Sprintf("the init to print %q", ready), func() bool {
		s := readFile(out)
		for _, line := range ready {
			if !strings.Contains(s, line) {
				return false
			}
		}
		return true
	})
	return out
}

// runDetachedOut is runDetached that also returns the file the container's
// stdout goes to.
func (r *rtest) runDetachedOut(id, b string, globals ...string) (ctrState, string) {
	r.t.Helper()
	r.track(id)
	res := r.ok(append(slices.Clone(globals), "run", "-d", "--bundle", b, id)...)
	return r.waitStatus(id, "running"), res.StdoutPath
}

// --- state ---

// clawState is `clawrun state` with its "clawrun" object.
type clawState struct {
	ctrState
	Clawrun *confState `json:"clawrun"`
}

type confState struct {
	Policy   string `json:"policy"`
	Digest   string `json:"digest"`
	Landlock struct {
		Status        string `json:"status"`
		ABI           int    `json:"abi"`
		Compatibility string `json:"compatibility"`
		Layers        []struct {
			Source  string   `json:"source"`
			Rules   int      `json:"rules"`
			Missing []string `json:"missing_features"`
		} `json:"layers"`
		Skipped []skippedPath `json:"skipped"`
		Error   string        `json:"error"`
	} `json:"landlock"`
	Seccomp struct {
		Profile string `json:"profile"`
		Loaded  bool   `json:"loaded"`
		Denied  int    `json:"extra_denied"`
	} `json:"seccomp"`
	Egress  string `json:"egress"`
	Process struct {
		NoNewPrivileges     bool     `json:"no_new_privileges"`
		RunAs               string   `json:"run_as"`
		DroppedCapabilities []string `json:"dropped_capabilities"`
	} `json:"process"`
	ReadOnlyMounts []string `json:"read_only_mounts"`
	Warnings       []string `json:"warnings"`
}

// skippedPath is a policy path that got no rule; Covered when other rules
// of its layer already grant its target.
type skippedPath struct {
	Path    string `json:"path"`
	Reason  string `json:"reason"`
	Covered bool   `json:"covered"`
}

func (c *confState) String() string {
	data, _ := json.Marshal(c)
	return string(data)
}

// skippedPaths lists landlock.skipped's paths.
func (c *confState) skippedPaths() []string {
	var out []string
	for _, s := range c.Landlock.Skipped {
		out = append(out, s.Path)
	}
	return out
}

// fullState is `state ID` with the clawrun object, which must be there.
func (r *rtest) fullState(id string) clawState {
	r.t.Helper()
	res := r.ok("state", id)
	var st clawState
	if err := json.Unmarshal([]byte(res.Stdout), &st); err != nil {
		r.t.Fatalf("state output is not JSON: %v\n%s", err, res)
	}
	if st.Clawrun == nil {
		r.t.Fatalf("state of a confined container has no clawrun object:\n%s", res)
	}
	return st
}

// checkEgress checks state's egress: "off" without network_policies; with
// them, the filter enforcing the policy's first generation. A filter that
// is pending, starting, down or failed lets nothing out: with it a test of
// the allowed traffic would show nothing of the policy.
func checkEgress(t *testing.T, c *confState, network bool) {
	t.Helper()
	const filtering = "filtering (generation 1)"
	switch {
	case !network && c.Egress != "off":
		t.Errorf("state: egress %q without network_policies, want off", c.Egress)
	case network && c.Egress != filtering:
		t.Errorf("state: egress %q although the policy has network_policies, want %s", c.Egress, filtering)
	}
}

// hostLandlockABI is the running kernel's Landlock ABI version (0: none).
func hostLandlockABI() int {
	v, _, errno := unix.Syscall(unix.SYS_LANDLOCK_CREATE_RULESET, 0, 0, unix.LANDLOCK_CREATE_RULESET_VERSION)
	if errno != 0 {
		return 0
	}
	return int(v)
}

// --- probe checks ---

// pcheck is one thing to try in a container: cmd is a shell command that
// prints one probe line. policy and base are what it must print with and
// without the policy: a prefix such as "OK" or "ERR EACCES", or several
// separated by "|"; an empty expectation is not checked.
type pcheck struct {
	name   string
	cmd    string
	policy string
	base   string
}

// pc is a check that runs "probe ARGS".
func pc(name, args, policy, base string) pcheck {
	return pcheck{name: name, cmd: "probe " + args, policy: policy, base: base}
}

// checkScript runs every check and prints "@@NAME<TAB>LINE" for each.
func checkScript(checks []pcheck) string {
	var b strings.Builder
	for _, c := range checks {
		fmt.Fprintf(&b, "printf '@@%%s\\t%%s\\n' '%s' \"$( { %s ; } 2>&1 )\"\n", c.name, c.cmd)
	}
	return b.String()
}

// checkResults reads checkScript's output.
func checkResults(out string) map[string]string {
	got := map[string]string{}
	for line := range strings.SplitSeq(out, "\n") {
		if rest, ok := strings.CutPrefix(line, "@@"); ok {
			name, val, _ := strings.Cut(rest, "\t")
			got[name] = val
		}
	}
	return got
}

// matches tells whether a probe line fits an expectation.
func matches(line, want string) bool {
	for alt := range strings.SplitSeq(want, "|") {
		if strings.HasPrefix(line, alt) {
			return true
		}
	}
	return false
}

// verifyChecks compares a run of checkScript with the expectations that
// pick selects (pcheck.policy or pcheck.base).
func verifyChecks(t *testing.T, label, out string, checks []pcheck, pick func(pcheck) string) {
	t.Helper()
	got := checkResults(out)
	for _, c := range checks {
		want := pick(c)
		if want == "" {
			continue
		}
		line, ok := got[c.name]
		switch {
		case !ok:
			t.Errorf("%s: %s (%s): no result in the output:\n%s", label, c.name, c.cmd, out)
		case !matches(line, want):
			t.Errorf("%s: %s (%s): got %q, want %q", label, c.name, c.cmd, line, want)
		}
	}
}

func wantPolicy(c pcheck) string { return c.policy }
func wantBase(c pcheck) string   { return c.base }

// shQuote quotes s for sh.
func shQuote(s string) string {
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

// presetFile reads a built-in policy's YAML from the repository.
func presetFile(t *testing.T, name string) string {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(bundle.RepoRoot(t), "runtime", "policy", "presets", name+".yaml"))
	if err != nil {
		t.Fatal(err)
	}
	return string(data)
}

// writeTemp writes content to a new file in a temp dir and returns its path.
func writeTemp(t *testing.T, name, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// writeFile writes content to path.
func writeFile(t *testing.T, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

// mkdirAll makes a directory and its parents.
func mkdirAll(t *testing.T, path string) {
	t.Helper()
	if err := os.MkdirAll(path, 0o755); err != nil {
		t.Fatal(err)
	}
}

// chmodRootfs changes the mode of a path in the rootfs.
func chmodRootfs(t *testing.T, bundleDir, path string, mode os.FileMode) {
	t.Helper()
	if err := os.Chmod(inRootfs(bundleDir, path), mode); err != nil {
		t.Fatal(err)
	}
}
