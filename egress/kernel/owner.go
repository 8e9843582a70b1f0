package kernel

// Kernel side: which processes a connection belongs to. Used only when a
// network policy lists binaries.
//
// A connection is found by its exact addresses as the container sees
// them (its own address and port, and the destination it connected to,
// before the redirect), with sock_diag inside the container's namespace:
// only a connected socket has both, so a listener (SO_REUSEPORT lets one
// share the connection's own address and port) is never mistaken for it.
// Then every process of the namespace that holds that socket, in the file
// table of any of its threads, is found in /proc; each one's executable
// and its ancestors' form its chain. When any of this cannot be done
// for sure, the caller gets nil, and binary-restricted endpoints deny.
//
// What cannot be seen: a socket in flight in a unix socket's queue
// (SCM_RIGHTS) is held by no process, and a socket can change hands
// after the check. A process is what it runs at the time of the check.

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// Owners finds the processes that hold the connections of one network
// namespace.
type Owners struct {
	ns           *os.File
	nsDev, nsIno uint64
	mu           sync.Mutex // one sock_diag request at a time
	diag         int        // a NETLINK_SOCK_DIAG socket inside the namespace
	seq          uint32
}

// NewOwners opens the namespace at netnsPath (e.g. /proc/PID/ns/net) and
// a sock_diag socket inside it.
func NewOwners(netnsPath string) (*Owners, error) {
	ns, err := os.Open(netnsPath)
	if err != nil {
		return nil, fmt.Errorf("network namespace: %w", err)
	}
	var st unix.Stat_t
	if err := unix.Fstat(int(ns.Fd()), &st); err != nil {
		ns.Close()
		return nil, err
	}
	diag := -1
	err = inNetns(int(ns.Fd()), func() (err error) {
		diag, err = unix.Socket(unix.AF_NETLINK, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.NETLINK_SOCK_DIAG)
		return err
	})
	if err != nil {
		ns.Close()
		return nil, fmt.Errorf("sock_diag socket in the container's namespace: %w", err)
	}
	// A lost answer must not hold the proxy up.
	tv := unix.NsecToTimeval(time.Second.Nanoseconds())
	if err := unix.SetsockoptTimeval(diag, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv); err != nil {
		unix.Close(diag)
		ns.Close()
		return nil, err
	}
	return &Owners{ns: ns, nsDev: st.Dev, nsIno: st.Ino, diag: diag}, nil
}

// Close releases the namespace and the sock_diag socket.
func (o *Owners) Close() error {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.diag >= 0 {
		unix.Close(o.diag)
		o.diag = -1
	}
	return o.ns.Close()
}

// Conn returns the executable chain of each process holding the client
// side of a connection the proxy accepted from the namespace: the socket
// connected from the client's address to its original destination.
func (o *Owners) Conn(client net.Conn) [][]string {
	return o.TCP(AddrPort(client.RemoteAddr()), Destination(client))
}

// TCP returns the executable chain of each process holding the
// namespace's TCP socket connected from local to remote; nil when there is
// no such socket, no process holds it, or a holder cannot be told.
func (o *Owners) TCP(local, remote netip.AddrPort) [][]string {
	pids, err := o.processes(local, remote)
	if err != nil {
		return nil
	}
	chains := make([][]string, 0, len(pids))
	for _, pid := range pids {
		chain := o.exeChain(pid)
		if len(chain) == 0 {
			return nil // a holder that cannot be told (it may have just exited)
		}
		chains = append(chains, chain)
	}
	return chains
}

// processes returns the processes of the namespace that hold the TCP
// socket connected from local to remote (at least one).
func (o *Owners) processes(local, remote netip.AddrPort) ([]int, error) {
	inode, err := o.connectedInode(local, remote)
	if err != nil {
		return nil, err
	}
	pids, err := o.holders(inode)
	if err == nil && len(pids) == 0 {
		err = fmt.Errorf("no process holds the socket %s -> %s", local, remote)
	}
	return pids, err
}

// --- sock_diag ---

