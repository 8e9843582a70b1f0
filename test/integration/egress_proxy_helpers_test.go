package integration

// Raw clients for the proxy's tests: a socket opened by the test inside a
// container's network namespace is captured by the egress filter exactly
// like the container's own (the nftables rules match the namespace, not
// the process), and lets a test send exact bytes at chosen moments.

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"
	"golang.org/x/sys/unix"

	"github.com/clawrun/clawrun/test/fakenet"
)

// netnsDial connects to ip:port from inside the container's network
// namespace.
func (c *ectr) netnsDial(ip string, port int) net.Conn {
	c.t.Helper()
	var conn net.Conn
	err := fakenet.InNetns(fmt.Sprintf("/proc/%d/ns/net", c.r.state(c.id).Pid), func() error {
		var err error
		conn, err = net.DialTimeout("tcp", net.JoinHostPort(ip, strconv.Itoa(port)), 5*time.Second)
		return err
	})
	if err != nil {
		c.t.Fatalf("connect to %s:%d from the container's namespace: %v", ip, port, err)
	}
	c.t.Cleanup(func() { conn.Close() })
	_ = conn.SetDeadline(time.Now().Add(30 * time.Second))
	return conn
}

// waitUnresolvable waits until the filter's resolver answers name with
// NXDOMAIN to a query from the container's namespace: a reload that
// removed the name has taken effect (`policy apply` returns once it has
// signalled the filter, which reloads on its own time).
func (c *ectr) waitUnresolvable(name string) {
	c.t.Helper()
	ns := fmt.Sprintf("/proc/%d/ns/net", c.r.state(c.id).Pid)
	deadline := time.Now().Add(10 * time.Second)
	for {
		var rcode int
		err := fakenet.InNetns(ns, func() error {
			m := new(dns.Msg)
			m.SetQuestion(dns.Fqdn(name), dns.TypeA)
			resp, _, err := (&dns.Client{Timeout: time.Second}).Exchange(m, net.JoinHostPort(c.fn.ip(hDNS), "53"))
			if err == nil {
				rcode = resp.Rcode
			}
			return err
		})
		if err == nil && rcode == dns.RcodeNameError {
			return
		}
		if time.Now().After(deadline) {
			c.t.Fatalf("%s still resolves (rcode %d, %v): the reload did not take effect", name, rcode, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// exchange sends raw on a new connection to ip:port from the container's
// namespace and returns the responses' status codes, read until the
// connection ends.
func (c *ectr) exchange(ip string, port int, raw string) []int {
	c.t.Helper()
	conn := c.netnsDial(ip, port)
	if _, err := io.WriteString(conn, raw); err != nil {
		c.t.Fatalf("send: %v", err)
	}
	return readStatuses(bufio.NewReader(conn))
}

// readStatuses reads responses until the connection ends (or one cannot
// be parsed) and returns their status codes.
func readStatuses(br *bufio.Reader) []int {
	var out []int
	for {
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			return out
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		out = append(out, resp.StatusCode)
	}
}

// httpSeen lists the requests the fake internet's HTTP servers read since
// mark, as "METHOD host target".
func (fn *fakeNet) httpSeen(mark int) []string {
	var out []string
	for _, e := range fn.Since(mark) {
		if e.Kind == "http" {
			out = append(out, e.Data+" "+e.Name+" "+e.Path)
		}
	}
	return out
}

// procTCPAddr is addr as /proc/net/tcp prints an IPv4 address and port
// (the address in host byte order).
func procTCPAddr(addr netip.AddrPort) string {
	a := addr.Addr().Unmap().As4()
	return fmt.Sprintf("%02X%02X%02X%02X:%04X", a[3], a[2], a[1], a[0], addr.Port())
}

// procSockets returns the lines of /proc/PID/net/tcp and tcp6 whose
// remote address is remote (IPv4, or IPv4-mapped in tcp6), as fields.
func procSockets(pid int, remote netip.AddrPort) [][]string {
	want := procTCPAddr(remote)
	var out [][]string
	for _, table := range []string{"tcp", "tcp6"} {
		data, err := os.ReadFile(fmt.Sprintf("/proc/%d/net/%s", pid, table))
		if err != nil {
			continue
		}
		for _, line := range strings.Split(string(data), "\n")[1:] {
			f := strings.Fields(line)
			if len(f) < 5 {
				continue
			}
			rem := f[2]
			if rem == want || len(rem) == 37 && strings.HasPrefix(rem, "0000000000000000FFFF0000") && strings.HasSuffix(rem, want) {
				out = append(out, f)
			}
		}
	}
	return out
}

// waitFilterRead waits until the filter has read everything sent on conn
// (the receive queue of its end, in the container's namespace, is empty):
// it has taken the connection and is waiting for more.
func (c *ectr) waitFilterRead(conn net.Conn) {
	c.t.Helper()
	pid := c.r.state(c.id).Pid
	local := netip.MustParseAddrPort(conn.LocalAddr().String())
	deadline := time.Now().Add(5 * time.Second)
	for {
		socks := procSockets(pid, local)
		if len(socks) == 1 && strings.HasSuffix(socks[0][4], ":00000000") {
			return
		}
		if time.Now().After(deadline) {
			c.t.Fatalf("the filter never read the bytes sent from %s: %v", local, socks)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// tcpSynSent is the state column of a socket sending its SYN.
const tcpSynSent = "02"

// dialsTo counts the host namespace's connection attempts to ip:port
// still waiting for an answer (the filter dials from the host's
// namespace, where the test runs).
func dialsTo(ip string, port int) int {
	n := 0
	for _, f := range procSockets(os.Getpid(), netip.AddrPortFrom(netip.MustParseAddr(ip), uint16(port))) {
		if f[3] == tcpSynSent {
			n++
		}
	}
	return n
}

// fullListener listens on ip:port in the fake internet with an accept
// queue that it fills itself: the server never accepts, so that a dial
// to it stays pending (its SYNs are dropped) until the test drains the
// queue. It returns the listener and the number of connections queued.
func (fn *fakeNet) fullListener(t *testing.T, ip string, port int) (net.Listener, int) {
	t.Helper()
	const backlog = 1 // Linux queues backlog+1 connections
	var ln net.Listener
	err := fn.InNS(func() error {
		fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			return err
		}
		f := os.NewFile(uintptr(fd), "full-listener")
		defer f.Close()
		if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_REUSEADDR, 1); err != nil {
			return err
		}
		if err := unix.Bind(fd, &unix.SockaddrInet4{Port: port, Addr: netip.MustParseAddr(ip).As4()}); err != nil {
			return err
		}
		if err := unix.Listen(fd, backlog); err != nil {
			return err
		}
		ln, err = net.FileListener(f)
		return err
	})
	if err != nil {
		t.Fatalf("listen on %s:%d in the fake internet: %v", ip, port, err)
	}
	t.Cleanup(func() { ln.Close() })
	for i := 0; i < backlog+1; i++ {
		c, err := net.DialTimeout("tcp", net.JoinHostPort(ip, strconv.Itoa(port)), 5*time.Second)
		if err != nil {
			t.Fatalf("filling the accept queue of %s:%d: %v", ip, port, err)
		}
		t.Cleanup(func() { c.Close() })
	}
	return ln, backlog + 1
}

// sentAhead is a connection whose first bytes were already sent by the
// test: the first Write drops them (they must be the same).
type sentAhead struct {
	net.Conn
	ahead []byte
}

func (c *sentAhead) Write(b []byte) (int, error) {
	if len(c.ahead) == 0 {
		return c.Conn.Write(b)
	}
	if len(b) < len(c.ahead) || string(b[:len(c.ahead)]) != string(c.ahead) {
		return 0, fmt.Errorf("the first bytes written are %q, not the %q sent ahead", b[:min(len(b), len(c.ahead))], c.ahead)
	}
	n := len(c.ahead)
	c.ahead = nil
	m, err := c.Conn.Write(b[n:])
	return n + m, err
}
