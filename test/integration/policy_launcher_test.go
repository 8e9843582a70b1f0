package integration

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/clawrun/clawrun/test/bundle"
)

// memfdSeals are the seals that make a memfd unwritable for good.
const memfdSeals = unix.F_SEAL_SEAL | unix.F_SEAL_SHRINK | unix.F_SEAL_GROW | unix.F_SEAL_WRITE

// TestPolicyLauncherBinary: with clawrun-launch installed next to clawrun,
// a confined process's launcher is a read-only view of it (a private
// overlay mount; a sealed memfd copy where there is none), which the
// process inherits as a descriptor and which nobody can write (not even
// root through /proc); without it, clawrun's own binary is the launcher. Either
// way the policy is enforced, and the command's process, init or exec'd,
// holds nothing of the launcher: only its stdio, and its /proc/self/exe is
// its own binary.
func TestPolicyLauncherBinary(t *testing.T) {
	t.Parallel()
	r := policyRuntime(t)
	helper := filepath.Join(filepath.Dir(r.bin), "clawrun-launch")
	launcherBin, err := os.ReadFile(helper)
	if err != nil {
		t.Fatalf("%v: make build puts clawrun-launch next to clawrun", err)
	}
	for _, tc := range []struct {
		name       string
		withHelper bool
	}{{"clawrun-launch installed", true}, {"clawrun alone", false}} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			copyExecutable(t, r.bin, filepath.Join(dir, "clawrun"))
			if tc.withHelper {
				copyExecutable(t, helper, filepath.Join(dir, "clawrun-launch"))
			}
			rr := *r
			rr.t, rr.bin = t, filepath.Join(dir, "clawrun")
			b := rr.probeBundle(withPolicy("agent-default"), bundle.Shell(sleeper))
			busybox := inRootfs(b, "/bin/busybox")

			id := newID(t)
			out := rr.create(id, b).StdoutPath
			pid := rr.state(id).Pid
			fds := launcherDescriptors(t, pid)
			switch {
			case !tc.withHelper && len(fds) > 0:
				t.Errorf("the created init holds a launcher copy (fds %v) though clawrun-launch is not installed", fds)
			case tc.withHelper && len(fds) != 1:
				t.Fatalf("the created init holds %d copies of clawrun-launch (fds %v), want 1", len(fds), fds)
			case tc.withHelper:
				checkSealedCopy(t, pid, fds[0], launcherBin)
			}
			rr.ok("start", id)
			waitFor(t, 10*time.Second, "the container's process", func() bool {
				return strings.Contains(readFile(out), "started")
			})
			checkNothingOfLauncher(t, pid, busybox)

			pidFile := filepath.Join(t.TempDir(), "exec.pid")
			rr.ok("exec", "-d", "--pid-file", pidFile, id, "sh", "-c", "while :; do sleep 1000; done")
			execPid, err := strconv.Atoi(strings.TrimSpace(readFile(pidFile)))
			if err != nil {
				t.Fatalf("exec's pid file: %v", err)
			}
			checkNothingOfLauncher(t, execPid, busybox)

			// The policy holds either way: seccomp refuses memfd_create,
			// and the probe still runs.
			if res := rr.run("exec", id, "probe", "memfd-exec"); !strings.HasPrefix(res.Stdout, "ERR EPERM") {
				t.Errorf("memfd-exec under agent-default: %s", res)
			}
			if res := rr.run("exec", id, "probe", "true"); res.Code != 0 || !strings.HasPrefix(res.Stdout, "OK") {
				t.Errorf("probe true under agent-default: %s", res)
			}
		})
	}
}

// launcherDescriptors are pid's descriptors to clawrun-launch handed
// over: a view (the root of a mount of its own: "/clawrun-launch") or a
// memfd copy.
func launcherDescriptors(t *testing.T, pid int) []int {
	t.Helper()
	ents, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	if err != nil {
		t.Fatal(err)
	}
	var fds []int
	for _, e := range ents {
		target, err := os.Readlink(fmt.Sprintf("/proc/%d/fd/%s", pid, e.Name()))
		if err == nil && (target == "/clawrun-launch" || strings.HasPrefix(target, "/memfd:") && strings.Contains(target, "clawrun-launch")) {
			fd, _ := strconv.Atoi(e.Name())
			fds = append(fds, fd)
		}
	}
	return fds
}

// checkSealedCopy: pid's fd is clawrun-launch's content, and nobody can
// write it: a view refuses to open for writing (read-only file system),
// a memfd copy is sealed against any write.
func checkSealedCopy(t *testing.T, pid, fd int, want []byte) {
	t.Helper()
	path := fmt.Sprintf("/proc/%d/fd/%d", pid, fd)
	if got, err := os.ReadFile(path); err != nil || !bytes.Equal(got, want) {
		t.Errorf("%s: not clawrun-launch's content (%d bytes, %v)", path, len(got), err)
	}
	if target, _ := os.Readlink(path); !strings.HasPrefix(target, "/memfd:") {
		for _, flag := range []int{os.O_WRONLY, os.O_RDWR, os.O_WRONLY | os.O_TRUNC} {
			if f, err := os.OpenFile(path, flag, 0); !errors.Is(err, unix.EROFS) {
				if err == nil {
					f.Close()
				}
				t.Errorf("%s: opening the view with flags %#x: %v, want EROFS", path, flag, err)
			}
		}
		return
	}
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	seals, err := unix.FcntlInt(f.Fd(), unix.F_GET_SEALS, 0)
	if err != nil || seals&memfdSeals != memfdSeals {
		t.Errorf("%s: seals %#x (%v), want at least %#x", path, seals, err, memfdSeals)
	}
	if _, err := f.WriteAt([]byte("\x7fELF"), 0); err == nil {
		t.Errorf("%s: root could write the launcher", path)
	}
	if err := f.Truncate(0); err == nil {
		t.Errorf("%s: root could truncate the launcher", path)
	}
}

// checkNothingOfLauncher: the command's process pid holds its stdio alone
// and runs exe, its own binary (a path on the host).
func checkNothingOfLauncher(t *testing.T, pid int, exe string) {
	t.Helper()
	ents, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range ents {
		if fd, _ := strconv.Atoi(e.Name()); fd > 2 {
			target, _ := os.Readlink(fmt.Sprintf("/proc/%d/fd/%d", pid, fd))
			t.Errorf("process %d holds fd %d -> %s beyond its stdio", pid, fd, target)
		}
	}
	var got, want unix.Stat_t
	if err := unix.Stat(fmt.Sprintf("/proc/%d/exe", pid), &got); err != nil {
		t.Fatal(err)
	}
	if err := unix.Stat(exe, &want); err != nil {
		t.Fatal(err)
	}
	if got.Dev != want.Dev || got.Ino != want.Ino {
		link, _ := os.Readlink(fmt.Sprintf("/proc/%d/exe", pid))
		t.Errorf("process %d runs %s, not its own binary %s", pid, link, exe)
	}
}
