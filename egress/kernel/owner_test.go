package kernel

// The processes of a connection, found in a namespace of the test's own:
// helper processes (this test binary, re-run) connect to a listener of
// the namespace and share their sockets in the ways an agent could.
// Needs root (namespaces).

import (
	"bufio"
	"encoding/hex"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

const (
	ownerHelperEnv = "CLAWRUN_OWNER_HELPER" // the helper's mode
	ownerNetnsEnv  = "CLAWRUN_OWNER_NETNS"  // the namespace it joins
	ownerAddrEnv   = "CLAWRUN_OWNER_ADDR"   // where it connects
	ownerCountEnv  = "CLAWRUN_OWNER_COUNT"  // processes an anchor starts
)

// The main goroutine stays on the main thread, whose namespace is the
// process's: a helper joins the namespace there.
func init() { runtime.LockOSThread() }

func TestMain(m *testing.M) {
	if mode := os.Getenv(ownerHelperEnv); mode != "" {
		if err := ownerHelper(mode); err != nil {
			fmt.Println("error:", err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// ownerHelper is a helper process. anchor: holds a new namespace and
// starts COUNT sleeping processes in it, each with 10 more open files;
// hold: keeps its inherited files; the others join the namespace, connect
// to ADDR and share the connection as their mode says, print
// "local=ADDR child=PID" and wait for stdin to close.
func ownerHelper(mode string) error {
	switch mode {
	case "anchor":
		return anchorHelper()
	case "hold":
		select {} // until the parent's death signal
	}
	ns, err := os.Open(os.Getenv(ownerNetnsEnv))
	if err != nil {
		return err
	}
	if err := unix.Setns(int(ns.Fd()), unix.CLONE_NEWNET); err != nil {
		return err
	}
	dst := netip.MustParseAddrPort(os.Getenv(ownerAddrEnv))
	if mode == "v4mapped" {
		return v4MappedHelper(dst)
	}
	sock, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return err
	}
	child := 0
	switch mode {
	case "reuseport":
		// A listener on the connection's own address and port, held by
		// another process only.
		l, err := reusePortSocket(netip.MustParseAddrPort("127.0.0.1:0"))
		if err != nil {
			return err
		}
		if err := unix.Listen(l, 1); err != nil {
			return err
		}
		sa, _ := unix.Getsockname(l)
		port := sa.(*unix.SockaddrInet4).Port
		if child, err = startHolding(l); err != nil {
			return err
		}
		unix.Close(l)
		unix.Close(sock)
		if sock, err = reusePortSocket(netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), uint16(port))); err != nil {
			return err
		}
	}
	if err := unix.Connect(sock, &unix.SockaddrInet4{Port: int(dst.Port()), Addr: dst.Addr().As4()}); err != nil {
		return err
	}
	sa, _ := unix.Getsockname(sock)
	local := netip.AddrPortFrom(netip.AddrFrom4(sa.(*unix.SockaddrInet4).Addr), uint16(sa.(*unix.SockaddrInet4).Port))
	switch mode {
	case "fork":
		if child, err = startHolding(sock); err != nil {
			return err
		}
	case "thread":
		// Only another thread, with a file table of its own, keeps it.
		ready := make(chan error)
		go func() {
			runtime.LockOSThread() // for good: the thread goes with the table
			ready <- unix.Unshare(unix.CLONE_FILES)
			select {}
		}()
		if err := <-ready; err != nil {
			return err
		}
		unix.Close(sock)
	case "closed":
		unix.Close(sock)
	}
	fmt.Printf("local=%s child=%d\n", local, child)
	_, _ = bufio.NewReader(os.Stdin).ReadString('\n')
	return nil
}

// v4MappedHelper connects an IPv6 socket to an IPv4 address, as
// dual-stack programs (Java's) do.
func v4MappedHelper(dst netip.AddrPort) error {
	sock, err := unix.Socket(unix.AF_INET6, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return err
	}
	if err := unix.Connect(sock, &unix.SockaddrInet6{Port: int(dst.Port()), Addr: netip.AddrFrom16(dst.Addr().As16()).As16()}); err != nil {
		return err
	}
	sa, _ := unix.Getsockname(sock)
	local := netip.AddrPortFrom(netip.AddrFrom16(sa.(*unix.SockaddrInet6).Addr).Unmap(), uint16(sa.(*unix.SockaddrInet6).Port))
	fmt.Printf("local=%s child=0\n", local)
	_, _ = bufio.NewReader(os.Stdin).ReadString('\n')
	return nil
}

func anchorHelper() error {
	n, _ := strconv.Atoi(os.Getenv(ownerCountEnv))
	var extra []*os.File
	for range 10 {
		f, err := os.Open(os.DevNull)
		if err != nil {
			return err
		}
		extra = append(extra, f)
	}
	for range n {
		cmd := exec.Command("sleep", "600")
		cmd.ExtraFiles = extra
		cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
		if err := cmd.Start(); err != nil {
			return err
		}
	}
	fmt.Println("ready")
	_, _ = bufio.NewReader(os.Stdin).ReadString('\n')
	return nil
}

func reusePortSocket(addr netip.AddrPort) (int, error) {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return -1, err
	}
	for _, opt := range []int{unix.SO_REUSEADDR, unix.SO_REUSEPORT} {
		if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, opt, 1); err != nil {
			return -1, err
		}
	}
	return fd, unix.Bind(fd, &unix.SockaddrInet4{Port: int(addr.Port()), Addr: addr.Addr().As4()})
}

