package integration

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/clawrun/clawrun/test/bundle"
)

// cmdTimeout bounds every runtime invocation that is expected to return.
const cmdTimeout = 30 * time.Second

// result is one finished runtime invocation.
type result struct {
	argv       []string
	Stdout     string
	Stderr     string
	Log        string // what the runtime appended to its --log file
	Code       int    // exit code; -1 when killed by a signal
	StdoutPath string // the runtime's stdout file: detached containers inherit it
	StderrPath string // the runtime's stderr file, which detached containers inherit too
}

func (r result) String() string {
	return fmt.Sprintf("%q: exit %d\nstdout: %q\nstderr: %q\nlog: %q", r.argv, r.Code, r.Stdout, r.Stderr, r.Log)
}

// runOpts tunes one invocation.
type runOpts struct {
	Stdin   string
	Files   []*os.File // become fds 3, 4, ... of the runtime (or of Prefix)
	Env     []string   // added to the runtime's environment
	Dir     string     // working directory
	Prefix  []string   // wrapper run instead, with the runtime's argv appended
	Timeout time.Duration
}

// rtest is the runtime under test with a private --root and --log.
type rtest struct {
	t       *testing.T
	bin     string
	root    string
	logPath string
	tmp     string
}

// requireReady fails unless $CLAWRUN names the runtime and we are root.
func requireReady(t *testing.T) string {
	t.Helper()
	bin := os.Getenv("CLAWRUN")
	if bin == "" {
		t.Fatal("CLAWRUN is not set: point it at the runtime binary under test (e.g. CLAWRUN=$PWD/bin/clawrun, or bin/runc-1.5.2)")
	}
	if os.Geteuid() != 0 {
		t.Fatal("integration tests run real containers and need root")
	}
	return bin
}

func newRuntime(t *testing.T) *rtest {
	t.Helper()
	bin := requireReady(t)
	abs, err := filepath.Abs(bin)
	if err != nil {
		t.Fatalf("CLAWRUN=%s: %v", bin, err)
	}
	if st, err := os.Stat(abs); err != nil || st.IsDir() || st.Mode()&0o111 == 0 {
		t.Fatalf("CLAWRUN=%s is not an executable file (%v)", bin, err)
	}
	r := &rtest{t: t, bin: abs, root: t.TempDir(), tmp: t.TempDir()}
	r.logPath = filepath.Join(r.tmp, "runtime.log")
	return r
}

// isClawrun tells whether clawrun-specific behaviour may be asserted.
func (r *rtest) isClawrun() bool {
	return strings.Contains(filepath.Base(r.bin), "clawrun")
}

// bundle makes a busybox bundle whose spec comes from this runtime.
func (r *rtest) bundle(edits ...func(*specs.Spec)) string {
	r.t.Helper()
	return bundle.New(r.t, r.bin, edits...)
}

// runtimeEnv is the test's environment without variables that change what a
// runtime does (socket activation, sd_notify).
func runtimeEnv(extra []string) []string {
	var env []string
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		switch k {
		case "LISTEN_FDS", "LISTEN_PID", "LISTEN_FDNAMES", "NOTIFY_SOCKET":
			continue
		}
		env = append(env, kv)
	}
	return append(env, extra...)
}

// proc is a started runtime invocation.
type proc struct {
	r          *rtest
	cmd        *exec.Cmd
	argv       []string
	cancel     context.CancelFunc
	ctx        context.Context
	stdoutPath string
	stderrPath string
	logOff     int64
	done       chan struct{}
	waitErr    error
}

