// Package seccomp builds clawrun's "agent" seccomp profile: a filter that
// is stacked on top of the container's own (the spec's) profile, so that a
// system call runs only if both allow it. The kernel evaluates every filter
// a thread carries and applies the most restrictive result, so stacking is
// exact where merging two profiles by hand would not be.
//
// The profile is stricter than Docker's default: it closes the escape and
// inspection routes an AI agent has no use for (ptrace, foreign memory,
// pidfd tricks, running a binary without a path, mounts and namespaces,
// user namespaces, eBPF, io_uring, socket families other than unix, IP and
// netlink routing, execution domains that weaken the process such as
// READ_IMPLIES_EXEC, kernel keyrings and modules). The landlock_* calls
// stay allowed.
package seccomp

import (
	"slices"
	"sort"

	"github.com/opencontainers/runc/libcontainer/configs"
	"golang.org/x/sys/unix"
)

// Profile names accepted in a policy's clawrun.seccomp.profile.
const (
	ProfileAgent = "agent"
	ProfileNone  = "none"
)

// AgentDenied are the calls the agent profile refuses with EPERM.
var AgentDenied = []string{
	// Inspecting or steering other processes.
	"ptrace", "process_vm_readv", "process_vm_writev", "kcmp",
	"pidfd_open", "pidfd_getfd", "pidfd_send_signal",
	// Executing code that has no path (gets around Landlock's EXECUTE).
	"memfd_create", "memfd_secret",
	// Mounts, the new mount API, namespaces.
	"mount", "umount2", "pivot_root", "chroot", "setns",
	"fsopen", "fsconfig", "fsmount", "fspick", "move_mount", "open_tree", "mount_setattr",
	"open_by_handle_at", "name_to_handle_at",
	// Kernel attack surface an agent does not need.
	"bpf", "perf_event_open", "userfaultfd", "io_uring_setup", "io_uring_enter", "io_uring_register",
	"kexec_load", "kexec_file_load", "init_module", "finit_module", "delete_module",
	"keyctl", "add_key", "request_key", "lookup_dcookie",
	"swapon", "swapoff", "reboot", "acct", "quotactl", "quotactl_fd",
	"iopl", "ioperm", "syslog", "uselib", "vhangup",
	"settimeofday", "clock_settime", "clock_adjtime", "adjtimex",
	"fanotify_init", "nfsservctl", "_sysctl",
}

// allowedFamilies are the socket families an agent may open: unix and IP
// sockets, and netlink (NETLINK_ROUTE only, see AgentProfile). The rest
// (packet, vsock, bluetooth, alg, tipc, rds, can, xdp, ...) is kernel
// attack surface agents do not use.
var allowedFamilies = []uint64{unix.AF_UNIX, unix.AF_INET, unix.AF_INET6, unix.AF_NETLINK}

// allowedPersonalities are the execution domains Docker's default profile
// allows: PER_LINUX, PER_LINUX32, UNAME26, PER_LINUX32|UNAME26, and
// 0xffffffff, which only reads the current one. Other flags, such as
// READ_IMPLIES_EXEC (every readable mapping executable) or
// ADDR_NO_RANDOMIZE, weaken the process's own protections.
var allowedPersonalities = []uint64{0x0, 0x8, 0x20000, 0x20008, 0xffffffff}

// AgentProfile returns the agent filter, with extra denied calls. The
// default action is allow: this filter only subtracts from the spec's.
func AgentProfile(extraDeny []string) *configs.Seccomp {
	eperm := uint(unix.EPERM)
	enosys := uint(unix.ENOSYS)
	deny := func(name string, args ...*configs.Arg) *configs.Syscall {
		return &configs.Syscall{Name: name, Action: configs.Errno, ErrnoRet: &eperm, Args: args}
	}
	var calls []*configs.Syscall
	for _, name := range unique(append(append([]string(nil), AgentDenied...), extraDeny...)) {
		calls = append(calls, deny(name))
	}
	// clone3 passes its flags in a struct a filter cannot read: report it
	// as missing, and libc falls back to clone, whose flags are checked.
	calls = append(calls, &configs.Syscall{Name: "clone3", Action: configs.Errno, ErrnoRet: &enosys})
	newUser := &configs.Arg{Index: 0, Value: unix.CLONE_NEWUSER, ValueTwo: unix.CLONE_NEWUSER, Op: configs.MaskEqualTo}
	calls = append(calls, deny("clone", newUser), deny("unshare", newUser))
	// execveat(fd, "", ..., AT_EMPTY_PATH) runs an fd, e.g. of a memfd.
	calls = append(calls, deny("execveat", &configs.Arg{Index: 4, Value: unix.AT_EMPTY_PATH, ValueTwo: unix.AT_EMPTY_PATH, Op: configs.MaskEqualTo}))
	for _, name := range []string{"socket", "socketpair"} {
		for _, family := range outside(allowedFamilies) {
			calls = append(calls, deny(name, family))
		}
		// Netlink: only NETLINK_ROUTE (addresses and routes, as ip(8) reads them).
		calls = append(calls, deny(name,
			&configs.Arg{Index: 0, Value: unix.AF_NETLINK, Op: configs.EqualTo},
			&configs.Arg{Index: 2, Value: unix.NETLINK_ROUTE, Op: configs.NotEqualTo}))
	}
	for _, persona := range personalitiesOutside(allowedPersonalities) {
		calls = append(calls, deny("personality", persona))
	}
	return &configs.Seccomp{DefaultAction: configs.Allow, Syscalls: calls}
}

