// Command probe is a tiny static program that the policy tests (and the
// demo) copy into a container's root filesystem to try one thing the
// policy allows or forbids, and say precisely how it went.
//
// Every subcommand prints one line and exits:
//
//	OK [detail]                  exit 0: the action succeeded
//	ERR <ERRNO> <message>        exit 1: it failed with that errno (EPERM, EACCES, ENOSYS...)
//	ERR EXIT <message>           exit 1: a process it ran exited non-zero
//	ERR NOPRIV <message>         exit 1: a setuid binary ran without gaining its owner
//	ERR USAGE <message>          exit 2: bad arguments
//
// Subcommands (see the table in init for their arguments):
//
//	true, say MSG, id                      run at all; print ids
//	read, write, create, mkdir, mkfifo,    file system (Landlock)
//	remove, rename, truncate, link, symlink
//	exec PATH [ARG...]                     run a program and wait for it
//	execveat PATH, memfd-exec              run a program without a path
//	setuid-exec PATH                       does a setuid binary gain its owner?
//	ptrace PID, pidfd-open PID, kill PID SIG
//	pidfd-getfd, vm-write, mem-write PID   take a descriptor, write memory,
//	                                       open /proc/PID/mem for writing
//	unshare-user, mount [DIR], fsopen, io-uring, bpf, userfaultfd,
//	keyctl, clone3
//	socket KIND, socketpair KIND           one socket (pair) of a kind: unix,
//	                                       inet, inet6, mptcp, mptcp6 (TCP
//	                                       sockets of protocol IPPROTO_MPTCP),
//	                                       raw, netlink-route, netlink-audit,
//	                                       packet, vsock, alg, tipc, rds, can,
//	                                       xdp, appletalk, x25, bluetooth
//	socket-sweep socket|socketpair [MAX]   try every family 0..MAX (default
//	                                       63): "OK eperm=N,N,..." lists the
//	                                       families refused with EPERM, or
//	                                       "OK eperm=none"
//	personality PERSONA                    set the execution domain (hex with
//	                                       0x, or decimal): "OK was 0x..."
//	chmod PATH MODE, chown PATH UID GID,   metadata (which Landlock does not
//	setxattr PATH NAME VALUE, utimes PATH  govern)
//	pause                                  wait for SIGTERM or SIGINT, like
//	                                       a pod's pause container
//	abstract-listen NAME [SECONDS], abstract-connect NAME
//	sd-notify STATE...                     one sd_notify datagram to $NOTIFY_SOCKET
//
// Landlock refuses with EACCES (EXDEV for a link or rename that would
// move a file to a more permissive place), clawrun's agent seccomp profile
// with EPERM (ENOSYS for clone3). The message names the system call that
// failed, so that a test can tell an open from a write.
//
// It uses only the standard library and golang.org/x/sys/unix, and is
// built with CGO_ENABLED=0: a static binary that runs in a busybox rootfs.
package main

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

type command struct {
	args  string // usage of the arguments
	nargs int    // minimum number of arguments; -1 when variadic with no minimum
	max   int    // maximum number of arguments; -1 for unbounded
	run   func(args []string) error
}

var commands map[string]command

