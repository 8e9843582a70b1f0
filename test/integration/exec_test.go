package integration

import (
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/clawrun/clawrun/test/bundle"
)

// TestExec runs processes in one running container with each exec option,
// each against a baseline without it so the option is what made the change.
func TestExec(t *testing.T) {
	t.Parallel()
	r := newRuntime(t)
	b := r.bundle(bundle.Shell(sleeper), func(s *specs.Spec) {
		s.Process.NoNewPrivileges = false // so --no-new-privs has something to change
	})
	id := newID(t)
	init := r.runDetached(id, b)

	exec := func(args ...string) result {
		t.Helper()
		return r.run(append([]string{"exec"}, args...)...)
	}
	// Subtests share the container: sequential.

	t.Run("foreground", func(t *testing.T) {
		res := exec(id, "sh", "-c", "echo out; echo err >&2; exit 3")
		if res.Code != 3 || res.Stdout != "out\n" || !strings.Contains(res.Stderr, "err") {
			t.Fatalf("want exit 3, stdout \"out\\n\", stderr err:\n%s", res)
		}
		if res := exec(id, "hostname"); res.Code != 0 || res.Stdout != "test\n" {
			t.Fatalf("exec does not run in the container's uts namespace:\n%s", res)
		}
	})

	t.Run("env", func(t *testing.T) {
		res := exec("-e", "FOO=bar", "-e", "BAZ=qux", id, "sh", "-c", `echo "$FOO-$BAZ-$PATH"`)
		if res.Code != 0 || !strings.HasPrefix(res.Stdout, "bar-qux-/") {
			t.Fatalf("want FOO, BAZ and the spec's PATH:\n%s", res)
		}
	})

	t.Run("cwd", func(t *testing.T) {
		if res := exec(id, "pwd"); res.Stdout != "/\n" {
			t.Fatalf("baseline cwd:\n%s", res)
		}
		if res := exec("--cwd", "/tmp", id, "pwd"); res.Code != 0 || res.Stdout != "/tmp\n" {
			t.Fatalf("want /tmp:\n%s", res)
		}
	})

	t.Run("user", func(t *testing.T) {
		if res := exec(id, "id", "-u"); res.Stdout != "0\n" {
			t.Fatalf("baseline uid:\n%s", res)
		}
		res := exec("-u", "1000:1000", id, "sh", "-c", "id -u; id -g")
		if res.Code != 0 || res.Stdout != "1000\n1000\n" {
			t.Fatalf("want uid and gid 1000:\n%s", res)
		}
	})

	t.Run("cap", func(t *testing.T) {
		const sysAdmin = 1 << unix.CAP_SYS_ADMIN
		res := exec(id, "cat", "/proc/self/status")
		if res.Code != 0 || capEff(t, res.Stdout)&sysAdmin != 0 {
			t.Fatalf("baseline has CAP_SYS_ADMIN (the default spec does not grant it):\n%s", res)
		}
		res = exec("--cap", "CAP_SYS_ADMIN", id, "cat", "/proc/self/status")
		if res.Code != 0 || capEff(t, res.Stdout)&sysAdmin == 0 {
			t.Fatalf("--cap CAP_SYS_ADMIN not effective:\n%s", res)
		}
	})

	t.Run("no-new-privs", func(t *testing.T) {
		nnp := regexp.MustCompile(`(?m)^NoNewPrivs:\s+(\d)$`)
		res := exec(id, "cat", "/proc/self/status")
		if m := nnp.FindStringSubmatch(res.Stdout); m == nil || m[1] != "0" {
			t.Fatalf("baseline NoNewPrivs should be 0 (spec has noNewPrivileges false):\n%s", res)
		}
		res = exec("--no-new-privs", id, "cat", "/proc/self/status")
		if m := nnp.FindStringSubmatch(res.Stdout); res.Code != 0 || m == nil || m[1] != "1" {
			t.Fatalf("--no-new-privs: want NoNewPrivs 1:\n%s", res)
		}
	})

	t.Run("process-json", func(t *testing.T) {
		p := specs.Process{
			Args: []string{"sh", "-c", `echo "$PJ $(pwd) $(id -u):$(id -g)"; exit 5`},
			Env:  []string{"PATH=/bin:/usr/bin", "PJ=fromjson"},
			Cwd:  "/tmp",
			User: specs.User{UID: 1000, GID: 1000},
		}
		data, err := json.Marshal(p)
		if err != nil {
			t.Fatal(err)
		}
		path := filepath.Join(t.TempDir(), "process.json")
		if err := os.WriteFile(path, data, 0o644); err != nil {
			t.Fatal(err)
		}
		res := exec("-p", path, id)
		if res.Code != 5 || res.Stdout != "fromjson /tmp 1000:1000\n" {
			t.Fatalf("want exit 5 and the process.json's env, cwd and user:\n%s", res)
		}
		if res := exec("--process", path, id); res.Code != 5 {
			t.Fatalf("--process: want exit 5:\n%s", res)
		}
	})

	t.Run("detach-pid-file", func(t *testing.T) {
		pidFile := filepath.Join(t.TempDir(), "exec.pid")
		start := time.Now()
		res := exec("-d", "--pid-file", pidFile, id, "sleep", "1000")
		if res.Code != 0 {
			t.Fatalf("exec -d:\n%s", res)
		}
		if d := time.Since(start); d > 10*time.Second {
			t.Fatalf("exec -d took %v: did not detach", d)
		}
		pid := atoiFile(t, pidFile)
		if !pidAlive(pid) {
			t.Fatalf("exec'd pid %d not alive", pid)
		}
		// It is in the container: same pid namespace as init.
		nsInit, err1 := os.Readlink("/proc/" + strconv.Itoa(init.Pid) + "/ns/pid")
		nsExec, err2 := os.Readlink("/proc/" + strconv.Itoa(pid) + "/ns/pid")
		if err1 != nil || err2 != nil || nsInit != nsExec {
			t.Fatalf("exec'd process pid ns %q (%v), init's %q (%v)", nsExec, err2, nsInit, err1)
		}
		if pids := psJSON(t, r, id); !slices.Contains(pids, pid) {
			t.Fatalf("ps does not list the exec'd pid %d: %v", pid, pids)
		}
		if err := unix.Kill(pid, unix.SIGKILL); err != nil {
			t.Fatal(err)
		}
	})

	t.Run("tty-console-socket", func(t *testing.T) {
		sock, ch := consoleSocket(t)
		res := exec("-d", "-t", "--console-socket", sock, id, "sh")
		if res.Code != 0 {
			t.Fatalf("exec -d -t --console-socket:\n%s", res)
		}
		pty := recvConsole(t, ch)
		pty.send(t, "tty; echo XX$(hostname)YY\n")
		if got := pty.expect(t, regexp.MustCompile(`/dev/pts/\d+`)); got != "/dev/pts/0" {
			t.Errorf("tty says %s, want /dev/pts/0 (the container's own devpts)", got)
		}
		pty.expect(t, regexp.MustCompile(`XXtestYY`))
		pty.send(t, "exit\n")
	})

	// The container is untouched by all of the above.
	if st := r.state(id); st.Status != "running" || st.Pid != init.Pid {
		t.Fatalf("after the execs: %+v", st)
	}
}