// startHolding starts a "hold" helper with fd as its fd 3.
func startHolding(fd int) (int, error) {
	dup, err := unix.Dup(fd)
	if err != nil {
		return 0, err
	}
	f := os.NewFile(uintptr(dup), "held")
	defer f.Close()
	cmd := exec.Command("/proc/self/exe")
	cmd.Env = append(os.Environ(), ownerHelperEnv+"=hold")
	cmd.ExtraFiles = []*os.File{f}
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return 0, err
	}
	return cmd.Process.Pid, nil
}

// ownerNet is a namespace with a listener (the proxy's stand-in, opened
// from outside as the filter does) and an Owners.
type ownerNet struct {
	t      *testing.T
	nsPath string
	ln     net.Listener
	owners *Owners
}

func newOwnerNet(t testing.TB, sleepers int) *ownerNet {
	if os.Geteuid() != 0 {
		t.Fatal("the owner tests need root: they create network namespaces")
	}
	anchor := exec.Command("/proc/self/exe")
	anchor.Env = append(os.Environ(), ownerHelperEnv+"=anchor", ownerCountEnv+"="+strconv.Itoa(sleepers))
	anchor.SysProcAttr = &syscall.SysProcAttr{Cloneflags: unix.CLONE_NEWNET, Pdeathsig: syscall.SIGKILL}
	helperLine(t, anchor)
	nsPath := fmt.Sprintf("/proc/%d/ns/net", anchor.Process.Pid)
	ns, err := os.Open(nsPath)
	if err != nil {
		t.Fatal(err)
	}
	defer ns.Close()
	if err := EnsureRoutes(int(ns.Fd())); err != nil {
		t.Fatal(err)
	}
	var ln net.Listener
	if err := inNetns(int(ns.Fd()), func() (err error) {
		ln, err = net.Listen("tcp4", "127.0.0.1:0")
		return err
	}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	owners, err := NewOwners(nsPath)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { owners.Close() })
	return &ownerNet{nsPath: nsPath, ln: ln, owners: owners}
}

