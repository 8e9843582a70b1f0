// Package seccomp builds clawrun's "agent" seccomp profile: a filter that
// is stacked on top of the container's own (the spec's) profile, so that a
// system call runs only if both allow it. The kernel evaluates every filter
// a thread carries and applies the most restrictive result, so stacking is
// exact where merging two profiles by hand would not be.
//
// The profile is stricter than Docker's default: it closes the escape and
// inspection routes an AI agent has no use for (ptrace, foreign memory,
// pidfd tricks, running a binary without a path, mounts and namespaces,
// user namespaces, eBPF, io_uring, raw and exotic sockets, kernel keyrings
// and modules). The landlock_* calls stay allowed.
package seccomp

import (
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

// Socket families the agent may not open.
var deniedFamilies = []uint64{unix.AF_PACKET, unix.AF_BLUETOOTH, unix.AF_VSOCK}

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
	for _, family := range deniedFamilies {
		calls = append(calls, deny("socket", &configs.Arg{Index: 0, Value: family, Op: configs.EqualTo}))
	}
	// Netlink: only NETLINK_ROUTE (addresses and routes, as ip(8) reads them).
	calls = append(calls, deny("socket",
		&configs.Arg{Index: 0, Value: unix.AF_NETLINK, Op: configs.EqualTo},
		&configs.Arg{Index: 2, Value: unix.NETLINK_ROUTE, Op: configs.NotEqualTo}))
	return &configs.Seccomp{DefaultAction: configs.Allow, Syscalls: calls}
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
