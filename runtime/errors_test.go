package runtime

import (
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/containerd/errdefs"
	"github.com/opencontainers/cgroups"
	"github.com/opencontainers/runc/libcontainer"
	"github.com/opencontainers/runc/libcontainer/configs"
	"github.com/opencontainers/runtime-spec/specs-go"
)

// kindCase is one failing call, the kind its error must have, and the
// words its message must keep (runc's, where callers match them).
type kindCase struct {
	name string
	call func() error
	kind error
	text string
}

func checkKinds(t *testing.T, cases []kindCase) {
	t.Helper()
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.call()
			if err == nil {
				t.Fatal("no error")
			}
			if !errors.Is(err, tc.kind) {
				t.Errorf("%q is not %v", err, tc.kind)
			}
			for _, other := range kinds {
				if other != tc.kind && errors.Is(err, other) {
					t.Errorf("%q is %v as well", err, other)
				}
			}
			if !strings.Contains(err.Error(), tc.text) {
				t.Errorf("%q does not say %q", err, tc.text)
			}
		})
	}
}

func newTestRuntime(t *testing.T) *Runtime {
	t.Helper()
	r, err := New(t.TempDir(), false, nil)
	if err != nil {
		t.Fatal(err)
	}
	// No floor and no config file of the host's.
	r.Policy = PolicyOptions{ConfigFile: filepath.Join(t.TempDir(), "none.yaml")}
	return r
}

// TestErrorKindsNoContainer: every operation on a container that does not
// exist fails as errdefs.ErrNotFound, in runc's words.
func TestErrorKindsNoContainer(t *testing.T) {
	r := newTestRuntime(t)
	const id = "no-such-container"
	const text = "container does not exist"
	checkKinds(t, []kindCase{
		{"start", func() error { return r.Start(id) }, errdefs.ErrNotFound, text},
		{"kill", func() error { return r.Kill(id, "KILL", false) }, errdefs.ErrNotFound, text},
		{"delete", func() error { return r.Delete(id, false) }, errdefs.ErrNotFound, text},
		{"pause", func() error { return r.Pause(id) }, errdefs.ErrNotFound, text},
		{"resume", func() error { return r.Resume(id) }, errdefs.ErrNotFound, text},
		{"ps", func() error { _, err := r.Processes(id); return err }, errdefs.ErrNotFound, text},
		{"state", func() error { _, err := r.State(id); return err }, errdefs.ErrNotFound, text},
		{"exec", func() error { _, err := r.Exec(id, ExecOptions{Args: []string{"true"}}); return err }, errdefs.ErrNotFound, text},
		{"update", func() error { return r.Update(id, NewUpdateOptions()) }, errdefs.ErrNotFound, text},
		{"events", func() error { _, err := r.Stats(id); return err }, errdefs.ErrNotFound, text},
		{"audit", func() error { _, _, err := r.AuditLog(id); return err }, errdefs.ErrNotFound, text},
		{"network policy", func() error { _, err := r.ApplyNetworkPolicy(id, "p", nil); return err }, errdefs.ErrNotFound, text},
	})
}

// TestErrorKindsBadInput: a bad id, root, signal, bundle, spec or policy
// is errdefs.ErrInvalidArgument, and nothing is created.
func TestErrorKindsBadInput(t *testing.T) {
	r := newTestRuntime(t)
	noConfig := t.TempDir()
	noProcess := bundleWith(t, func(s *specs.Spec) { s.Process = nil })
	badPolicy := bundleWith(t, func(s *specs.Spec) {
		s.Annotations = map[string]string{AnnotationPrefix + "policy": "../agent-default"}
	})
	create := func(bundle string) func() error {
		return func() error { return r.Create(CreateOptions{ID: "c1", Bundle: bundle}) }
	}
	keepWorkdir(t)
	checkKinds(t, []kindCase{
		{"empty id", func() error { return r.Start("") }, errdefs.ErrInvalidArgument, "container id cannot be empty"},
		{"bad id", func() error { return r.Start("../x") }, errdefs.ErrInvalidArgument, "invalid container ID format"},
		{"root /", func() error { _, err := New("/", false, nil); return err }, errdefs.ErrInvalidArgument, "--root must not be /"},
		{"bad signal", func() error { _, err := ParseSignal("NOSUCH"); return err }, errdefs.ErrInvalidArgument, `unknown signal "NOSUCH"`},
		{"no config.json", create(noConfig), errdefs.ErrInvalidArgument, "JSON specification file"},
		{"no process", create(noProcess), errdefs.ErrInvalidArgument, "process property must not be empty"},
		{"bad policy annotation", create(badPolicy), errdefs.ErrInvalidArgument, `invalid policy name "../agent-default"`},
	})
	if !errors.Is(r.Delete("", false), ErrEmptyID) {
		t.Error("an empty id is no longer ErrEmptyID")
	}
	if entries, _ := os.ReadDir(r.Root); len(entries) != 0 {
		t.Errorf("a refused create left %d entries in the root", len(entries))
	}
}