func init() {
	commands = map[string]command{
		"true":             {"", 0, 0, func([]string) error { return nil }},
		"say":              {"MESSAGE...", 0, -1, func(a []string) error { return okWith(strings.Join(a, " ")) }},
		"id":               {"", 0, 0, cmdID},
		"read":             {"PATH", 1, 1, cmdRead},
		"write":            {"PATH [DATA]", 1, 2, cmdWrite},
		"create":           {"PATH", 1, 1, cmdCreate},
		"mkdir":            {"PATH", 1, 1, func(a []string) error { return errSys("mkdir", unix.Mkdir(a[0], 0o755)) }},
		"mkfifo":           {"PATH", 1, 1, func(a []string) error { return errSys("mknod", unix.Mkfifo(a[0], 0o644)) }},
		"remove":           {"PATH", 1, 1, cmdRemove},
		"rename":           {"OLD NEW", 2, 2, func(a []string) error { return errSys("rename", unix.Rename(a[0], a[1])) }},
		"truncate":         {"PATH", 1, 1, func(a []string) error { return errSys("truncate", unix.Truncate(a[0], 0)) }},
		"link":             {"OLD NEW", 2, 2, func(a []string) error { return errSys("link", unix.Link(a[0], a[1])) }},
		"symlink":          {"TARGET LINK", 2, 2, func(a []string) error { return errSys("symlink", unix.Symlink(a[0], a[1])) }},
		"exec":             {"PATH [ARG...]", 1, -1, cmdExec},
		"execveat":         {"PATH", 1, 1, cmdExecveat},
		"memfd-exec":       {"", 0, 0, cmdMemfdExec},
		"setuid-exec":      {"PATH", 1, 1, cmdSetuidExec},
		"ptrace":           {"PID", 1, 1, cmdPtrace},
		"pidfd-open":       {"PID", 1, 1, cmdPidfdOpen},
		"pidfd-getfd":      {"", 0, 0, cmdPidfdGetfd},
		"vm-write":         {"", 0, 0, cmdVMWrite},
		"mem-write":        {"PID", 1, 1, cmdMemWrite},
		"unshare-user":     {"", 0, 0, cmdUnshareUser},
		"mount":            {"[DIR]", 0, 1, cmdMount},
		"fsopen":           {"", 0, 0, cmdFsopen},
		"io-uring":         {"", 0, 0, cmdIOUring},
		"bpf":              {"", 0, 0, cmdBPF},
		"userfaultfd":      {"", 0, 0, cmdUserfaultfd},
		"keyctl":           {"", 0, 0, cmdKeyctl},
		"clone3":           {"", 0, 0, cmdClone3},
		"socket":           {"KIND (see socketKinds)", 1, 1, cmdSocket},
		"socketpair":       {"KIND (see socketKinds)", 1, 1, cmdSocketpair},
		"kill":             {"PID SIG", 2, 2, cmdKill},
		"abstract-listen":  {"NAME [SECONDS]", 1, 2, cmdAbstractListen},
		"abstract-connect": {"NAME", 1, 1, cmdAbstractConnect},
		"sd-notify":        {"STATE...", 1, -1, cmdSdNotify},
	}
}

func main() {
	if len(os.Args) < 2 {
		usage("no subcommand")
	}
	name, args := os.Args[1], os.Args[2:]
	c, ok := commands[name]
	if !ok {
		usage("unknown subcommand " + strconv.Quote(name))
	}
	if len(args) < c.nargs || (c.max >= 0 && len(args) > c.max) {
		usage(fmt.Sprintf("%s %s", name, c.args))
	}
	err := c.run(args)
	var ok2 okMsg
	switch {
	case err == nil:
		fmt.Println("OK")
	case errors.As(err, &ok2):
		fmt.Println(strings.TrimSpace("OK " + string(ok2)))
	default:
		fmt.Println("ERR " + describe(err))
		os.Exit(1)
	}
}

func usage(msg string) {
	fmt.Println("ERR USAGE " + msg)
	os.Exit(2)
}

// okMsg is a success that has something to say.
type okMsg string

func (m okMsg) Error() string { return string(m) }

func okWith(msg string) error { return okMsg(msg) }

// failure is an error that is not an errno.
type failure struct{ kind, msg string }

func (f failure) Error() string { return f.kind + " " + f.msg }

// describe turns err into "ERRNO message".
func describe(err error) string {
	var f failure
	if errors.As(err, &f) {
		return f.Error()
	}
	var errno syscall.Errno
	if errors.As(err, &errno) {
		name := unix.ErrnoName(errno)
		if name == "" {
			name = "E" + strconv.Itoa(int(errno))
		}
		return name + " " + err.Error()
	}
	return "EUNKNOWN " + err.Error()
}