// start runs the runtime with the global flags --root, --log and
// --log-format json. Stdio are plain files (never pipes), so detached
// containers that inherit them cannot keep the invocation from finishing.
func (r *rtest) start(o runOpts, args ...string) (*proc, error) {
	timeout := o.Timeout
	if timeout == 0 {
		timeout = cmdTimeout
	}
	argv := append([]string{"--root", r.root, "--log", r.logPath, "--log-format", "json"}, args...)
	full := append(append(slices.Clone(o.Prefix), r.bin), argv...)
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	cmd := exec.CommandContext(ctx, full[0], full[1:]...)
	cmd.Env = runtimeEnv(o.Env)
	cmd.Dir = o.Dir
	cmd.ExtraFiles = o.Files
	cmd.WaitDelay = 5 * time.Second

	var stdin *os.File
	var err error
	if o.Stdin != "" {
		p := filepath.Join(r.tmp, fmt.Sprintf("stdin-%d", idSeq.Add(1)))
		if err = os.WriteFile(p, []byte(o.Stdin), 0o600); err == nil {
			stdin, err = os.Open(p)
		}
	} else {
		stdin, err = os.Open(os.DevNull)
	}
	if err != nil {
		cancel()
		return nil, err
	}
	defer stdin.Close()
	stdout, err := os.CreateTemp(r.tmp, "stdout-*")
	if err != nil {
		cancel()
		return nil, err
	}
	defer stdout.Close()
	stderr, err := os.CreateTemp(r.tmp, "stderr-*")
	if err != nil {
		cancel()
		return nil, err
	}
	defer stderr.Close()
	cmd.Stdin, cmd.Stdout, cmd.Stderr = stdin, stdout, stderr

	p := &proc{r: r, cmd: cmd, argv: full, cancel: cancel, ctx: ctx,
		stdoutPath: stdout.Name(), stderrPath: stderr.Name(), done: make(chan struct{})}
	if st, err := os.Stat(r.logPath); err == nil {
		p.logOff = st.Size()
	}
	if err := cmd.Start(); err != nil {
		cancel()
		return nil, err
	}
	go func() {
		p.waitErr = cmd.Wait()
		close(p.done)
	}()
	return p, nil
}

// startBG starts a long-running invocation; it is killed at cleanup.
func (r *rtest) startBG(o runOpts, args ...string) *proc {
	r.t.Helper()
	if o.Timeout == 0 {
		o.Timeout = 2 * time.Minute
	}
	p, err := r.start(o, args...)
	if err != nil {
		r.t.Fatalf("start %v: %v", args, err)
	}
	r.t.Cleanup(func() {
		p.cancel()
		<-p.done
	})
	return p
}

// wait waits for p to exit, killing it (and failing the test) after timeout.
func (p *proc) wait(timeout time.Duration) result {
	p.r.t.Helper()
	res, err := p.waitErrOK(timeout)
	if err != nil {
		p.r.t.Fatal(err)
	}
	return res
}

func (p *proc) waitErrOK(timeout time.Duration) (result, error) {
	var timedOut bool
	select {
	case <-p.done:
	case <-p.ctx.Done():
		<-p.done
		timedOut = true
	case <-time.After(timeout):
		p.cancel()
		<-p.done
		timedOut = true
	}
	p.cancel()
	res := p.result()
	if timedOut {
		return res, fmt.Errorf("runtime invocation timed out (killed):\n%s", res)
	}
	var ee *exec.ExitError
	if p.waitErr != nil && !errors.As(p.waitErr, &ee) {
		return res, fmt.Errorf("%q: %v\n%s", p.argv, p.waitErr, res)
	}
	return res, nil
}

func (p *proc) result() result {
	res := result{argv: p.argv, Code: -1, StdoutPath: p.stdoutPath, StderrPath: p.stderrPath}
	if p.cmd.ProcessState != nil {
		res.Code = p.cmd.ProcessState.ExitCode()
	}
	res.Stdout = readFile(p.stdoutPath)
	res.Stderr = readFile(p.stderrPath)
	if data, err := os.ReadFile(p.r.logPath); err == nil && int64(len(data)) >= p.logOff {
		res.Log = string(data[p.logOff:])
	}
	return res
}

// stdout is what the invocation (or a container sharing its stdout) wrote so far.
func (p *proc) stdout() string { return readFile(p.stdoutPath) }

func readFile(path string) string {
	data, _ := os.ReadFile(path)
	return string(data)
}

// runWith runs the runtime and waits for it; a hang fails the test.
func (r *rtest) runWith(o runOpts, args ...string) result {
	r.t.Helper()
	p, err := r.start(o, args...)
	if err != nil {
		r.t.Fatalf("start %v: %v", args, err)
	}
	timeout := o.Timeout
	if timeout == 0 {
		timeout = cmdTimeout
	}
	return p.wait(timeout)
}

func (r *rtest) run(args ...string) result {
	r.t.Helper()
	return r.runWith(runOpts{}, args...)
}

// ok runs the runtime and fails the test unless it exits 0.
func (r *rtest) ok(args ...string) result {
	r.t.Helper()
	res := r.run(args...)
	if res.Code != 0 {
		r.t.Fatalf("expected success:\n%s", res)
	}
	return res
}

var idSeq atomic.Int64

var nonAlnum = regexp.MustCompile(`[^a-z0-9]+`)