// The rules below compare the first argument, and each rule compares it
// once: libcontainer turns several comparisons of one argument into as
// many rules, any of which denies (libseccomp takes one comparison per
// argument in a rule), so "not this and not that" cannot be one rule.
// The denied values are therefore covered by a union of single
// comparisons. They compare all 64 bits of the register, although the
// kernel reads an int: a value whose upper half is set is denied rather
// than let through as its lower half.

// outside returns comparisons of argument 0 that together hold exactly
// for the values not in allowed (small numbers, such as socket families).
func outside(allowed []uint64) []*configs.Arg {
	var conds []*configs.Arg
	top := slices.Max(allowed)
	for v := range top {
		if !slices.Contains(allowed, v) {
			conds = append(conds, &configs.Arg{Index: 0, Value: v, Op: configs.EqualTo})
		}
	}
	return append(conds, &configs.Arg{Index: 0, Value: top, Op: configs.GreaterThan})
}

// personalitiesOutside returns comparisons of argument 0 that together
// hold exactly for the values not in allowed, which must be made of the
// query 0xffffffff and values whose bits all lie in a set B no two bits
// of which are neighbours (for Docker's list: bits 3 and 17).
//
// A value v is denied iff v > 0xffffffff, or v has a bit p outside B set
// and is not 0xffffffff, i.e. has some bit q < 32 clear. Walking up from
// such a p (modulo 32) over set bits, the last set bit outside B before
// the first clear bit c is followed only by bits of B, at most one since
// B has no neighbours: so v matches "p set, p+1 clear" or "p set, p+2
// clear" for a p outside B (p+1 in B). Each of those, a masked
// comparison, holds only for denied values: p set rules out the small
// allowed values, a clear bit rules out 0xffffffff. 32 rules and one.
func personalitiesOutside(allowed []uint64) []*configs.Arg {
	var b uint64
	for _, v := range allowed {
		if v != 0xffffffff {
			b |= v
		}
	}
	inB := func(bit int) bool { return b&(1<<bit) != 0 }
	setAndClear := func(set, clear int) *configs.Arg {
		mask := uint64(1)<<set | uint64(1)<<clear
		return &configs.Arg{Index: 0, Value: mask, ValueTwo: uint64(1) << set, Op: configs.MaskEqualTo}
	}
	conds := []*configs.Arg{{Index: 0, Value: 0xffffffff, Op: configs.GreaterThan}}
	for p := range 32 {
		if inB(p) && inB((p+1)%32) {
			panic("seccomp: allowed personalities with neighbouring bits")
		}
		if inB(p) {
			continue
		}
		conds = append(conds, setAndClear(p, (p+1)%32))
		if inB((p + 1) % 32) {
			conds = append(conds, setAndClear(p, (p+2)%32))
		}
	}
	return conds
}

func unique(names []string) []string {
	sort.Strings(names)
	out := names[:0]
	for i, n := range names {
		if i == 0 || n != names[i-1] {
			out = append(out, n)
		}
	}
	return out
}

// WithoutMPTCP returns profile (nil: a filter that allows everything) with
// Multipath TCP sockets refused. Landlock's TCP port rules (tcp_bind,
// tcp_connect) govern sockets of protocol IPPROTO_TCP only, and a socket of
// protocol IPPROTO_MPTCP binds and connects like one, so a policy with TCP
// port rules needs it. The refusal is EPROTONOSUPPORT, what a kernel
// without Multipath TCP answers: programs that try it first (Go's
// listeners do by default) fall back to TCP, whose ports Landlock checks.
func WithoutMPTCP(profile *configs.Seccomp) *configs.Seccomp {
	if profile == nil {
		profile = &configs.Seccomp{DefaultAction: configs.Allow}
	}
	noProto := uint(unix.EPROTONOSUPPORT)
	for _, family := range []uint64{unix.AF_INET, unix.AF_INET6} {
		profile.Syscalls = append(profile.Syscalls, &configs.Syscall{
			Name: "socket", Action: configs.Errno, ErrnoRet: &noProto,
			Args: []*configs.Arg{
				{Index: 0, Value: family, Op: configs.EqualTo},
				{Index: 2, Value: unix.IPPROTO_MPTCP, Op: configs.EqualTo},
			},
		})
	}
	return profile
}