// errSys wraps a failed system call's errno with its name.
func errSys(call string, err error) error {
	if err == nil {
		return nil
	}
	return fmt.Errorf("%s: %w", call, err)
}

func cmdID([]string) error {
	return okWith(fmt.Sprintf("uid=%d euid=%d gid=%d egid=%d", unix.Getuid(), unix.Geteuid(), unix.Getgid(), unix.Getegid()))
}

// cmdRead opens PATH for reading and reads it (a directory is listed).
func cmdRead(a []string) error {
	fd, err := unix.Open(a[0], unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return errSys("open", err)
	}
	defer unix.Close(fd)
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return errSys("fstat", err)
	}
	buf := make([]byte, 4096)
	if st.Mode&unix.S_IFMT == unix.S_IFDIR {
		_, err = unix.Getdents(fd, buf)
		return errSys("getdents64", err)
	}
	n, err := unix.Read(fd, buf)
	if err != nil {
		return errSys("read", err)
	}
	return okWith(fmt.Sprintf("%d bytes", n))
}

// cmdWrite opens PATH for writing (created if missing, truncated) and
// writes DATA (default "probe\n").
func cmdWrite(a []string) error {
	data := "probe\n"
	if len(a) > 1 {
		data = a[1]
	}
	fd, err := unix.Open(a[0], unix.O_WRONLY|unix.O_CREAT|unix.O_TRUNC|unix.O_CLOEXEC, 0o644)
	if err != nil {
		return errSys("open", err)
	}
	defer unix.Close(fd)
	if _, err := unix.Write(fd, []byte(data)); err != nil {
		return errSys("write", err)
	}
	return nil
}

func cmdCreate(a []string) error {
	fd, err := unix.Open(a[0], unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL|unix.O_CLOEXEC, 0o644)
	if err != nil {
		return errSys("open", err)
	}
	return errSys("close", unix.Close(fd))
}

func cmdRemove(a []string) error {
	var st unix.Stat_t
	if err := unix.Lstat(a[0], &st); err != nil {
		return errSys("lstat", err)
	}
	if st.Mode&unix.S_IFMT == unix.S_IFDIR {
		return errSys("rmdir", unix.Rmdir(a[0]))
	}
	return errSys("unlink", unix.Unlink(a[0]))
}

// runChild runs cmd and checks that it exits 0.
func runChild(what string, cmd *exec.Cmd) (string, error) {
	var out strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		return "", errSys(what, unwrapPath(err))
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			return out.String(), failure{"EXIT", fmt.Sprintf("%s: %v: %q", what, err, out.String())}
		}
		return out.String(), nil
	case <-time.After(20 * time.Second):
		_ = cmd.Process.Kill()
		return out.String(), failure{"TIMEOUT", what + ": still running after 20s"}
	}
}

// unwrapPath keeps the errno of a fork/exec error but drops os's wording.
func unwrapPath(err error) error {
	var pe *os.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}

// cmdExec runs PATH with ARGs and waits for it.
func cmdExec(a []string) error {
	cmd := &exec.Cmd{Path: a[0], Args: a}
	_, err := runChild("execve", cmd)
	return err
}

// execveat runs fd with AT_EMPTY_PATH in place of this process.
func execveat(fd int, argv []string) error {
	argvp, err := syscall.SlicePtrFromStrings(argv)
	if err != nil {
		return err
	}
	envp, err := syscall.SlicePtrFromStrings(os.Environ())
	if err != nil {
		return err
	}
	empty, _ := unix.BytePtrFromString("")
	_, _, errno := unix.Syscall6(unix.SYS_EXECVEAT, uintptr(fd), uintptr(unsafe.Pointer(empty)),
		uintptr(unsafe.Pointer(&argvp[0])), uintptr(unsafe.Pointer(&envp[0])), unix.AT_EMPTY_PATH, 0)
	return errno
}

