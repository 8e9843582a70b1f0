package integration

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/clawrun/clawrun/test/bundle"
)

// TestLifecycle walks create → start → kill → delete, once per spelling of
// SIGTERM that kill must accept.
func TestLifecycle(t *testing.T) {
	t.Parallel()
	requireReady(t)
	for _, sig := range []string{"TERM", "SIGTERM", "15"} {
		t.Run(sig, func(t *testing.T) {
			t.Parallel()
			r := newRuntime(t)
			b := r.bundle(bundle.Shell(sleeper))
			id := newID(t)

			res := r.create(id, b)
			out := res.StdoutPath // the container inherited create's stdout

			st := r.state(id)
			if st.Status != "created" || st.ID != id || st.Bundle != b || st.Pid <= 0 || st.OCIVersion == "" {
				t.Fatalf("state after create: %+v (want created, id %s, bundle %s, a pid)", st, id, b)
			}
			// The right pid: alive, and its root is the bundle's rootfs (this
			// also validates procsInRootfs, on which the leftover checks rely).
			if !pidAlive(st.Pid) || !slices.Contains(procsInRootfs(t, b), st.Pid) {
				t.Fatalf("state pid %d is not a live process in the container's rootfs (%v)", st.Pid, procsInRootfs(t, b))
			}
			// The user process must not run before start.
			time.Sleep(100 * time.Millisecond)
			if s := readFile(out); strings.Contains(s, "started") {
				t.Fatalf("container process ran before start: %q", s)
			}
			// Validates defaultCgroupDir, on which the error tests rely.
			if got, want := cgroupDirOf(t, st.Pid, "pids"), defaultCgroupDir(t, "pids", id); got != want {
				t.Errorf("init's pids cgroup is %s, want the default %s", got, want)
			}

			r.ok("start", id)
			waitFor(t, 10*time.Second, "the container's output", func() bool {
				return strings.Contains(readFile(out), "started")
			})
			st2 := r.state(id)
			if st2.Status != "running" || st2.Pid != st.Pid {
				t.Fatalf("state after start: %+v (want running, pid %d)", st2, st.Pid)
			}

			// Misuse of a running container fails and changes nothing.
			if res := r.run("start", id); res.Code == 0 {
				t.Errorf("start of a running container succeeded:\n%s", res)
			}
			if res := r.run("delete", id); res.Code == 0 {
				t.Errorf("delete (no -f) of a running container succeeded:\n%s", res)
			}
			if st := r.state(id); st.Status != "running" {
				t.Fatalf("after refused start/delete: %+v", st)
			}

			r.ok("kill", id, sig)
			st3 := r.waitStatus(id, "stopped")
			if st3.Pid != 0 {
				t.Errorf("stopped container reports pid %d, want 0 as runc", st3.Pid)
			}
			if s := readFile(out); !strings.Contains(s, "got-TERM") {
				t.Errorf("the container did not get SIGTERM: output %q", s)
			}
			if pidAlive(st.Pid) {
				t.Errorf("init pid %d still alive after stop", st.Pid)
			}

			// Signalling a stopped container fails, unless -a (runc: obsolete, tolerated).
			if res := r.run("kill", id, "KILL"); res.Code == 0 {
				t.Errorf("kill of a stopped container succeeded:\n%s", res)
			}
			r.ok("kill", "-a", id, "KILL")
			if res := r.run("exec", id, "true"); res.Code == 0 {
				t.Errorf("exec into a stopped container succeeded:\n%s", res)
			}

			r.ok("delete", id)
			res = r.run("state", id)
			assertFailure(t, res, "does not exist")
			r.assertGone(id, b)
		})
	}

	// kill -a with SIGKILL takes down exec'd processes along with init.
	t.Run("kill-all", func(t *testing.T) {
		t.Parallel()
		r := newRuntime(t)
		b := r.bundle(bundle.Shell(sleeper))
		id := newID(t)
		st := r.runDetached(id, b)
		pidFile := filepath.Join(t.TempDir(), "exec.pid")
		r.ok("exec", "--detach", "--pid-file", pidFile, id, "sleep", "1000")
		execPid := atoiFile(t, pidFile)
		if !pidAlive(execPid) {
			t.Fatalf("exec'd pid %d not alive", execPid)
		}
		r.ok("kill", "-a", id, "KILL")
		r.waitStatus(id, "stopped")
		waitFor(t, 10*time.Second, "exec'd process to die", func() bool { return !pidAlive(execPid) })
		if pidAlive(st.Pid) {
			t.Errorf("init %d alive", st.Pid)
		}
		r.ok("delete", id)
		r.assertGone(id, b)
	})

	// delete -f removes a running container outright.
	t.Run("delete-force", func(t *testing.T) {
		t.Parallel()
		r := newRuntime(t)
		b := r.bundle(bundle.Shell(sleeper))
		id := newID(t)
		st := r.runDetached(id, b)
		r.ok("delete", "-f", id)
		if pidAlive(st.Pid) {
			t.Errorf("init %d alive after delete -f", st.Pid)
		}
		assertFailure(t, r.run("state", id), "does not exist")
		r.assertGone(id, b)
	})
}

