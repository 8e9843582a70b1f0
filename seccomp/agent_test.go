package seccomp

import (
	"errors"
	"runtime"
	"testing"

	"golang.org/x/sys/unix"
)

// onFilteredThread runs fn on an OS thread carrying the agent filter; the
// thread is discarded afterwards (never unlocked).
func onFilteredThread(t *testing.T, extra []string, fn func()) {
	t.Helper()
	done := make(chan struct{})
	go func() {
		defer close(done)
		runtime.LockOSThread()
		if err := unix.Prctl(unix.PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0); err != nil {
			t.Errorf("no_new_privs: %v", err)
			return
		}
		if err := Load(AgentProfile(extra)); err != nil {
			t.Errorf("Load: %v", err)
			return
		}
		fn()
	}()
	<-done
}

func errnoOf(r1 uintptr, e unix.Errno) error {
	if e != 0 {
		return e
	}
	if int(r1) >= 0 {
		unix.Close(int(r1)) // a returned fd
	}
	return nil
}

func TestAgentProfileDenies(t *testing.T) {
	onFilteredThread(t, []string{"getcpu"}, func() {
		for name, call := range map[string]func() error{
			"ptrace": func() error {
				_, _, e := unix.RawSyscall(unix.SYS_PTRACE, unix.PTRACE_TRACEME, 0, 0)
				return errnoOf(0, e)
			},
			"memfd_create":   func() error { _, err := unix.MemfdCreate("x", 0); return err },
			"unshare(USER)":  func() error { return unix.Unshare(unix.CLONE_NEWUSER) },
			"mount":          func() error { return unix.Mount("none", "/mnt", "tmpfs", 0, "") },
			"fsopen":         func() error { _, err := unix.Fsopen("tmpfs", 0); return err },
			"io_uring_setup": func() error { r, _, e := unix.RawSyscall(unix.SYS_IO_URING_SETUP, 1, 0, 0); return errnoOf(r, e) },
			"bpf":            func() error { _, _, e := unix.RawSyscall(unix.SYS_BPF, 0, 0, 0); return errnoOf(0, e) },
			"socket(PACKET)": func() error {
				r, err := unix.Socket(unix.AF_PACKET, unix.SOCK_RAW, 0)
				errnoOf(uintptr(r), 0)
				return err
			},
			"socket(VSOCK)":  func() error { _, err := unix.Socket(unix.AF_VSOCK, unix.SOCK_STREAM, 0); return err },
			"netlink(AUDIT)": func() error { _, err := unix.Socket(unix.AF_NETLINK, unix.SOCK_RAW, unix.NETLINK_AUDIT); return err },
			"keyctl": func() error {
				_, err := unix.KeyctlInt(unix.KEYCTL_GET_KEYRING_ID, unix.KEY_SPEC_SESSION_KEYRING, 0, 0, 0)
				return err
			},
			"execveat(EMPTY)": func() error {
				_, _, e := unix.RawSyscall6(unix.SYS_EXECVEAT, 0, 0, 0, 0, unix.AT_EMPTY_PATH, 0)
				return errnoOf(0, e)
			},
			"getcpu (extra)": func() error { _, _, e := unix.RawSyscall(unix.SYS_GETCPU, 0, 0, 0); return errnoOf(0, e) },
		} {
			if err := call(); !errors.Is(err, unix.EPERM) {
				t.Errorf("%s: got %v, want EPERM", name, err)
			}
		}
		if _, _, e := unix.RawSyscall(unix.SYS_CLONE3, 0, 0, 0); e != unix.ENOSYS {
			t.Errorf("clone3: got %v, want ENOSYS", e)
		}
		// Positive controls: what agents do every day still works.
		for name, call := range map[string]func() error{
			"socket(INET)": func() error {
				r, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM, 0)
				errnoOf(uintptr(r), 0)
				return err
			},
			"netlink(ROUTE)": func() error {
				r, err := unix.Socket(unix.AF_NETLINK, unix.SOCK_RAW, unix.NETLINK_ROUTE)
				errnoOf(uintptr(r), 0)
				return err
			},
			"unix socket": func() error {
				r, err := unix.Socket(unix.AF_UNIX, unix.SOCK_STREAM, 0)
				errnoOf(uintptr(r), 0)
				return err
			},
			"landlock abi": func() error {
				_, _, e := unix.RawSyscall(unix.SYS_LANDLOCK_CREATE_RULESET, 0, 0, unix.LANDLOCK_CREATE_RULESET_VERSION)
				return errnoOf(0, e)
			},
		} {
			if err := call(); err != nil {
				t.Errorf("%s: %v, want success", name, err)
			}
		}
	})
	// Other threads are untouched.
	fd, err := unix.MemfdCreate("ok", unix.MFD_CLOEXEC)
	if err != nil {
		t.Fatalf("the filter leaked out of its thread: %v", err)
	}
	unix.Close(fd)
}

func TestCheckNames(t *testing.T) {
	if err := CheckNames([]string{"ptrace", "getcpu"}); err != nil {
		t.Fatal(err)
	}
	if err := CheckNames([]string{"not_a_syscall"}); err == nil {
		t.Fatal("an unknown syscall name was accepted")
	}
}