// cmdExecveat runs PATH through an fd (execveat AT_EMPTY_PATH); on
// success the new image prints the OK.
func cmdExecveat(a []string) error {
	fd, err := unix.Open(a[0], unix.O_RDONLY, 0)
	if err != nil {
		return errSys("open", err)
	}
	err = execveat(fd, []string{a[0], "say", "ran through execveat"})
	return errSys("execveat", err)
}

// cmdMemfdExec copies this program into a memfd and runs it from there:
// a program with no path, which Landlock's EXECUTE right cannot see.
func cmdMemfdExec([]string) error {
	fd, err := unix.MemfdCreate("probe", 0)
	if err != nil {
		return errSys("memfd_create", err)
	}
	self, err := os.Open("/proc/self/exe")
	if err != nil {
		return errSys("open /proc/self/exe", unwrapPath(err))
	}
	mem := os.NewFile(uintptr(fd), "memfd")
	if _, err := io.Copy(mem, self); err != nil {
		return errSys("copy", err)
	}
	self.Close()
	err = execveat(fd, []string{"probe", "say", "ran from a memfd through execveat"})
	if !errors.Is(err, unix.ENOSYS) {
		return errSys("execveat", err)
	}
	path := "/proc/self/fd/" + strconv.Itoa(fd)
	return errSys("execve "+path, unix.Exec(path, []string{"probe", "say", "ran from a memfd through " + path}, os.Environ()))
}

// cmdSetuidExec runs PATH (a setuid copy of probe) as "PATH id" and says
// whether it gained its owner's effective uid.
func cmdSetuidExec(a []string) error {
	var st unix.Stat_t
	if err := unix.Stat(a[0], &st); err != nil {
		return errSys("stat", err)
	}
	if st.Mode&unix.S_ISUID == 0 {
		return failure{"USAGE", a[0] + " is not setuid"}
	}
	out, err := runChild("execve", &exec.Cmd{Path: a[0], Args: []string{a[0], "id"}})
	if err != nil {
		return err
	}
	line := strings.TrimSpace(out)
	var uid, euid, gid, egid int
	if _, err := fmt.Sscanf(line, "OK uid=%d euid=%d gid=%d egid=%d", &uid, &euid, &gid, &egid); err != nil {
		return failure{"EXIT", fmt.Sprintf("unexpected output of %s id: %q", a[0], line)}
	}
	if euid != int(st.Uid) {
		return failure{"NOPRIV", fmt.Sprintf("setuid bit ignored: euid=%d, the file's owner is %d", euid, st.Uid)}
	}
	return okWith(fmt.Sprintf("euid=%d", euid))
}

func atoiArg(s string) (int, error) {
	n, err := strconv.Atoi(s)
	if err != nil {
		return 0, failure{"USAGE", fmt.Sprintf("%q is not a number", s)}
	}
	return n, nil
}

// cmdPtrace seizes PID (attaches without stopping it); exiting detaches.
func cmdPtrace(a []string) error {
	pid, err := atoiArg(a[0])
	if err != nil {
		return err
	}
	if err := unix.PtraceSeize(pid); err != nil {
		// Old kernels: PTRACE_ATTACH instead.
		if !errors.Is(err, unix.EIO) {
			return errSys("ptrace(PTRACE_SEIZE)", err)
		}
		return errSys("ptrace(PTRACE_ATTACH)", unix.PtraceAttach(pid))
	}
	return nil
}

func cmdPidfdOpen(a []string) error {
	pid, err := atoiArg(a[0])
	if err != nil {
		return err
	}
	fd, err := unix.PidfdOpen(pid, 0)
	if err != nil {
		return errSys("pidfd_open", err)
	}
	return errSys("close", unix.Close(fd))
}