// TestErrorKindsState: an operation the container's state does not allow
// is errdefs.ErrFailedPrecondition; a taken id is errdefs.ErrAlreadyExists.
func TestErrorKindsState(t *testing.T) {
	r := newTestRuntime(t)
	stopped := fakeContainer(t, r.Root, "stopped", 0)
	sleeper := exec.Command("sleep", "60")
	if err := sleeper.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = sleeper.Process.Kill(); _ = sleeper.Wait() })
	running := fakeContainer(t, r.Root, "running", sleeper.Process.Pid)
	taken := bundleWith(t, func(*specs.Spec) {})
	keepWorkdir(t)
	checkKinds(t, []kindCase{
		{"start a stopped container", func() error { return r.Start(stopped) }, errdefs.ErrFailedPrecondition, "cannot start a container that has stopped"},
		{"start a running container", func() error { return r.Start(running) }, errdefs.ErrFailedPrecondition, "cannot start an already running container"},
		{"delete a running container", func() error { return r.Delete(running, false) }, errdefs.ErrFailedPrecondition, "cannot delete container running that is not stopped: running (use --force)"},
		{"exec in a stopped container", func() error { _, err := r.Exec(stopped, ExecOptions{Args: []string{"true"}}); return err },
			errdefs.ErrFailedPrecondition, "cannot exec in a stopped container"},
		{"kill a stopped container", func() error { return r.Kill(stopped, "TERM", false) }, errdefs.ErrFailedPrecondition, "container not running"},
		{"events of a stopped container", func() error { _, err := r.Stats(stopped); return err },
			errdefs.ErrFailedPrecondition, "container with id stopped is not running"},
		{"create with a taken id", func() error { return r.Create(CreateOptions{ID: running, Bundle: taken}) },
			errdefs.ErrAlreadyExists, "container with given ID already exists"},
	})
	if st, err := r.State(running); err != nil || st.Status != "running" {
		t.Errorf("the running container after the refusals: %+v, %v", st, err)
	}
}

// bundleWith writes a bundle whose config.json is a minimal spec, edited.
func bundleWith(t *testing.T, edit func(*specs.Spec)) string {
	t.Helper()
	dir := t.TempDir()
	if err := os.Mkdir(filepath.Join(dir, "rootfs"), 0o755); err != nil {
		t.Fatal(err)
	}
	s := &specs.Spec{
		Version: specs.Version,
		Root:    &specs.Root{Path: "rootfs"},
		Process: &specs.Process{Args: []string{"/bin/true"}, Cwd: "/"},
		Mounts:  []specs.Mount{{Destination: "/proc", Type: "proc", Source: "proc"}},
		Linux:   &specs.Linux{Namespaces: []specs.LinuxNamespace{{Type: specs.PIDNamespace}, {Type: specs.MountNamespace}}},
	}
	edit(s)
	data, err := json.Marshal(s)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, SpecConfig), data, 0o644); err != nil {
		t.Fatal(err)
	}
	return dir
}

// keepWorkdir restores the working directory that create changes to the
// bundle's.
func keepWorkdir(t *testing.T) {
	t.Helper()
	wd, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.Chdir(wd) })
}

// fakeContainer writes the libcontainer state of a container whose init
// is pid (0: none, a stopped container), in a cgroup that does not exist:
// enough for the runtime to load it and read its status, and nothing to
// signal or remove.
func fakeContainer(t *testing.T, root, id string, pid int) string {
	t.Helper()
	st := libcontainer.State{BaseState: libcontainer.BaseState{
		ID:      id,
		Created: time.Now(),
		Config: configs.Config{
			Rootfs:     "/nonexistent",
			Namespaces: configs.Namespaces{{Type: configs.NEWPID}},
			Cgroups:    &cgroups.Cgroup{Path: "/clawrun-unit-test-none/" + id, Resources: &cgroups.Resources{}},
		},
	}}
	if pid != 0 {
		st.InitProcessPid, st.InitProcessStartTime = pid, startTime(t, pid)
	}
	dir := filepath.Join(root, id)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	data, err := json.Marshal(st)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "state.json"), data, 0o600); err != nil {
		t.Fatal(err)
	}
	return id
}

// startTime is field 22 of /proc/pid/stat.
func startTime(t *testing.T, pid int) uint64 {
	t.Helper()
	data, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		t.Fatal(err)
	}
	fields := strings.Fields(string(data[strings.LastIndexByte(string(data), ')')+2:]))
	n, err := strconv.ParseUint(fields[19], 10, 64)
	if err != nil {
		t.Fatal(err)
	}
	return n
}
