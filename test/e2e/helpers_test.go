package e2e

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// result is a finished command.
type result struct {
	cmd    string
	stdout string
	stderr string
	code   int // exit status; -1 if it did not run or timed out
	err    error
}

func (r result) String() string {
	return fmt.Sprintf("%s: exit %d (%v)\nstdout: %s\nstderr: %s", r.cmd, r.code, r.err, r.stdout, r.stderr)
}

// cmdOpts are how a command runs: its environment (nil: the test's) and
// its standard input.
type cmdOpts struct {
	env     []string
	stdin   string
	timeout time.Duration
}

// runIn runs a command with a bound on its time; its process group is
// killed on timeout.
func runIn(o cmdOpts, name string, args ...string) result {
	if o.timeout == 0 {
		o.timeout = time.Minute
	}
	ctx, cancel := context.WithTimeout(context.Background(), o.timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = 5 * time.Second
	if o.env != nil {
		cmd.Env = o.env
	}
	if o.stdin != "" {
		cmd.Stdin = strings.NewReader(o.stdin)
	}
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	r := result{cmd: filepath.Base(name) + " " + strings.Join(args, " "), stdout: stdout.String(), stderr: stderr.String(), code: -1, err: err}
	if cmd.ProcessState != nil {
		r.code = cmd.ProcessState.ExitCode()
	}
	if ctx.Err() != nil {
		r.err = fmt.Errorf("timed out after %v", o.timeout)
		r.code = -1
	}
	return r
}

// run runs a host command (a minute at most) with the test's environment.
func run(name string, args ...string) result { return runIn(cmdOpts{}, name, args...) }

// must fails the test unless the command exits 0; it returns stdout.
func must(t *testing.T, r result) string {
	t.Helper()
	if r.code != 0 {
		t.Fatalf("%v", r)
	}
	return r.stdout
}

// daemon is a background process of a test, stopped by its pid.
type daemon struct {
	name string
	cmd  *exec.Cmd
	log  string
	done chan struct{}
}

// startDaemon starts a daemon with its output in logFile.
func startDaemon(t *testing.T, name, logFile string, envv []string, bin string, args ...string) *daemon {
	t.Helper()
	f, err := os.OpenFile(logFile, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	cmd := exec.Command(bin, args...)
	cmd.Env = envv
	cmd.Stdout, cmd.Stderr = f, f
	// Its own process group, so that the terminal's signals do not reach
	// it; it is still stopped by its pid only.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := startOnSpawner(cmd); err != nil {
		t.Fatalf("starting %s: %v", name, err)
	}
	d := &daemon{name: name, cmd: cmd, log: logFile, done: make(chan struct{})}
	go func() { _ = cmd.Wait(); close(d.done) }()
	return d
}

func (d *daemon) running() bool {
	select {
	case <-d.done:
		return false
	default:
		return true
	}
}

// stop sends SIGTERM, then SIGKILL after grace.
func (d *daemon) stop(grace time.Duration) error {
	if !d.running() {
		return nil
	}
	_ = d.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-d.done:
		return nil
	case <-time.After(grace):
	}
	_ = d.cmd.Process.Kill()
	select {
	case <-d.done:
	case <-time.After(5 * time.Second):
	}
	return fmt.Errorf("%s (pid %d) did not stop within %v: killed", d.name, d.cmd.Process.Pid, grace)
}

// logTail is the end of a daemon's log, for failure messages.
func (d *daemon) logTail(n int) string {
	data, _ := os.ReadFile(d.log)
	lines := strings.Split(strings.TrimRight(string(data), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// waitSocket waits until a unix socket accepts connections.
func waitSocket(t *testing.T, d *daemon, sock string, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		if c, err := net.DialTimeout("unix", sock, time.Second); err == nil {
			c.Close()
			return
		}
		if d != nil && !d.running() {
			t.Fatalf("%s exited before it listened on %s:\n%s", d.name, sock, d.logTail(30))
		}
		time.Sleep(100 * time.Millisecond)
	}
	tail := ""
	if d != nil {
		tail = d.logTail(30)
	}
	t.Fatalf("%s did not listen within %v:\n%s", sock, timeout, tail)
}

// waitFor polls cond until it holds or timeout passes.
func waitFor(timeout time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(timeout)
	for {
		if cond() {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// killLeftovers stops the processes whose command line mentions dir (a
// test's private dir: shims and egress filters it caused to start), by
// pid, and reports them: after a clean shutdown there are none.
func killLeftovers(t *testing.T, dir string) {
	t.Helper()
	procs := leftovers(dir)
	if len(procs) == 0 {
		return
	}
	t.Errorf("processes left running after the test (killed now):\n%s", strings.Join(procs, "\n"))
	for _, p := range procs {
		var pid int
		if _, err := fmt.Sscanf(p, "%d", &pid); err == nil && pid > 1 {
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
	}
}

// unmountUnder detaches every mount below dir, deepest first (what a
// daemon killed mid-way leaves: overlays, netns and shm bind mounts).
func unmountUnder(dir string) {
	points := mountsUnder(dir)
	sort.Slice(points, func(i, j int) bool { return len(points[i]) > len(points[j]) })
	for _, p := range points {
		_ = unix.Unmount(p, unix.MNT_DETACH)
	}
}

// mountsUnder lists the mount points at or below dir.
func mountsUnder(dir string) []string {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return nil
	}
	defer f.Close()
	var points []string
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) < 5 {
			continue
		}
		mp := unescapeMount(fields[4])
		if mp == dir || strings.HasPrefix(mp, dir+"/") {
			points = append(points, mp)
		}
	}
	return points
}

func unescapeMount(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			var v int
			if _, err := fmt.Sscanf(s[i+1:i+4], "%o", &v); err == nil {
				b.WriteByte(byte(v))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// writeFile writes a file or fails the test.
func writeFile(t *testing.T, path, content string, mode os.FileMode) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(content), mode); err != nil {
		t.Fatal(err)
	}
}

// readRepoFile reads a file of the repository (contrib/...).
func readRepoFile(t *testing.T, rel string) string {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(theEnv.repo, rel))
	if err != nil {
		t.Fatal(err)
	}
	return string(data)
}

// linkExists says whether a network interface exists on the host.
func linkExists(name string) bool {
	_, err := net.InterfaceByName(name)
	return err == nil
}

// deleteLink deletes a host interface (bridges the daemons leave behind).
func deleteLink(name string) {
	if linkExists(name) {
		_ = run("ip", "link", "del", name)
	}
}

func exists(path string) bool {
	_, err := os.Stat(path)
	return !errors.Is(err, os.ErrNotExist)
}

// spawn runs functions on one OS thread that lives as long as the test
// binary. A child's Pdeathsig fires when the THREAD that forked it exits,
// and Go ends threads at any time: every thread a goroutine leaves locked
// (as those that enter the fake internet's network namespace do) is
// discarded. A daemon forked from such a thread was killed at random.
var spawn = func() chan func() {
	ch := make(chan func())
	go func() {
		runtime.LockOSThread() // never unlocked: this thread never exits
		for f := range ch {
			f()
		}
	}()
	return ch
}()

// startOnSpawner starts cmd from the spawner thread.
func startOnSpawner(cmd *exec.Cmd) error {
	errc := make(chan error, 1)
	spawn <- func() { errc <- cmd.Start() }
	return <-errc
}