// cmdPidfdGetfd takes a copy of its own standard input through
// pidfd_getfd, as a process would take another's sockets. Where
// pidfd_open is refused it asks with an invalid pidfd: the refusal of
// pidfd_getfd itself is what is reported.
func cmdPidfdGetfd([]string) error {
	pidfd, err := unix.PidfdOpen(os.Getpid(), 0)
	if err != nil {
		pidfd = -1
	}
	fd, err := unix.PidfdGetfd(pidfd, 0, 0)
	if err != nil {
		return errSys("pidfd_getfd", err)
	}
	return errSys("close", unix.Close(fd))
}

// cmdVMWrite writes into its own memory through process_vm_writev, as a
// process would inject into another.
func cmdVMWrite([]string) error {
	src, dst := []byte("injected"), make([]byte, 8)
	local := []unix.Iovec{{Base: &src[0], Len: uint64(len(src))}}
	remote := []unix.RemoteIovec{{Base: uintptr(unsafe.Pointer(&dst[0])), Len: len(dst)}}
	if _, err := unix.ProcessVMWritev(os.Getpid(), local, remote, 0); err != nil {
		return errSys("process_vm_writev", err)
	}
	return okWith(string(dst))
}

// cmdMemWrite opens /proc/PID/mem for writing ("self" for its own).
func cmdMemWrite(a []string) error {
	f, err := os.OpenFile("/proc/"+a[0]+"/mem", os.O_WRONLY, 0)
	if err != nil {
		return errSys("open", err)
	}
	return errSys("close", f.Close())
}

// cmdUnshareUser starts a child in a new user namespace (clone with
// CLONE_NEWUSER): a Go program has threads, which unshare(CLONE_NEWUSER)
// refuses with EINVAL whatever the policy.
func cmdUnshareUser([]string) error {
	cmd := exec.Command("/proc/self/exe", "say", "in a new user namespace")
	cmd.SysProcAttr = &syscall.SysProcAttr{Cloneflags: syscall.CLONE_NEWUSER}
	out, err := runChild("clone(CLONE_NEWUSER)", cmd)
	if err != nil {
		return err
	}
	return okWith(strings.TrimPrefix(strings.TrimSpace(out), "OK "))
}

// cmdMount mounts a tmpfs on DIR (default: a new directory under /tmp)
// and unmounts it.
func cmdMount(a []string) error {
	dir := ""
	if len(a) > 0 {
		dir = a[0]
	} else {
		d, err := os.MkdirTemp("", "probe-mnt")
		if err != nil {
			return errSys("mkdir", unwrapPath(err))
		}
		defer os.Remove(d)
		dir = d
	}
	if err := unix.Mount("probe", dir, "tmpfs", 0, "size=64k"); err != nil {
		return errSys("mount", err)
	}
	return errSys("umount2", unix.Unmount(dir, unix.MNT_DETACH))
}

func cmdFsopen([]string) error {
	fd, err := unix.Fsopen("tmpfs", unix.FSOPEN_CLOEXEC)
	if err != nil {
		return errSys("fsopen", err)
	}
	return errSys("close", unix.Close(fd))
}

// ioUringParams is struct io_uring_params (120 bytes).
type ioUringParams struct {
	SqEntries, CqEntries, Flags, SqThreadCPU, SqThreadIdle, Features, WqFd uint32
	Resv                                                                   [3]uint32
	SqOff                                                                  [10]uint32
	CqOff                                                                  [10]uint32
}

func cmdIOUring([]string) error {
	var p ioUringParams
	fd, _, errno := unix.Syscall(unix.SYS_IO_URING_SETUP, 4, uintptr(unsafe.Pointer(&p)), 0)
	if errno != 0 {
		return errSys("io_uring_setup", errno)
	}
	return errSys("close", unix.Close(int(fd)))
}

// bpfMapCreate is the BPF_MAP_CREATE part of union bpf_attr.
type bpfMapCreate struct {
	MapType, KeySize, ValueSize, MaxEntries, MapFlags uint32
	_                                                 [108]byte
}