// connectedStates are the TCP states of a socket with a peer (uapi
// tcp_states.h): not LISTEN, nor TIME_WAIT (no socket file left), nor the
// half-open requests of a listener.
var connectedStates = map[uint8]bool{
	1:  true, // ESTABLISHED
	2:  true, // SYN_SENT
	4:  true, // FIN_WAIT1
	5:  true, // FIN_WAIT2
	8:  true, // CLOSE_WAIT
	9:  true, // LAST_ACK
	11: true, // CLOSING
}

const (
	sockDiagByFamily = 20 // SOCK_DIAG_BY_FAMILY
	inetDiagReqV2Len = 56 // struct inet_diag_req_v2: family, protocol, ext, pad, states, id
	inetDiagMsgLen   = 72 // struct inet_diag_msg: family, state, timer, retrans, id, expires, queues, uid, inode
	inetDiagNoCookie = ^uint32(0)
	nlmsgHdrLen      = unix.SizeofNlMsghdr
)

// connectedInode asks the kernel for the one TCP socket with exactly these
// addresses (not a dump: the established table is looked up) and returns
// its inode if it is connected.
func (o *Owners) connectedInode(local, remote netip.AddrPort) (uint32, error) {
	local, remote = unmapPort(local), unmapPort(remote)
	if !local.IsValid() || !remote.IsValid() || local.Addr().Is4() != remote.Addr().Is4() {
		return 0, fmt.Errorf("no socket for %s -> %s", local, remote)
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.diag < 0 {
		return 0, errors.New("closed")
	}
	o.seq++
	m, err := diagRoundTrip(o.diag, o.seq, diagRequest(o.seq, local, remote))
	if err != nil {
		return 0, err
	}
	return diagInode(m, local, remote)
}

// diagRoundTrip sends req (sequence number seq) on the sock_diag socket
// fd and returns the answer to it.
func diagRoundTrip(fd int, seq uint32, req []byte) (syscall.NetlinkMessage, error) {
	if err := unix.Sendto(fd, req, 0, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		return syscall.NetlinkMessage{}, err
	}
	buf := make([]byte, 8192)
	for {
		n, _, err := unix.Recvfrom(fd, buf, 0)
		if err != nil {
			return syscall.NetlinkMessage{}, err
		}
		msgs, err := syscall.ParseNetlinkMessage(buf[:n])
		if err != nil {
			return syscall.NetlinkMessage{}, err
		}
		for _, m := range msgs {
			if m.Header.Seq == seq {
				return m, nil
			}
			// the answer to an earlier request that timed out
		}
	}
}

// diagErrno is the error of an NLMSG_ERROR answer (nil: an
// acknowledgement).
func diagErrno(m syscall.NetlinkMessage) error {
	if len(m.Data) < 4 {
		return errors.New("sock_diag: no answer")
	}
	if errno := int32(binary.NativeEndian.Uint32(m.Data)); errno != 0 {
		return unix.Errno(-errno)
	}
	return nil
}

// diagRequest is a netlink message asking for the TCP socket from local
// to remote (one family).
func diagRequest(seq uint32, local, remote netip.AddrPort) []byte {
	return diagMessage(sockDiagByFamily, unix.NLM_F_REQUEST, seq, local, remote, noCookie)
}

// noCookie matches any socket (struct inet_diag_sockid's cookie).
const noCookie = uint64(inetDiagNoCookie)<<32 | uint64(inetDiagNoCookie)

// diagMessage is a sock_diag message of type typ about the TCP socket
// from local to remote (one family) whose cookie is cookie (noCookie:
// any).
func diagMessage(typ, flags uint16, seq uint32, local, remote netip.AddrPort, cookie uint64) []byte {
	b := make([]byte, nlmsgHdrLen+inetDiagReqV2Len)
	ne := binary.NativeEndian
	ne.PutUint32(b[0:], uint32(len(b)))
	ne.PutUint16(b[4:], typ)
	ne.PutUint16(b[6:], flags)
	ne.PutUint32(b[8:], seq)
	r := b[nlmsgHdrLen:]
	r[0] = unix.AF_INET6
	if local.Addr().Is4() {
		r[0] = unix.AF_INET
	}
	r[1] = unix.IPPROTO_TCP
	ne.PutUint32(r[4:], ^uint32(0)) // states: checked on the answer
	putSockID(r[8:], local, remote)
	ne.PutUint32(r[8+36:], 0) // any interface
	ne.PutUint32(r[8+40:], uint32(cookie))
	ne.PutUint32(r[8+44:], uint32(cookie>>32))
	return b
}

// putSockID writes the ports and addresses of a struct inet_diag_sockid.
func putSockID(b []byte, local, remote netip.AddrPort) {
	binary.BigEndian.PutUint16(b[0:], local.Port())
	binary.BigEndian.PutUint16(b[2:], remote.Port())
	copy(b[4:20], local.Addr().AsSlice())
	copy(b[20:36], remote.Addr().AsSlice())
}

// diagInode reads the answer to diagRequest: the socket's inode, if it
// is the connected socket asked for.
func diagInode(m syscall.NetlinkMessage, local, remote netip.AddrPort) (uint32, error) {
	switch m.Header.Type {
	case unix.NLMSG_ERROR:
		if err := diagErrno(m); err != nil {
			return 0, err
		}
		return 0, errors.New("sock_diag: no answer")
	case sockDiagByFamily:
	default:
		return 0, fmt.Errorf("sock_diag: unexpected message type %d", m.Header.Type)
	}
	d := m.Data
	if len(d) < inetDiagMsgLen {
		return 0, errors.New("sock_diag: short answer")
	}
	family, state := d[0], d[1]
	id := d[4:]
	gotLocal := netip.AddrPortFrom(diagAddr(family, id[4:20]), binary.BigEndian.Uint16(id[0:]))
	gotRemote := netip.AddrPortFrom(diagAddr(family, id[20:36]), binary.BigEndian.Uint16(id[2:]))
	if unmapPort(gotLocal) != local || unmapPort(gotRemote) != remote {
		return 0, fmt.Errorf("sock_diag: answered %s -> %s", gotLocal, gotRemote)
	}
	if !connectedStates[state] {
		return 0, fmt.Errorf("socket %s -> %s is in state %d, not connected", local, remote, state)
	}
	inode := binary.NativeEndian.Uint32(d[68:])
	if inode == 0 {
		return 0, fmt.Errorf("socket %s -> %s has no file", local, remote)
	}
	return inode, nil
}

func diagAddr(family uint8, b []byte) netip.Addr {
	if family == unix.AF_INET {
		return netip.AddrFrom4([4]byte(b[:4]))
	}
	return netip.AddrFrom16([16]byte(b[:16]))
}

func unmapPort(ap netip.AddrPort) netip.AddrPort {
	return netip.AddrPortFrom(ap.Addr().Unmap().WithZone(""), ap.Port())
}

// --- /proc ---
//
// Every lookup reads the file tables of all the namespace's processes:
// this is done with as few system calls as /proc allows (they are most
// of the cost): directories are read with getdents into one buffer, links
// read relative to their directory, and a process's threads are listed
// only when it has more than one.

// procScan is one search of /proc.
type procScan struct {
	proc  int    // /proc
	dents []byte // getdents buffer
	link  []byte // readlink buffer
}

// holders returns the processes of the namespace that hold the socket
// inode, in the file table of any of their threads.
func (o *Owners) holders(inode uint32) ([]int, error) {
	proc, err := unix.Open("/proc", unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, err
	}
	defer unix.Close(proc)
	ps := &procScan{proc: proc, dents: make([]byte, 32<<10), link: make([]byte, 64)}
	var pids []int
	err = ps.names(".", func(name string) {
		if pid, err := strconv.Atoi(name); err == nil {
			pids = append(pids, pid)
		}
	})
	if err != nil {
		return nil, err
	}
	target := "socket:[" + strconv.FormatUint(uint64(inode), 10) + "]"
	holders := pids[:0]
	for _, pid := range pids {
		dir := strconv.Itoa(pid) + "/"
		if o.inNamespaceAt(proc, dir) && ps.processHolds(dir, target) {
			holders = append(holders, pid)
		}
	}
	return holders, nil
}

// inNamespace reports whether pid's network namespace is the filtered one.
func (o *Owners) inNamespace(pid int) bool {
	return o.inNamespaceAt(unix.AT_FDCWD, "/proc/"+strconv.Itoa(pid)+"/")
}

// inNamespaceAt is inNamespace for the process directory dir (relative
// to the directory fd at).
func (o *Owners) inNamespaceAt(at int, dir string) bool {
	var st unix.Stat_t
	return unix.Fstatat(at, dir+"ns/net", &st, 0) == nil && st.Ino == o.nsIno && st.Dev == o.nsDev
}

// processHolds reports whether a file table of the threads of the process
// directory dir (relative to /proc) has target. Threads normally share
// one table; one that does not (clone without CLONE_FILES, unshare) is
// searched too.
func (ps *procScan) processHolds(dir, target string) bool {
	var st unix.Stat_t
	if unix.Fstatat(ps.proc, dir+"task", &st, 0) != nil {
		return false // gone
	}
	if st.Nlink <= 3 { // a task directory links 2 + one per thread
		return ps.tableHolds(dir+"fd", target)
	}
	var tids []int
	if ps.names(dir+"task", func(name string) {
		if tid, err := strconv.Atoi(name); err == nil {
			tids = append(tids, tid)
		}
	}) != nil {
		return false
	}
	var searched []int
	for _, tid := range tids {
		if sharesFilesWithAny(tid, searched) {
			continue
		}
		if ps.tableHolds(dir+"task/"+strconv.Itoa(tid)+"/fd", target) {
			return true
		}
		searched = append(searched, tid)
	}
	return false
}

const kcmpFiles = 2 // KCMP_FILES (uapi kcmp.h)

// sharesFilesWithAny reports whether tid's file table is that of one of
// tids (kcmp KCMP_FILES); when that cannot be told, false: it is searched.
func sharesFilesWithAny(tid int, tids []int) bool {
	for _, other := range tids {
		r, _, errno := unix.Syscall6(unix.SYS_KCMP, uintptr(tid), uintptr(other), kcmpFiles, 0, 0, 0)
		if errno == 0 && r == 0 {
			return true
		}
	}
	return false
}

// tableHolds reports whether the fd directory dir (relative to /proc) has
// a link to target.
func (ps *procScan) tableHolds(dir, target string) bool {
	fd, err := unix.Openat(ps.proc, dir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return false
	}
	defer unix.Close(fd)
	found := false
	_ = ps.namesOf(fd, func(name string) {
		if found {
			return
		}
		n, err := unix.Readlinkat(fd, name, ps.link)
		found = err == nil && n == len(target) && string(ps.link[:n]) == target
	})
	return found
}

// names calls fn with the names in the directory path (relative to
// /proc), "." and ".." excepted.
func (ps *procScan) names(path string, fn func(string)) error {
	fd, err := unix.Openat(ps.proc, path, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	return ps.namesOf(fd, fn)
}

func (ps *procScan) namesOf(fd int, fn func(string)) error {
	for {
		n, err := unix.Getdents(fd, ps.dents)
		if err != nil {
			return err
		}
		if n <= 0 {
			return nil
		}
		for off := 0; off+19 < n; {
			// struct linux_dirent64: ino 8, off 8, reclen 2, type 1, name.
			reclen := int(binary.NativeEndian.Uint16(ps.dents[off+16:]))
			if reclen == 0 || off+reclen > n {
				return errors.New("getdents: bad record")
			}
			name := ps.dents[off+19 : off+reclen]
			if i := bytes.IndexByte(name, 0); i >= 0 {
				name = name[:i]
			}
			if s := string(name); s != "." && s != ".." {
				fn(s)
			}
			off += reclen
		}
	}
}

// exeChain is pid's executable followed by its ancestors', up to the
// first one outside the namespace.
func (o *Owners) exeChain(pid int) []string {
	var exes []string
	for pid > 1 && len(exes) < 64 && o.inNamespace(pid) {
		exe, err := os.Readlink("/proc/" + strconv.Itoa(pid) + "/exe")
		if err != nil {
			break
		}
		exes = append(exes, strings.TrimSuffix(exe, " (deleted)"))
		if pid, err = parentPid(pid); err != nil {
			break
		}
	}
	return exes
}

func parentPid(pid int) (int, error) {
	data, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0, err
	}
	// The command name may contain spaces and parentheses: skip past the last ')'.
	s := string(data)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return 0, fmt.Errorf("bad stat for %d", pid)
	}
	fields := strings.Fields(s[i+1:])
	if len(fields) < 2 {
		return 0, fmt.Errorf("bad stat for %d", pid)
	}
	return strconv.Atoi(fields[1])
}
