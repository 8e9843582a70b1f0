package egress

// Kernel side: which executable opened a connection. Used only when a
// network policy lists binaries; when the owner cannot be determined
// reliably the caller gets nil, and binary-restricted endpoints deny.

import (
	"bufio"
	"encoding/hex"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// SocketOwners returns a function that finds, for a connection accepted
// from the namespace of nsPid, the executable of the process that opened
// it followed by its ancestors' (inside the same namespace).
func SocketOwners(nsPid int) func(client net.Conn) []string {
	return func(client net.Conn) []string {
		src, ok := client.RemoteAddr().(*net.TCPAddr)
		if !ok {
			return nil
		}
		exes, err := ownerChain(nsPid, src.AddrPort())
		if err != nil {
			return nil
		}
		return exes
	}
}

func ownerChain(nsPid int, src netip.AddrPort) ([]string, error) {
	inode, err := socketInode(nsPid, src)
	if err != nil {
		return nil, err
	}
	var nsStat unix.Stat_t
	if err := unix.Stat(fmt.Sprintf("/proc/%d/ns/net", nsPid), &nsStat); err != nil {
		return nil, err
	}
	pid, err := pidWithSocket(nsStat.Ino, inode)
	if err != nil {
		return nil, err
	}
	var exes []string
	for pid > 1 && len(exes) < 64 {
		var st unix.Stat_t
		if unix.Stat(fmt.Sprintf("/proc/%d/ns/net", pid), &st) != nil || st.Ino != nsStat.Ino {
			break // left the container's namespace
		}
		exe, err := os.Readlink(fmt.Sprintf("/proc/%d/exe", pid))
		if err != nil {
			break
		}
		exes = append(exes, strings.TrimSuffix(exe, " (deleted)"))
		if pid, err = parentPid(pid); err != nil {
			break
		}
	}
	if len(exes) == 0 {
		return nil, fmt.Errorf("no process found for %s", src)
	}
	return exes, nil
}

// socketInode finds the inode of the TCP socket whose local address is src
// in the namespace's connection tables.
func socketInode(nsPid int, src netip.AddrPort) (string, error) {
	want := hexAddrPort(src)
	for _, table := range []string{"tcp", "tcp6"} {
		f, err := os.Open(fmt.Sprintf("/proc/%d/net/%s", nsPid, table))
		if err != nil {
			continue
		}
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			fields := strings.Fields(sc.Text())
			if len(fields) > 9 && strings.EqualFold(fields[1], want[table]) {
				f.Close()
				return fields[9], nil
			}
		}
		f.Close()
	}
	return "", fmt.Errorf("no socket for %s", src)
}

// hexAddrPort renders an address as /proc/net/tcp{,6} do (each 32-bit word
// in host byte order), for both tables.
func hexAddrPort(ap netip.AddrPort) map[string]string {
	port := fmt.Sprintf("%04X", ap.Port())
	out := map[string]string{}
	a := ap.Addr()
	if a.Is4() || a.Is4In6() {
		b := a.Unmap().As4()
		out["tcp"] = strings.ToUpper(hex.EncodeToString([]byte{b[3], b[2], b[1], b[0]})) + ":" + port
		a = netip.AddrFrom16(a.Unmap().As16()) // ::ffff:a.b.c.d for tcp6
	}
	b := a.As16()
	var sb strings.Builder
	for i := 0; i < 16; i += 4 {
		sb.WriteString(strings.ToUpper(hex.EncodeToString([]byte{b[i+3], b[i+2], b[i+1], b[i]})))
	}
	out["tcp6"] = sb.String() + ":" + port
	return out
}

// pidWithSocket finds a process of the namespace holding the socket.
func pidWithSocket(nsIno uint64, inode string) (int, error) {
	target := "socket:[" + inode + "]"
	procs, err := os.ReadDir("/proc")
	if err != nil {
		return 0, err
	}
	for _, p := range procs {
		pid, err := strconv.Atoi(p.Name())
		if err != nil {
			continue
		}
		var st unix.Stat_t
		if unix.Stat(fmt.Sprintf("/proc/%d/ns/net", pid), &st) != nil || st.Ino != nsIno {
			continue
		}
		fds, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
		if err != nil {
			continue
		}
		for _, fd := range fds {
			if link, err := os.Readlink(filepath.Join("/proc", p.Name(), "fd", fd.Name())); err == nil && link == target {
				return pid, nil
			}
		}
	}
	return 0, fmt.Errorf("no process holds %s", target)
}

func parentPid(pid int) (int, error) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
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
