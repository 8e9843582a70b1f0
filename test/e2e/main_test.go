package e2e

import (
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"
)

// env is what the tests were given: the tools setup.sh built and the
// clawrun binaries under test.
type env struct {
	tools   string // $E2E_TOOLS: bin/ (daemons, clients) and images/
	binDir  string // $CLAWRUN_BIN: clawrun and containerd-shim-clawrun-v2
	clawrun string
	repo    string // the repository's root (contrib/)
	work    string // this run's private directory (daemons' state, configs)
}

var (
	theEnv    env
	envErr    string // why the tests cannot run here ("" if they can)
	cleanupMu sync.Mutex
	cleanups  []func() // run by TestMain after every test, last first
)

// atExit registers a package-level cleanup (shared fixtures).
func atExit(f func()) {
	cleanupMu.Lock()
	defer cleanupMu.Unlock()
	cleanups = append(cleanups, f)
}

func TestMain(m *testing.M) {
	envErr = setupEnv()
	// Directories the front-ends make outside the private dirs (the runc
	// shim's default root, ctr's fifos, CNI's state): removed at the end
	// if they were not there before and hold nothing.
	var newDirs []string
	for _, d := range hostDirs {
		if !exists(d) {
			newDirs = append(newDirs, d)
		}
	}
	cgroups := newCgroupParents()
	sysctls := snapshotSysctls()
	code := m.Run()
	cleanupMu.Lock()
	for i := len(cleanups) - 1; i >= 0; i-- {
		cleanups[i]()
	}
	cleanupMu.Unlock()
	removeCgroupParents(cgroups)
	restoreSysctls(sysctls)
	for _, d := range newDirs {
		if left := removeEmptyTree(d); len(left) > 0 {
			fmt.Fprintf(os.Stderr, "e2e: left in %s: %v\n", d, left)
		}
	}
	if theEnv.work != "" && os.Getenv("E2E_KEEP") == "" {
		unmountUnder(theEnv.work)
		if err := os.RemoveAll(theEnv.work); err != nil {
			fmt.Fprintf(os.Stderr, "e2e: removing %s: %v\n", theEnv.work, err)
		}
	}
	os.Exit(code)
}

func setupEnv() string {
	_, file, _, _ := runtime.Caller(0)
	theEnv.repo = filepath.Clean(filepath.Join(filepath.Dir(file), "..", ".."))
	if runtime.GOOS != "linux" || os.Geteuid() != 0 {
		return "the end-to-end tests run as root on Linux"
	}
	theEnv.tools = os.Getenv("E2E_TOOLS")
	if theEnv.tools == "" {
		return "E2E_TOOLS is not set: run test/e2e/setup.sh and export the dir it prints"
	}
	bin := os.Getenv("CLAWRUN_BIN")
	if bin == "" {
		bin = filepath.Join(theEnv.repo, "bin")
	}
	bin, _ = filepath.Abs(bin)
	theEnv.binDir = bin
	theEnv.clawrun = filepath.Join(bin, "clawrun")
	for _, f := range []string{theEnv.clawrun, filepath.Join(bin, "containerd-shim-clawrun-v2")} {
		if !isExecutable(f) {
			return fmt.Sprintf("%s is missing (CLAWRUN_BIN=%s): run make build", f, bin)
		}
	}
	// Short: socket paths (108 bytes at most) live under it.
	work, err := os.MkdirTemp("/tmp", "cle2e-")
	if err != nil {
		return err.Error()
	}
	theEnv.work = work
	return ""
}

// need fails t unless the environment and the named tools (in
// $E2E_TOOLS/bin, or absolute paths) are there.
func need(t *testing.T, tools ...string) *env {
	t.Helper()
	if envErr != "" {
		t.Fatal(envErr)
	}
	var missing []string
	for _, tool := range tools {
		if !isExecutable(toolPath(tool)) {
			missing = append(missing, toolPath(tool))
		}
	}
	if len(missing) > 0 {
		t.Fatalf("missing %s (run test/e2e/setup.sh with E2E_TOOLS=%s)", strings.Join(missing, ", "), theEnv.tools)
	}
	return &theEnv
}

func toolPath(tool string) string {
	if filepath.IsAbs(tool) {
		return tool
	}
	return filepath.Join(theEnv.tools, "bin", tool)
}

func (e *env) image(name string) string { return filepath.Join(e.tools, "images", name) }

func isExecutable(path string) bool {
	st, err := os.Stat(path)
	return err == nil && st.Mode().IsRegular() && st.Mode()&0o111 != 0
}

// privateDir makes a directory of this run named after the test.
func privateDir(t *testing.T, name string) string {
	t.Helper()
	dir := filepath.Join(theEnv.work, name)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	return dir
}

// pathEnv is an explicit PATH: the given dirs first, then the system's.
func pathEnv(dirs ...string) string {
	return "PATH=" + strings.Join(append(dirs, "/usr/local/sbin", "/usr/sbin", "/usr/bin", "/sbin", "/bin"), ":")
}

// step logs what a test is doing, with the time since it started.
func step(t *testing.T, start time.Time, format string, args ...any) {
	t.Helper()
	t.Logf("[%5.1fs] %s", time.Since(start).Seconds(), fmt.Sprintf(format, args...))
}

// leftovers lists processes whose command line mentions dir: what a test
// started (daemons, shims, egress filters) and must have stopped.
func leftovers(dir string) []string {
	entries, _ := os.ReadDir("/proc")
	var out []string
	self := os.Getpid()
	for _, e := range entries {
		pid := 0
		if _, err := fmt.Sscanf(e.Name(), "%d", &pid); err != nil || pid == self {
			continue
		}
		data, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err != nil || len(data) == 0 {
			continue
		}
		cmd := strings.ReplaceAll(strings.TrimRight(string(data), "\x00"), "\x00", " ")
		if strings.Contains(cmd, dir) {
			out = append(out, fmt.Sprintf("%d %s", pid, cmd))
		}
	}
	sort.Strings(out)
	return out
}