// TestPidFile: create --pid-file writes the init pid.
func TestPidFile(t *testing.T) {
	t.Parallel()
	r := newRuntime(t)
	b := r.bundle(bundle.Shell(sleeper))
	id := newID(t)
	pidFile := filepath.Join(t.TempDir(), "init.pid")
	r.create(id, b, "--pid-file", pidFile)
	st := r.state(id)
	if got := atoiFile(t, pidFile); got != st.Pid || got <= 0 {
		t.Fatalf("pid file holds %d, state says %d", got, st.Pid)
	}
}

func atoiFile(t *testing.T, path string) int {
	t.Helper()
	var n int
	s := readTrim(t, path)
	if _, err := fmt.Sscanf(s, "%d", &n); err != nil || fmt.Sprint(n) != s {
		t.Fatalf("%s holds %q, not a pid", path, s)
	}
	return n
}

// TestRun covers the foreground/detached run modes.
func TestRun(t *testing.T) {
	t.Parallel()
	requireReady(t)

	t.Run("exit-code", func(t *testing.T) {
		t.Parallel()
		r := newRuntime(t)
		b := r.bundle(bundle.Shell(`echo out; echo err >&2; exit 7`))
		id := newID(t)
		r.track(id)
		res := r.run("run", "--bundle", b, id)
		if res.Code != 7 || res.Stdout != "out\n" || !strings.Contains(res.Stderr, "err") {
			t.Fatalf("want exit 7, stdout \"out\\n\", stderr err:\n%s", res)
		}
		// Without --keep, run deletes the container when it exits.
		assertFailure(t, r.run("state", id), "does not exist")
		r.assertGone(id, b)
	})

	t.Run("exit-zero", func(t *testing.T) {
		t.Parallel()
		r := newRuntime(t)
		b := r.bundle(bundle.Shell(`hostname`))
		id := newID(t)
		r.track(id)
		res := r.run("run", "--bundle", b, id)
		if res.Code != 0 || res.Stdout != "test\n" {
			t.Fatalf("want exit 0 and the spec's hostname:\n%s", res)
		}
	})

	t.Run("detach", func(t *testing.T) {
		t.Parallel()
		r := newRuntime(t)
		b := r.bundle(bundle.Shell(sleeper))
		id := newID(t)
		st := r.runDetached(id, b)
		if st.Pid <= 0 || !pidAlive(st.Pid) || st.Bundle != b {
			t.Fatalf("run -d: %+v", st)
		}
	})

	t.Run("keep", func(t *testing.T) {
		t.Parallel()
		r := newRuntime(t)
		b := r.bundle(bundle.Shell(`exit 3`))
		id := newID(t)
		r.track(id)
		if res := r.run("run", "--keep", "--bundle", b, id); res.Code != 3 {
			t.Fatalf("want exit 3:\n%s", res)
		}
		st := r.state(id)
		if st.Status != "stopped" || st.ID != id {
			t.Fatalf("run --keep left %+v, want a stopped container", st)
		}
		if _, err := os.Stat(filepath.Join(r.root, id)); err != nil {
			t.Fatalf("state dir: %v", err)
		}
		r.ok("delete", id)
		r.assertGone(id, b)
	})

	// The foreground runtime forwards signals it gets to the container.
	for _, tc := range []struct {
		sig  syscall.Signal
		code int
	}{{syscall.SIGTERM, 42}, {syscall.SIGUSR1, 43}} {
		t.Run("forward-"+unix.SignalName(tc.sig), func(t *testing.T) {
			t.Parallel()
			r := newRuntime(t)
			b := r.bundle(bundle.Shell(`trap 'exit 42' TERM; trap 'exit 43' USR1; echo ready; while :; do sleep 1000 & wait $!; done`))
			id := newID(t)
			r.track(id)
			p := r.startBG(runOpts{}, "run", "--bundle", b, id)
			waitFor(t, 10*time.Second, "the container to set its traps", func() bool {
				return strings.Contains(p.stdout(), "ready")
			})
			p.signal(t, tc.sig)
			if res := p.wait(10 * time.Second); res.Code != tc.code {
				t.Fatalf("after %v the runtime exited %d, want the container's %d:\n%s", tc.sig, res.Code, tc.code, res)
			}
		})
	}
}