// newID is unique across tests and concurrent test processes: the default
// cgroup path is named after the id alone, whatever the --root.
func newID(t *testing.T) string {
	name := nonAlnum.ReplaceAllString(strings.ToLower(t.Name()), "")
	name = strings.TrimPrefix(name, "test")
	if len(name) > 24 {
		name = name[len(name)-24:]
	}
	return fmt.Sprintf("it%d-%s-%d", os.Getpid(), name, idSeq.Add(1))
}

// track force-deletes the container at the end of the test.
func (r *rtest) track(id string) {
	r.t.Cleanup(func() {
		p, err := r.start(runOpts{}, "delete", "-f", id)
		if err != nil {
			r.t.Errorf("cleanup of %s: %v", id, err)
			return
		}
		if res, err := p.waitErrOK(cmdTimeout); err != nil || res.Code != 0 {
			r.t.Errorf("cleanup: delete -f %s failed: %v\n%s", id, err, res)
		}
	})
}

// create creates a container (detached) and registers its cleanup.
func (r *rtest) create(id, bundleDir string, flags ...string) result {
	r.t.Helper()
	r.track(id)
	args := append(append([]string{"create"}, flags...), "--bundle", bundleDir, id)
	return r.ok(args...)
}

// runDetached starts a container with run -d and waits until it is running.
func (r *rtest) runDetached(id, bundleDir string) ctrState {
	r.t.Helper()
	r.track(id)
	r.ok("run", "-d", "--bundle", bundleDir, id)
	return r.waitStatus(id, "running")
}

// ctrState is the OCI state plus runc's owner field, as `state`/`list --format json` print it.
type ctrState struct {
	OCIVersion  string            `json:"ociVersion"`
	ID          string            `json:"id"`
	Pid         int               `json:"pid"`
	Status      string            `json:"status"`
	Bundle      string            `json:"bundle"`
	Rootfs      string            `json:"rootfs"`
	Created     time.Time         `json:"created"`
	Annotations map[string]string `json:"annotations"`
	Owner       string            `json:"owner"`
}

func (r *rtest) state(id string) ctrState {
	r.t.Helper()
	res := r.ok("state", id)
	var st ctrState
	if err := json.Unmarshal([]byte(res.Stdout), &st); err != nil {
		r.t.Fatalf("state output is not JSON: %v\n%s", err, res)
	}
	return st
}

// waitStatus polls state until the status is want.
func (r *rtest) waitStatus(id, want string) ctrState {
	r.t.Helper()
	var st ctrState
	waitFor(r.t, 10*time.Second, "container "+id+" status "+want, func() bool {
		st = r.state(id)
		return st.Status == want
	})
	return st
}

// waitFor polls cond every 20ms until it holds or timeout passes.
func waitFor(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", timeout, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// sleeper is a container that runs until it gets SIGTERM (trapped: an init
// in its own pid namespace ignores signals it has no handler for).
const sleeper = `trap 'echo got-TERM; exit 0' TERM; echo started; while :; do sleep 1000 & wait $!; done`

// --- processes ---

func pidAlive(pid int) bool {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	// The state follows the parenthesised comm; a zombie has exited.
	s := string(data)
	i := strings.LastIndexByte(s, ')')
	return i < 0 || i+2 >= len(s) || s[i+2] != 'Z'
}

// procsInRootfs lists processes whose root or cwd is the bundle's rootfs
// directory, compared by device and inode: a container's root is a bind mount
// of it, and libcontainer starts init with the rootfs as cwd.
func procsInRootfs(t *testing.T, bundleDir string) []int {
	t.Helper()
	var want unix.Stat_t
	if err := unix.Stat(filepath.Join(bundleDir, "rootfs"), &want); err != nil {
		t.Fatalf("stat rootfs: %v", err)
	}
	ents, err := os.ReadDir("/proc")
	if err != nil {
		t.Fatal(err)
	}
	var pids []int
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == os.Getpid() {
			continue
		}
		for _, l := range []string{"root", "cwd"} {
			var st unix.Stat_t
			if unix.Stat(fmt.Sprintf("/proc/%d/%s", pid, l), &st) == nil && st.Dev == want.Dev && st.Ino == want.Ino {
				pids = append(pids, pid)
				break
			}
		}
	}
	return pids
}

// --- cgroups ---

