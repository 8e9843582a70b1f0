package integration

import (
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/opencontainers/runtime-spec/specs-go"

	"github.com/clawrun/clawrun/test/bundle"
)

// TestPolicyExec: exec is no way around a container's policy. Each exec'd
// process goes through the launcher and gets the same Landlock rules,
// seccomp profile, capabilities and no_new_privs as the container's init;
// a terminal session works under it; the runtime's own signals still reach
// the confined init.
func TestPolicyExec(t *testing.T) {
	t.Parallel()
	r := policyRuntime(t)
	b := r.probeBundle(withPolicy("agent-default"), writableKernelFS, addCaps("CAP_NET_RAW"),
		bundle.Shell(sleeper), func(s *specs.Spec) { s.Process.NoNewPrivileges = false })
	prepFS(t, b)
	id := newID(t)
	st, out := r.runDetachedOut(id, b)
	// Subtests share the container: sequential.

	t.Run("filesystem", func(t *testing.T) {
		checks := fsChecks(true)
		res := r.ok("exec", id, "sh", "-c", checkScript(checks))
		verifyChecks(t, "exec under agent-default", res.Stdout, checks, wantPolicy)
	})

	t.Run("seccomp", func(t *testing.T) {
		checks := seccompChecks()
		res := r.ok("exec", id, "sh", "-c", checkScript(checks))
		verifyChecks(t, "exec under agent-default", res.Stdout, checks, wantPolicy)
	})

	// A privileged exec is refused like a privileged container, and
	// leaves the container as it was.
	t.Run("cap-sys-admin-refused", func(t *testing.T) {
		res := r.run("exec", "--cap", "CAP_SYS_ADMIN", id, "probe", "true")
		assertFailure(t, res, "CAP_SYS_ADMIN")
		if strings.Contains(res.Stdout, "OK") {
			t.Errorf("the refused exec ran its command:\n%s", res)
		}
		if res := r.ok("exec", "--cap", "CAP_CHOWN", id, "probe", "true"); res.Stdout != "OK\n" {
			t.Errorf("exec --cap CAP_CHOWN (not refused): %s", res)
		}
	})

	// --no-new-privs cannot be turned off: neither the spec (false here)
	// nor a process.json asking for false wins over the policy.
	t.Run("no-new-privs", func(t *testing.T) {
		nnp := regexp.MustCompile(`(?m)^NoNewPrivs:\s+1$`)
		if res := r.ok("exec", id, "cat", "/proc/self/status"); !nnp.MatchString(res.Stdout) {
			t.Errorf("exec'd process has no_new_privs off:\n%s", res)
		}
		data, err := json.Marshal(specs.Process{
			Args: []string{"cat", "/proc/self/status"},
			Env:  []string{"PATH=/usr/bin:/bin"},
			Cwd:  "/",
		})
		if err != nil {
			t.Fatal(err)
		}
		pj := filepath.Join(t.TempDir(), "process.json")
		if err := os.WriteFile(pj, data, 0o644); err != nil {
			t.Fatal(err)
		}
		if res := r.ok("exec", "-p", pj, id); !nnp.MatchString(res.Stdout) {
			t.Errorf("exec -p with noNewPrivileges false: no_new_privs is off:\n%s", res)
		}
	})

	// An interactive shell with a terminal (the console-socket way, as
	// containerd does it) runs under the policy and can use its tty.
	t.Run("tty", func(t *testing.T) {
		sock, ch := consoleSocket(t)
		if res := r.run("exec", "-d", "-t", "--console-socket", sock, id, "sh"); res.Code != 0 {
			t.Fatalf("exec -d -t --console-socket:\n%s", res)
		}
		pty := recvConsole(t, ch)
		pty.send(t, "tty; probe write /usr/share/tty.txt; probe write /tmp/tty.txt; echo XX$(id -u)YY\n")
		if got := pty.expect(t, regexp.MustCompile(`/dev/pts/\d+`)); got != "/dev/pts/0" {
			t.Errorf("tty says %s, want /dev/pts/0", got)
		}
		pty.expect(t, regexp.MustCompile(`ERR EROFS open`))
		pty.expect(t, regexp.MustCompile(`(?m)^OK\r?$`))
		pty.expect(t, regexp.MustCompile(`XX0YY`))
		pty.send(t, "exit\n")
	})

	// Signals from outside the container are not scoped: clawrun kill
	// stops the confined init (the sleeper traps TERM).
	t.Run("kill", func(t *testing.T) {
		r.ok("kill", id, "TERM")
		r.waitStatus(id, "stopped")
		waitFor(t, 5*time.Second, "the init's got-TERM", func() bool {
			return strings.Contains(readFile(out), "got-TERM")
		})
		if pidAlive(st.Pid) {
			t.Errorf("init %d still alive after SIGTERM", st.Pid)
		}
	})
}

// TestPolicyDeniedCommand: a command that exists but that the policy does
// not let the process execute (not under a read_only or read_write path).
// It must never run. The runtime cannot see this at create (Landlock is
// not applied yet), so the launcher's execve is what fails.
func TestPolicyDeniedCommand(t *testing.T) {
	t.Parallel()
	policyRuntime(t)

	t.Run("exec", func(t *testing.T) {
		t.Parallel()
		r := policyRuntime(t)
		b := r.probeBundle(withPolicy("agent-default"), bundle.Shell(sleeper))
		installProbe(t, b, "/srv/tool", 0o755)
		id := newID(t)
		r.runDetachedOut(id, b)
		res := r.run("exec", id, "/srv/tool", "say", "ran")
		if res.Code == 0 || strings.Contains(res.Stdout, "OK ran") || !strings.Contains(res.Stderr, "permission denied") {
			t.Errorf("exec of an unlisted program: want a failure saying permission denied:\n%s", res)
		}
		// Detached too: exec -d returns once the command runs, or fails
		// (without a policy a non-executable file fails exec -d as well).
		res = r.run("exec", "-d", id, "/srv/tool", "say", "ran")
		assertFailure(t, res, "permission denied")
	})

	t.Run("init", func(t *testing.T) {
		t.Parallel()
		r := policyRuntime(t)
		b := r.probeBundle(withPolicy("agent-default"), bundle.Args("/srv/tool", "say", "ran"))
		installProbe(t, b, "/srv/tool", 0o755)
		id := newID(t)
		r.track(id)
		res := r.run("run", "--bundle", b, id)
		if res.Code == 0 || strings.Contains(res.Stdout, "OK ran") || !strings.Contains(res.Stderr, "permission denied") {
			t.Errorf("run of an unlisted program: want a failure saying permission denied:\n%s", res)
		}
		t.Logf("run exits %d (126 is the shell's code for found but not executable, 127 for not found)", res.Code)

		// start waits for the command to run, as run does.
		id = newID(t)
		r.create(id, b)
		res = r.run("start", id)
		assertFailure(t, res, "permission denied")
		if c := r.fullState(id).Clawrun; c.Landlock.Status != "failed" || !strings.Contains(c.Landlock.Error, "permission denied") {
			t.Errorf("after the refused command, state says %s", c)
		}
	})
}