// misleadingStartError is what start and run said when the container's
// init died before the policy launcher ran, whatever the cause.
const misleadingStartError = "exited without a report"

// TestStartContainerHookFailure: a failing startContainer hook stops the
// container before its process runs, and its error reaches the caller as
// with runc: "error running startContainer hook #0: ..." from the
// container's init on the container's stderr, and a foreground run exits
// 255. Under a policy too, where start fails (the process never ran)
// without blaming the policy launcher.
func TestStartContainerHookFailure(t *testing.T) {
	t.Parallel()
	requireReady(t)
	failingHook := func(s *specs.Spec) {
		s.Hooks = &specs.Hooks{StartContainer: []specs.Hook{{
			Path: "/bin/sh", Args: []string{"sh", "-c", "echo hook-says-no >&2; exit 3"},
		}}}
	}
	const hookError = "error running startContainer hook #0: exit status 3"
	check := func(t *testing.T, r *rtest, b string, confined bool) {
		id := newID(t)
		cr := r.create(id, b)
		res := r.run("start", id)
		r.waitStatus(id, "stopped")
		seen := res.Stderr + readFile(cr.StderrPath)
		if !strings.Contains(seen, hookError) || !strings.Contains(seen, "hook-says-no") {
			t.Errorf("start: the hook's error (%q) is neither on start's stderr nor on the container's %q:\n%s", hookError, readFile(cr.StderrPath), res)
		}
		if strings.Contains(res.Stderr+res.Log, misleadingStartError) {
			t.Errorf("start blames the policy launcher:\n%s", res)
		}
		if confined && res.Code == 0 {
			t.Errorf("start of a confined container whose process never ran succeeded:\n%s", res)
		}
		if strings.Contains(readFile(cr.StdoutPath), "started") {
			t.Errorf("the container's process ran after its startContainer hook failed")
		}

		id = newID(t)
		r.track(id)
		res = r.run("run", "--bundle", b, id)
		if res.Code != 255 || !strings.Contains(res.Stderr, hookError) || strings.Contains(res.Stderr+res.Log, misleadingStartError) {
			t.Errorf("run: want the init's exit status 255 and the hook's error on stderr:\n%s", res)
		}
	}
	t.Run("no-policy", func(t *testing.T) {
		t.Parallel()
		r := newRuntime(t)
		check(t, r, r.bundle(failingHook, bundle.Shell(sleeper)), false)
	})
	t.Run("policy", func(t *testing.T) {
		t.Parallel()
		r := policyRuntime(t)
		check(t, r, r.probeBundle(withPolicy("agent-default"), failingHook, bundle.Shell(sleeper)), true)
	})
}

// TestStartRacesDelete: start and a concurrent delete -f. start succeeds
// or says what happened in runc's words; under a policy it must not blame
// the policy launcher when the init was killed before the launcher ran.
func TestStartRacesDelete(t *testing.T) {
	t.Parallel()
	requireReady(t)
	truths := []string{
		"container does not exist",
		"cannot start a container that has stopped",
		"container process is already dead",
		"cannot start an already running container",
		"container init exited before its process started",
		// libcontainer's, as for runc, when delete removed the state dir
		// between start's look at the container and its opening the fifo.
		"exec fifo: open ",
	}
	race := func(t *testing.T, r *rtest, b string) {
		for i := range 10 {
			id := newID(t)
			r.create(id, b)
			p, err := r.start(runOpts{}, "start", id)
			if err != nil {
				t.Fatal(err)
			}
			time.Sleep(time.Duration(i) * 3 * time.Millisecond)
			r.ok("delete", "-f", id)
			res := p.wait(cmdTimeout)
			if res.Code == 0 {
				continue
			}
			if !slices.ContainsFunc(truths, func(s string) bool { return strings.Contains(res.Stderr, s) }) {
				t.Errorf("start racing delete -f failed with an unexpected error:\n%s", res)
			}
			r.assertGone(id, b)
		}
	}
	t.Run("no-policy", func(t *testing.T) {
		t.Parallel()
		r := newRuntime(t)
		race(t, r, r.bundle(bundle.Shell(sleeper)))
	})
	t.Run("policy", func(t *testing.T) {
		t.Parallel()
		r := policyRuntime(t)
		race(t, r, r.probeBundle(withPolicy("agent-default"), bundle.Shell(sleeper)))
	})
}