// procCgroupPath is pid's cgroup path for controller from /proc/PID/cgroup
// ("" selects the unified hierarchy) and whether the host is cgroup v2 only.
func procCgroupPath(t *testing.T, pid int, controller string) (path string, v2 bool) {
	t.Helper()
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/cgroup", pid))
	if err != nil {
		t.Fatalf("read cgroup of %d: %v", pid, err)
	}
	_, statErr := os.Stat("/sys/fs/cgroup/cgroup.controllers")
	v2 = statErr == nil
	for line := range strings.SplitSeq(strings.TrimSpace(string(data)), "\n") {
		parts := strings.SplitN(line, ":", 3)
		if len(parts) != 3 {
			continue
		}
		if v2 && parts[0] == "0" && parts[1] == "" {
			return parts[2], true
		}
		if !v2 && slices.Contains(strings.Split(parts[1], ","), controller) {
			return parts[2], false
		}
	}
	t.Fatalf("no %s cgroup for pid %d in %q", controller, pid, data)
	return "", false
}

// cgroupMount is where controller's hierarchy is mounted.
func cgroupMount(t *testing.T, controller string, v2 bool) string {
	t.Helper()
	if v2 {
		return "/sys/fs/cgroup"
	}
	data, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		pre, post, ok := strings.Cut(sc.Text(), " - ")
		if !ok {
			continue
		}
		pf, qf := strings.Fields(pre), strings.Fields(post)
		if len(pf) < 5 || len(qf) < 3 || qf[0] != "cgroup" {
			continue
		}
		if slices.Contains(strings.Split(qf[2], ","), controller) {
			return pf[4]
		}
	}
	t.Fatalf("cgroup v1 controller %s is not mounted", controller)
	return ""
}

// cgroupDirOf is the directory of pid's cgroup for controller.
func cgroupDirOf(t *testing.T, pid int, controller string) string {
	t.Helper()
	p, v2 := procCgroupPath(t, pid, controller)
	return filepath.Join(cgroupMount(t, controller, v2), p)
}

// defaultCgroupDir is where a container without linux.cgroupsPath gets its
// cgroup with the fs driver: a child named after the id of the runtime's own
// cgroup (the runtime is our child, so it shares ours).
func defaultCgroupDir(t *testing.T, controller, id string) string {
	t.Helper()
	return filepath.Join(cgroupDirOf(t, os.Getpid(), controller), id)
}

func readTrim(t *testing.T, path string) string {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("read %s: %v", path, err)
	}
	return strings.TrimSpace(string(data))
}

// --- console socket ---

type recvResult struct {
	f   *os.File
	err error
}

// consoleSocket listens on a unix socket for the pty master that a runtime
// sends with SCM_RIGHTS (--console-socket).
func consoleSocket(t *testing.T) (string, <-chan recvResult) {
	t.Helper()
	// sun_path is 108 bytes: t.TempDir() paths of subtests can be longer.
	dir, err := os.MkdirTemp("", "cs")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	path := filepath.Join(dir, "sock")
	l, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	ch := make(chan recvResult, 1)
	go func() {
		ch <- recvFd(l)
	}()
	return path, ch
}

func recvFd(l *net.UnixListener) recvResult {
	_ = l.SetDeadline(time.Now().Add(cmdTimeout))
	conn, err := l.AcceptUnix()
	if err != nil {
		return recvResult{err: err}
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(cmdTimeout))
	buf := make([]byte, 4096)
	oob := make([]byte, unix.CmsgSpace(4*4))
	n, oobn, _, _, err := conn.ReadMsgUnix(buf, oob)
	if err != nil {
		return recvResult{err: err}
	}
	msgs, err := unix.ParseSocketControlMessage(oob[:oobn])
	if err != nil || len(msgs) != 1 {
		return recvResult{err: fmt.Errorf("control messages %d: %v", len(msgs), err)}
	}
	fds, err := unix.ParseUnixRights(&msgs[0])
	if err != nil || len(fds) != 1 {
		return recvResult{err: fmt.Errorf("fds %v: %v", fds, err)}
	}
	// Non-blocking, so the runtime poller serves reads and Close interrupts them.
	if err := unix.SetNonblock(fds[0], true); err != nil {
		return recvResult{err: err}
	}
	return recvResult{f: os.NewFile(uintptr(fds[0]), string(buf[:n]))}
}

// recvConsole waits for the master that the runtime sent.
func recvConsole(t *testing.T, ch <-chan recvResult) *ptyConn {
	t.Helper()
	select {
	case rr := <-ch:
		if rr.err != nil {
			t.Fatalf("receiving the console fd: %v", rr.err)
		}
		return newPty(t, rr.f)
	case <-time.After(cmdTimeout):
		t.Fatal("no console fd received")
	}
	return nil
}