func cmdBPF([]string) error {
	attr := bpfMapCreate{MapType: 2 /* BPF_MAP_TYPE_ARRAY */, KeySize: 4, ValueSize: 4, MaxEntries: 1}
	fd, _, errno := unix.Syscall(unix.SYS_BPF, 0 /* BPF_MAP_CREATE */, uintptr(unsafe.Pointer(&attr)), unsafe.Sizeof(attr))
	if errno != 0 {
		return errSys("bpf(BPF_MAP_CREATE)", errno)
	}
	return errSys("close", unix.Close(int(fd)))
}

func cmdUserfaultfd([]string) error {
	// UFFD_USER_MODE_ONLY: allowed without privilege when the sysctl
	// vm.unprivileged_userfaultfd is 0.
	const uffdUserModeOnly = 1
	fd, _, errno := unix.Syscall(unix.SYS_USERFAULTFD, unix.O_CLOEXEC|uffdUserModeOnly, 0, 0)
	if errno != 0 {
		return errSys("userfaultfd", errno)
	}
	return errSys("close", unix.Close(int(fd)))
}

func cmdKeyctl([]string) error {
	id, err := unix.KeyctlGetKeyringID(unix.KEY_SPEC_SESSION_KEYRING, false)
	if err != nil {
		return errSys("keyctl(KEYCTL_GET_KEYRING_ID)", err)
	}
	return okWith(fmt.Sprintf("session keyring %d", id))
}

// cmdClone3 calls clone3 with no arguments: a kernel that has it answers
// EINVAL (and creates nothing), a filter that hides it ENOSYS.
func cmdClone3([]string) error {
	_, _, errno := unix.RawSyscall(unix.SYS_CLONE3, 0, 0, 0)
	switch errno {
	case unix.EINVAL:
		return okWith("clone3 is available (EINVAL for an empty struct)")
	case 0:
		return failure{"EUNKNOWN", "clone3 with no arguments succeeded"}
	}
	return errSys("clone3", errno)
}

// socketKinds are the sockets "socket" and "socketpair" open: a family and
// a type and protocol that family accepts.
var socketKinds = map[string]struct{ domain, typ, proto int }{
	"unix":          {unix.AF_UNIX, unix.SOCK_STREAM, 0},
	"inet":          {unix.AF_INET, unix.SOCK_STREAM, 0},
	"inet6":         {unix.AF_INET6, unix.SOCK_STREAM, 0},
	"mptcp":         {unix.AF_INET, unix.SOCK_STREAM, unix.IPPROTO_MPTCP},
	"mptcp6":        {unix.AF_INET6, unix.SOCK_STREAM, unix.IPPROTO_MPTCP},
	"raw":           {unix.AF_INET, unix.SOCK_RAW, unix.IPPROTO_ICMP},
	"netlink-route": {unix.AF_NETLINK, unix.SOCK_RAW, unix.NETLINK_ROUTE},
	"netlink-audit": {unix.AF_NETLINK, unix.SOCK_RAW, unix.NETLINK_AUDIT},
	"packet":        {unix.AF_PACKET, unix.SOCK_RAW, int(htons(unix.ETH_P_ALL))},
	"vsock":         {unix.AF_VSOCK, unix.SOCK_STREAM, 0},
	"alg":           {unix.AF_ALG, unix.SOCK_SEQPACKET, 0},
	"tipc":          {unix.AF_TIPC, unix.SOCK_RDM, 0},
	"rds":           {unix.AF_RDS, unix.SOCK_SEQPACKET, 0},
	"can":           {unix.AF_CAN, unix.SOCK_RAW, unix.CAN_RAW},
	"xdp":           {unix.AF_XDP, unix.SOCK_RAW, 0},
	"appletalk":     {unix.AF_APPLETALK, unix.SOCK_DGRAM, 0},
	"x25":           {unix.AF_X25, unix.SOCK_SEQPACKET, 0},
	"bluetooth":     {unix.AF_BLUETOOTH, unix.SOCK_RAW, unix.BTPROTO_HCI},
}

