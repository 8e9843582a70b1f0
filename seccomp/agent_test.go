package seccomp

import (
	"errors"
	"math/rand/v2"
	"runtime"
	"testing"
	"unsafe"

	"github.com/opencontainers/runc/libcontainer/configs"
	"golang.org/x/sys/unix"

	"github.com/clawrun/clawrun/seccomp/bpf"
)

// onFilteredThread runs fn on an OS thread carrying the agent filter; the
// thread is discarded afterwards (never unlocked).
func onFilteredThread(t *testing.T, extra []string, fn func()) {
	t.Helper()
	onThreadWith(t, AgentProfile(extra), fn)
}

// onThreadWith runs fn on an OS thread carrying profile, compiled and
// installed as the launcher does; the thread is discarded afterwards.
func onThreadWith(t *testing.T, profile *configs.Seccomp, fn func()) {
	t.Helper()
	done := make(chan struct{})
	go func() {
		defer close(done)
		runtime.LockOSThread()
		if err := unix.Prctl(unix.PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0); err != nil {
			t.Errorf("no_new_privs: %v", err)
			return
		}
		prog, err := Compile(profile)
		if err != nil {
			t.Errorf("Compile: %v", err)
			return
		}
		if err := bpf.Install(prog); err != nil {
			t.Errorf("Install: %v", err)
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

func TestAgentProfileArguments(t *testing.T) {
	onFilteredThread(t, nil, func() {
		personality := func(p uint64) error {
			_, _, e := unix.RawSyscall(unix.SYS_PERSONALITY, uintptr(p), 0, 0)
			return errnoOf(0, e)
		}
		socket := func(family uint64) error {
			r, _, e := unix.RawSyscall(unix.SYS_SOCKET, uintptr(family), unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
			return errnoOf(r, e)
		}
		socketpair := func(family uint64) error {
			var fds [2]int32
			_, _, e := unix.RawSyscall6(unix.SYS_SOCKETPAIR, uintptr(family), unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0, uintptr(unsafe.Pointer(&fds)), 0, 0)
			if e == 0 {
				unix.Close(int(fds[0]))
				unix.Close(int(fds[1]))
			}
			return errnoOf(0, e)
		}
		raw := func(r1, _ uintptr, e unix.Errno) error { return errnoOf(r1, e) }
		const readImpliesExec, addrNoRandomize = 0x0400000, 0x0040000
		for name, err := range map[string]error{
			"personality(READ_IMPLIES_EXEC)":  personality(readImpliesExec),
			"personality(ADDR_NO_RANDOMIZE)":  personality(addrNoRandomize),
			"personality(PER_BSD)":            personality(6),
			"personality(0xfffffffe)":         personality(0xfffffffe),
			"personality(1<<32)":              personality(1 << 32),
			"socket(AF_UNSPEC)":               socket(unix.AF_UNSPEC),
			"socket(AF_ALG)":                  socket(unix.AF_ALG),
			"socket(AF_TIPC)":                 socket(unix.AF_TIPC),
			"socket(AF_KEY)":                  socket(unix.AF_KEY),
			"socket(AF_MAX)":                  socket(unix.AF_MAX),
			"socket(1<<32 | AF_INET)":         socket(1<<32 | unix.AF_INET),
			"socketpair(AF_TIPC)":             socketpair(unix.AF_TIPC),
			"socketpair(AF_NETLINK, AUDIT)":   raw(unix.RawSyscall6(unix.SYS_SOCKETPAIR, unix.AF_NETLINK, unix.SOCK_RAW, unix.NETLINK_AUDIT, 0, 0, 0)),
			"socket(AF_NETLINK, SOCK_DIAG)":   raw(unix.RawSyscall(unix.SYS_SOCKET, unix.AF_NETLINK, unix.SOCK_RAW, unix.NETLINK_SOCK_DIAG)),
			"socket(AF_NETLINK, 1<<32|ROUTE)": raw(unix.RawSyscall(unix.SYS_SOCKET, unix.AF_NETLINK, unix.SOCK_RAW, 1<<32|unix.NETLINK_ROUTE)),
		} {
			if !errors.Is(err, unix.EPERM) {
				t.Errorf("%s: got %v, want EPERM", name, err)
			}
		}
		// Positive controls: Docker's default profile allows these
		// personalities, and agents use these families.
		// PER_LINUX, PER_LINUX32, UNAME26, both, the query; then back.
		for _, p := range []uint64{0, 0x8, 0x20000, 0x20008, 0xffffffff, 0} {
			if err := personality(p); err != nil {
				t.Errorf("personality(%#x): %v, want success", p, err)
			}
		}
		for _, f := range []uint64{unix.AF_UNIX, unix.AF_INET, unix.AF_NETLINK} {
			if err := socket(f); err != nil {
				t.Errorf("socket(%d): %v, want success", f, err)
			}
		}
		if err := socket(unix.AF_INET6); err != nil && !errors.Is(err, unix.EAFNOSUPPORT) {
			t.Errorf("socket(AF_INET6): %v, want success", err)
		}
		if err := socketpair(unix.AF_UNIX); err != nil {
			t.Errorf("socketpair(AF_UNIX): %v, want success", err)
		}
	})
}

// TestAgentProfileRuleShapes evaluates the profile's argument rules the
// way libcontainer hands them to libseccomp (the comparisons of one rule
// must all hold; libcontainer would split a rule that compares one
// argument twice into rules that each may hold, so none may), over the
// values that decide whether they are right: every personality Docker
// allows passes, and every value with up to three bits set or clear, and
// a million random ones, are denied unless allowed.
func TestAgentProfileRuleShapes(t *testing.T) {
	profile := AgentProfile(nil)
	denied := func(name string, args ...uint64) bool {
		for _, call := range profile.Syscalls {
			if call.Name == name && ruleMatches(t, call.Args, args) {
				return true
			}
		}
		return false
	}
	allowedPersona := map[uint64]bool{0: true, 0x8: true, 0x20000: true, 0x20008: true, 0xffffffff: true}
	var values []uint64
	for v := range allowedPersona {
		values = append(values, v, v|1<<32, v|1<<63)
	}
	for i := range 64 {
		values = append(values, 1<<i, 0xffffffff&^(1<<i), ^uint64(0)&^(1<<i))
		for j := range i {
			values = append(values, 1<<i|1<<j, 0xffffffff&^(1<<i|1<<j))
			for k := range j {
				values = append(values, 1<<i|1<<j|1<<k, 0xffffffff&^(1<<i|1<<j|1<<k))
			}
		}
	}
	rng := rand.New(rand.NewPCG(1, 2))
	for range 1_000_000 {
		values = append(values, uint64(rng.Uint32()), rng.Uint64())
	}
	for _, v := range values {
		if got := denied("personality", v); got == allowedPersona[v] {
			t.Fatalf("personality(%#x): denied %v, want %v", v, got, !allowedPersona[v])
		}
	}

	allowedFamily := map[uint64]bool{unix.AF_UNIX: true, unix.AF_INET: true, unix.AF_INET6: true, unix.AF_NETLINK: true}
	for _, call := range []string{"socket", "socketpair"} {
		for _, f := range append([]uint64{1 << 32, 1<<32 | unix.AF_INET, ^uint64(0)}, valuesUpTo(256)...) {
			if got := denied(call, f, unix.SOCK_STREAM, 0); got == allowedFamily[f] {
				t.Errorf("%s(%d): denied %v, want %v", call, f, got, !allowedFamily[f])
			}
		}
		if !denied(call, unix.AF_NETLINK, unix.SOCK_RAW, unix.NETLINK_AUDIT) || denied(call, unix.AF_NETLINK, unix.SOCK_RAW, unix.NETLINK_ROUTE) {
			t.Errorf("%s: netlink must allow NETLINK_ROUTE only", call)
		}
	}
}

func valuesUpTo(n uint64) []uint64 {
	var out []uint64
	for v := range n {
		out = append(out, v)
	}
	return out
}

// ruleMatches tells whether every comparison of a rule holds for args.
func ruleMatches(t *testing.T, conds []*configs.Arg, args []uint64) bool {
	t.Helper()
	seen := map[uint]bool{}
	for _, c := range conds {
		if seen[c.Index] {
			t.Fatalf("a rule compares argument %d twice: libcontainer would turn it into separate rules", c.Index)
		}
		seen[c.Index] = true
		var v uint64
		if int(c.Index) < len(args) {
			v = args[c.Index]
		}
		var ok bool
		switch c.Op {
		case configs.EqualTo:
			ok = v == c.Value
		case configs.NotEqualTo:
			ok = v != c.Value
		case configs.GreaterThan:
			ok = v > c.Value
		case configs.GreaterThanOrEqualTo:
			ok = v >= c.Value
		case configs.LessThan:
			ok = v < c.Value
		case configs.LessThanOrEqualTo:
			ok = v <= c.Value
		case configs.MaskEqualTo: // libseccomp: (arg & Value) == ValueTwo
			ok = v&c.Value == c.ValueTwo
		default:
			t.Fatalf("unknown comparison %v", c.Op)
		}
		if !ok {
			return false
		}
	}
	return true
}

// TestWithoutMPTCP: Multipath TCP sockets are refused as a kernel without
// MPTCP refuses them, alone or stacked with the agent profile's own socket
// rules; TCP sockets still open.
func TestWithoutMPTCP(t *testing.T) {
	socket := func(family, proto int) error {
		r, err := unix.Socket(family, unix.SOCK_STREAM, proto)
		errnoOf(uintptr(r), 0)
		return err
	}
	for name, profile := range map[string]*configs.Seccomp{"alone": WithoutMPTCP(nil), "with the agent profile": WithoutMPTCP(AgentProfile(nil))} {
		onThreadWith(t, profile, func() {
			for _, family := range []int{unix.AF_INET, unix.AF_INET6} {
				if err := socket(family, unix.IPPROTO_MPTCP); !errors.Is(err, unix.EPROTONOSUPPORT) {
					t.Errorf("%s: MPTCP socket of family %d: got %v, want EPROTONOSUPPORT", name, family, err)
				}
			}
			if err := socket(unix.AF_INET, 0); err != nil {
				t.Errorf("%s: TCP socket: %v, want success", name, err)
			}
			if err := socket(unix.AF_INET, unix.IPPROTO_TCP); err != nil {
				t.Errorf("%s: TCP socket (IPPROTO_TCP): %v, want success", name, err)
			}
		})
	}
}