// helperLine starts cmd (stopped at the test's end) and returns the first
// line it prints.
func helperLine(t testing.TB, cmd *exec.Cmd) string {
	t.Helper()
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		stdin.Close()
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	})
	line, err := bufio.NewReader(stdout).ReadString('\n')
	if err != nil || strings.HasPrefix(line, "error:") {
		t.Fatalf("helper %v: %q %v", cmd.Env[len(cmd.Env)-1], line, err)
	}
	return strings.TrimSpace(line)
}

// client runs a helper of the mode and returns the connection the
// listener accepted from it, the helper's pid and its child's (0: none).
func (n *ownerNet) client(t testing.TB, mode string) (net.Conn, int, int) {
	t.Helper()
	cmd := exec.Command("/proc/self/exe")
	cmd.Env = append(os.Environ(), ownerNetnsEnv+"="+n.nsPath, ownerAddrEnv+"="+n.ln.Addr().String(), ownerHelperEnv+"="+mode)
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	line := helperLine(t, cmd)
	var local string
	var child int
	if _, err := fmt.Sscanf(line, "local=%s child=%d", &local, &child); err != nil {
		t.Fatalf("helper said %q: %v", line, err)
	}
	_ = n.ln.(*net.TCPListener).SetDeadline(time.Now().Add(5 * time.Second))
	for {
		c, err := n.ln.Accept()
		if err != nil {
			t.Fatal(err)
		}
		if c.RemoteAddr().String() == local {
			t.Cleanup(func() { c.Close() })
			return c, cmd.Process.Pid, child
		}
		c.Close()
	}
}

func tuple(c net.Conn) (local, remote netip.AddrPort) {
	return AddrPort(c.RemoteAddr()), AddrPort(c.LocalAddr())
}

func testExe(t testing.TB) string {
	exe, err := os.Readlink("/proc/self/exe")
	if err != nil {
		t.Fatal(err)
	}
	return exe
}

func TestOwnersOneProcess(t *testing.T) {
	n := newOwnerNet(t, 0)
	c, pid, _ := n.client(t, "plain")
	local, remote := tuple(c)
	if pids, err := n.owners.processes(local, remote); err != nil || !slices.Equal(pids, []int{pid}) {
		t.Errorf("processes = %v, %v; want [%d]", pids, err, pid)
	}
	// Its parent, this test, is outside the namespace: the chain ends.
	if got := n.owners.Conn(c); len(got) != 1 || !slices.Equal(got[0], []string{testExe(t)}) {
		t.Errorf("Conn = %q, want [%s]", got, testExe(t))
	}
	// Another destination, another port: not this connection.
	other := netip.AddrPortFrom(remote.Addr(), remote.Port()+1)
	if pids, err := n.owners.processes(local, other); err == nil {
		t.Errorf("processes for another destination = %v", pids)
	}
}

// A dual-stack socket connected to an IPv4 address is found by the IPv4
// addresses the proxy sees.
func TestOwnersV4MappedSocket(t *testing.T) {
	n := newOwnerNet(t, 0)
	c, pid, _ := n.client(t, "v4mapped")
	local, remote := tuple(c)
	if pids, err := n.owners.processes(local, remote); err != nil || !slices.Equal(pids, []int{pid}) {
		t.Errorf("processes = %v, %v; want [%d]", pids, err, pid)
	}
}

// A listener sharing the connection's own address and port
// (SO_REUSEPORT), held by another process, is not the connection.
func TestOwnersReusePortListener(t *testing.T) {
	n := newOwnerNet(t, 0)
	c, pid, child := n.client(t, "reuseport")
	local, remote := tuple(c)
	if !listensOn(t, n.nsPath, local) {
		t.Fatalf("no listener on %s: the test sets up nothing", local)
	}
	if pids, err := n.owners.processes(local, remote); err != nil || !slices.Equal(pids, []int{pid}) {
		t.Errorf("processes = %v, %v; want [%d] (the listener's holder is %d)", pids, err, pid, child)
	}
}