// TestCreateConsoleSocket: a terminal init gets its pty master sent to the socket at create.
func TestCreateConsoleSocket(t *testing.T) {
	t.Parallel()
	r := newRuntime(t)
	b := r.bundle(bundle.Args("sh"), func(s *specs.Spec) { s.Process.Terminal = true })
	id := newID(t)
	sock, ch := consoleSocket(t)
	r.create(id, b, "--console-socket", sock)
	pty := recvConsole(t, ch)
	r.ok("start", id)
	r.waitStatus(id, "running")
	pty.send(t, "tty; echo XX$(hostname)YY\n")
	if got := pty.expect(t, regexp.MustCompile(`/dev/pts/\d+`)); got != "/dev/pts/0" {
		t.Errorf("tty says %s, want /dev/pts/0", got)
	}
	pty.expect(t, regexp.MustCompile(`XXtestYY`))
	// The shell reads its terminal: exiting it stops the container.
	pty.send(t, "exit 0\n")
	r.waitStatus(id, "stopped")
}

// TestConsoleSocketMisuse: runc refuses a console socket it could not use.
func TestConsoleSocketMisuse(t *testing.T) {
	t.Parallel()
	r := newRuntime(t)
	id := newID(t)
	r.track(id)
	b := r.bundle(bundle.Args("sh"), func(s *specs.Spec) { s.Process.Terminal = true })
	// A terminal without a console socket cannot be detached.
	if res := r.run("create", "--bundle", b, id); res.Code == 0 {
		t.Fatalf("create of a terminal container without --console-socket succeeded:\n%s", res)
	}
	r.assertGone(id, b)
}