// TestInitDescriptors: what a created container's init holds that leads
// out of the container (CVE-2024-21626 was a host directory descriptor
// that reached the container's process). Like runc's, its descriptors to
// host files and directories (the exec fifo, libcontainer's sealed copy of
// the runtime binary, cgroup files, a private procfs) close on exec. The
// exceptions are clawrun's under a policy: the launcher's report record,
// a regular file the launcher closes before it execs the command, and the
// launcher itself, a sealed memfd (see TestPolicyLauncherBinary). Once the
// process runs, it holds nothing outside the container but its stdio.
func TestInitDescriptors(t *testing.T) {
	t.Parallel()
	requireReady(t)
	check := func(t *testing.T, r *rtest, b string, confined bool) {
		id := newID(t)
		out := r.create(id, b).StdoutPath
		pid := r.state(id).Pid
		var record unix.Stat_t
		if confined {
			_ = unix.Stat(filepath.Join(r.root, id, "clawrun-init-report.json"), &record)
		}
		for _, d := range hostDescriptors(t, pid) {
			t.Logf("created init: fd %d -> %s (directory %v, close-on-exec %v)", d.fd, d.target, d.dir, d.cloexec)
			switch {
			case d.cloexec:
			case d.dir:
				t.Errorf("fd %d -> %s: a host directory that outlives the init's exec", d.fd, d.target)
			case confined && slices.Contains(launcherDescriptors(t, pid), d.fd):
			case !confined || d.dev != record.Dev || d.ino != record.Ino:
				t.Errorf("fd %d -> %s: a host file that outlives the init's exec (runc's all close on exec)", d.fd, d.target)
			}
		}
		r.ok("start", id)
		waitFor(t, 10*time.Second, "the container's process", func() bool {
			return strings.Contains(readFile(out), "started")
		})
		for _, d := range hostDescriptors(t, pid) {
			t.Errorf("the container's process holds fd %d -> %s, outside the container", d.fd, d.target)
		}
	}
	t.Run("no-policy", func(t *testing.T) {
		t.Parallel()
		r := newRuntime(t)
		check(t, r, r.bundle(bundle.Shell(sleeper)), false)
	})
	t.Run("policy", func(t *testing.T) {
		t.Parallel()
		r := policyRuntime(t)
		check(t, r, r.probeBundle(withPolicy("agent-default"), bundle.Shell(sleeper)), true)
	})
}

// hostDescriptor is a descriptor of a process, beyond its stdio, to a
// file or directory on a mount that is not in the process's mount
// namespace.
type hostDescriptor struct {
	fd           int
	target       string
	dir, cloexec bool
	dev, ino     uint64
}

func hostDescriptors(t *testing.T, pid int) []hostDescriptor {
	t.Helper()
	mounts := map[string]bool{}
	for line := range strings.SplitSeq(readFile(fmt.Sprintf("/proc/%d/mountinfo", pid)), "\n") {
		if id, _, ok := strings.Cut(line, " "); ok {
			mounts[id] = true
		}
	}
	if len(mounts) == 0 {
		t.Fatalf("no mountinfo for pid %d", pid)
	}
	ents, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	if err != nil {
		t.Fatal(err)
	}
	var out []hostDescriptor
	for _, e := range ents {
		fd, _ := strconv.Atoi(e.Name())
		link := fmt.Sprintf("/proc/%d/fd/%d", pid, fd)
		target, err := os.Readlink(link)
		if fd <= 2 || err != nil || !strings.HasPrefix(target, "/") {
			continue // stdio, gone meanwhile, or a socket, pipe or anonymous inode
		}
		var flags int64
		var mnt string
		for line := range strings.SplitSeq(readFile(fmt.Sprintf("/proc/%d/fdinfo/%d", pid, fd)), "\n") {
			k, v, _ := strings.Cut(line, ":")
			switch k {
			case "flags":
				flags, _ = strconv.ParseInt(strings.TrimSpace(v), 8, 64)
			case "mnt_id":
				mnt = strings.TrimSpace(v)
			}
		}
		if mounts[mnt] {
			continue
		}
		var st unix.Stat_t
		if err := unix.Stat(link, &st); err != nil {
			continue
		}
		out = append(out, hostDescriptor{fd: fd, target: target, dir: st.Mode&unix.S_IFMT == unix.S_IFDIR,
			cloexec: flags&unix.O_CLOEXEC != 0, dev: st.Dev, ino: st.Ino})
	}
	return out
}