// listensOn reports whether the namespace has a listening TCP socket on
// exactly addr (as /proc/net/tcp shows it).
func listensOn(t *testing.T, nsPath string, addr netip.AddrPort) bool {
	pid := strings.Split(nsPath, "/")[2]
	data, err := os.ReadFile("/proc/" + pid + "/net/tcp")
	if err != nil {
		t.Fatal(err)
	}
	b := addr.Addr().As4()
	want := strings.ToUpper(hex.EncodeToString([]byte{b[3], b[2], b[1], b[0]})) + fmt.Sprintf(":%04X", addr.Port())
	for line := range strings.SplitSeq(string(data), "\n") {
		if f := strings.Fields(line); len(f) > 3 && f[1] == want && f[3] == "0A" {
			return true
		}
	}
	return false
}

// Every process holding the socket counts, with its own chain.
func TestOwnersSharedByFork(t *testing.T) {
	n := newOwnerNet(t, 0)
	c, pid, child := n.client(t, "fork")
	local, remote := tuple(c)
	pids, err := n.owners.processes(local, remote)
	slices.Sort(pids)
	if want := []int{pid, child}; err != nil || !slices.Equal(pids, want) {
		t.Errorf("processes = %v, %v; want %v", pids, err, want)
	}
	exe := testExe(t)
	got := n.owners.TCP(local, remote)
	slices.SortFunc(got, func(a, b []string) int { return len(a) - len(b) })
	if len(got) != 2 || !slices.Equal(got[0], []string{exe}) || !slices.Equal(got[1], []string{exe, exe}) {
		t.Errorf("chains = %q, want the helper's and its child's (with the helper as ancestor)", got)
	}
}

// A thread with a file table of its own is searched too.
func TestOwnersPrivateThreadTable(t *testing.T) {
	n := newOwnerNet(t, 0)
	c, pid, _ := n.client(t, "thread")
	local, remote := tuple(c)
	inode, err := n.owners.connectedInode(local, remote)
	if err != nil {
		t.Fatal(err)
	}
	target := "socket:[" + strconv.FormatUint(uint64(inode), 10) + "]"
	if fdTableHas(t, fmt.Sprintf("/proc/%d/fd", pid), target) {
		t.Fatal("the process's main file table holds the socket: the test sets up nothing")
	}
	if pids, err := n.owners.processes(local, remote); err != nil || !slices.Equal(pids, []int{pid}) {
		t.Errorf("processes = %v, %v; want [%d]", pids, err, pid)
	}
}

// fdTableHas reports whether the fd directory dir links to target.
func fdTableHas(t *testing.T, dir, target string) bool {
	fds, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, fd := range fds {
		if link, _ := os.Readlink(dir + "/" + fd.Name()); link == target {
			return true
		}
	}
	return false
}

// A socket its process closed (or sent away) belongs to no one: unknown.
func TestOwnersClosedSocket(t *testing.T) {
	n := newOwnerNet(t, 0)
	c, _, _ := n.client(t, "closed")
	if got := n.owners.Conn(c); got != nil {
		t.Errorf("Conn = %q, want nil", got)
	}
}

// BenchmarkOwners: one lookup with 20 and 200 other processes in the
// namespace, each with 13 open files.
func BenchmarkOwners(b *testing.B) {
	for _, procs := range []int{20, 200} {
		b.Run(strconv.Itoa(procs)+"-processes", func(b *testing.B) {
			n := newOwnerNet(b, procs)
			c, _, _ := n.client(b, "plain")
			b.ResetTimer()
			start := cpuTime()
			for b.Loop() {
				if n.owners.Conn(c) == nil {
					b.Fatal("no owner")
				}
			}
			b.ReportMetric(float64((cpuTime()-start).Microseconds())/float64(b.N), "cpu-µs/op")
		})
	}
}

// cpuTime is the CPU time this process has used (the lookups run on a
// busy machine: wall time says little).
func cpuTime() time.Duration {
	var ru unix.Rusage
	_ = unix.Getrusage(unix.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