func socketKindNames() string {
	names := make([]string, 0, len(socketKinds))
	for n := range socketKinds {
		names = append(names, n)
	}
	sort.Strings(names)
	return strings.Join(names, "|")
}

// cmdSocket opens (and closes) one socket of a kind.
func cmdSocket(a []string) error {
	k, ok := socketKinds[a[0]]
	if !ok {
		return failure{"USAGE", "socket " + socketKindNames()}
	}
	fd, err := unix.Socket(k.domain, k.typ|unix.SOCK_CLOEXEC, k.proto)
	if err != nil {
		return errSys("socket("+a[0]+")", err)
	}
	return errSys("close", unix.Close(fd))
}

// cmdSocketpair opens (and closes) a connected pair of a kind.
func cmdSocketpair(a []string) error {
	k, ok := socketKinds[a[0]]
	if !ok {
		return failure{"USAGE", "socketpair " + socketKindNames()}
	}
	fds, err := unix.Socketpair(k.domain, k.typ|unix.SOCK_CLOEXEC, k.proto)
	if err != nil {
		return errSys("socketpair("+a[0]+")", err)
	}
	unix.Close(fds[0])
	return errSys("close", unix.Close(fds[1]))
}

func htons(v uint16) uint16 { return v<<8 | v>>8 }

func cmdKill(a []string) error {
	pid, err := atoiArg(a[0])
	if err != nil {
		return err
	}
	sig, err := parseSignal(a[1])
	if err != nil {
		return err
	}
	return errSys("kill", unix.Kill(pid, sig))
}

func parseSignal(s string) (unix.Signal, error) {
	if n, err := strconv.Atoi(s); err == nil {
		return unix.Signal(n), nil
	}
	name := strings.ToUpper(s)
	if !strings.HasPrefix(name, "SIG") {
		name = "SIG" + name
	}
	if sig := unix.SignalNum(name); sig != 0 {
		return sig, nil
	}
	return 0, failure{"USAGE", fmt.Sprintf("unknown signal %q", s)}
}

// cmdAbstractListen listens on the abstract unix socket @NAME, prints OK
// once it does, then answers "hello\n" to every connection for SECONDS
// (default 30) and exits 0.
func cmdAbstractListen(a []string) error {
	secs := 30
	if len(a) > 1 {
		n, err := atoiArg(a[1])
		if err != nil {
			return err
		}
		secs = n
	}
	l, err := net.ListenUnix("unix", &net.UnixAddr{Name: "@" + a[0], Net: "unix"})
	if err != nil {
		return errSys("listen @"+a[0], err)
	}
	defer l.Close()
	fmt.Println("OK listening on @" + a[0])
	_ = l.SetDeadline(time.Now().Add(time.Duration(secs) * time.Second))
	for {
		c, err := l.AcceptUnix()
		if err != nil {
			os.Exit(0) // the deadline: the OK was printed already
		}
		_, _ = c.Write([]byte("hello\n"))
		c.Close()
	}
}

// cmdAbstractConnect connects to @NAME and reads the listener's greeting.
func cmdAbstractConnect(a []string) error {
	c, err := net.DialUnix("unix", nil, &net.UnixAddr{Name: "@" + a[0], Net: "unix"})
	if err != nil {
		return errSys("connect @"+a[0], err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		return errSys("read", err)
	}
	return okWith("got " + strings.TrimSpace(line))
}

// cmdSdNotify sends the states (READY=1, STATUS=...) as one datagram to
// $NOTIFY_SOCKET, as sd_notify(3) does.
func cmdSdNotify(a []string) error {
	path := os.Getenv("NOTIFY_SOCKET")
	if path == "" {
		return failure{"NOENV", "NOTIFY_SOCKET is not set"}
	}
	c, err := net.DialUnix("unixgram", nil, &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		return errSys("connect "+path, err)
	}
	defer c.Close()
	if _, err := c.Write([]byte(strings.Join(a, "\n"))); err != nil {
		return errSys("send", err)
	}
	return nil
}