// ptyConn collects everything read from a pty master.
type ptyConn struct {
	f   *os.File
	mu  sync.Mutex
	buf bytes.Buffer
}

func newPty(t *testing.T, f *os.File) *ptyConn {
	p := &ptyConn{f: f}
	go func() {
		b := make([]byte, 4096)
		for {
			n, err := f.Read(b)
			p.mu.Lock()
			p.buf.Write(b[:n])
			p.mu.Unlock()
			if err != nil {
				return
			}
		}
	}()
	t.Cleanup(func() { f.Close() })
	return p
}

func (p *ptyConn) send(t *testing.T, s string) {
	t.Helper()
	if _, err := p.f.Write([]byte(s)); err != nil {
		t.Fatalf("write to pty: %v", err)
	}
}

func (p *ptyConn) text() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.buf.String()
}

// expect waits until the output matches re and returns the first match.
func (p *ptyConn) expect(t *testing.T, re *regexp.Regexp) string {
	t.Helper()
	var m string
	deadline := time.Now().Add(10 * time.Second)
	for {
		if m = re.FindString(p.text()); m != "" {
			return m
		}
		if time.Now().After(deadline) {
			t.Fatalf("pty output never matched %v; got %q", re, p.text())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// --- assertions ---

// logLine is a logrus JSON log entry.
type logLine struct {
	Level string `json:"level"`
	Msg   string `json:"msg"`
	Time  string `json:"time"`
}

// assertFailure checks a failed invocation: non-zero exit, a message naming
// the cause (one of causes) on stderr, and a logrus-style JSON error line
// with that cause in the --log file.
func assertFailure(t *testing.T, res result, causes ...string) {
	t.Helper()
	if res.Code == 0 {
		t.Fatalf("expected failure:\n%s", res)
	}
	mentions := func(s string) bool {
		for _, c := range causes {
			if strings.Contains(s, c) {
				return true
			}
		}
		return false
	}
	if !mentions(res.Stderr) {
		t.Errorf("stderr does not mention any of %q:\n%s", causes, res)
	}
	var found bool
	for line := range strings.SplitSeq(res.Log, "\n") {
		line = strings.TrimSpace(line)
		if line == "" {
			continue
		}
		var l logLine
		if err := json.Unmarshal([]byte(line), &l); err != nil {
			t.Errorf("log line is not JSON (--log-format json): %q", line)
			continue
		}
		if l.Level != "error" || !mentions(l.Msg) {
			continue
		}
		if _, err := time.Parse(time.RFC3339, l.Time); err != nil {
			t.Errorf("log line time %q is not RFC 3339: %v", l.Time, err)
		}
		found = true
	}
	if !found {
		t.Errorf(`no {"level":"error","msg":...%q...,"time":...} line in the --log file:%s`, causes, res)
	}
}

// assertGone checks that nothing of container id is left: no state under
// --root, no default cgroup, no process in its rootfs.
func (r *rtest) assertGone(id, bundleDir string) {
	r.t.Helper()
	if _, err := os.Lstat(filepath.Join(r.root, id)); !errors.Is(err, os.ErrNotExist) {
		r.t.Errorf("state dir %s left behind (%v)", filepath.Join(r.root, id), err)
	}
	for _, c := range []string{"pids", "memory", "freezer"} {
		d := defaultCgroupDir(r.t, c, id)
		if _, err := os.Stat(d); !errors.Is(err, os.ErrNotExist) {
			r.t.Errorf("cgroup %s left behind (%v)", d, err)
		}
	}
	if bundleDir != "" {
		if pids := procsInRootfs(r.t, bundleDir); len(pids) > 0 {
			r.t.Errorf("processes left in the container's rootfs: %v", pids)
		}
	}
}

// capEff is the CapEff mask of /proc/self/status as printed by the container.
func capEff(t *testing.T, status string) uint64 {
	t.Helper()
	for line := range strings.SplitSeq(status, "\n") {
		if v, ok := strings.CutPrefix(line, "CapEff:"); ok {
			n, err := strconv.ParseUint(strings.TrimSpace(v), 16, 64)
			if err != nil {
				t.Fatalf("CapEff %q: %v", v, err)
			}
			return n
		}
	}
	t.Fatalf("no CapEff in %q", status)
	return 0
}

// signalProc sends sig to the runtime process itself.
func (p *proc) signal(t *testing.T, sig syscall.Signal) {
	t.Helper()
	if err := p.cmd.Process.Signal(sig); err != nil {
		t.Fatalf("signal %v: %v", sig, err)
	}
}
