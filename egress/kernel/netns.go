package kernel

// Kernel side: sockets and routes inside another network namespace. A
// socket keeps the namespace it was created in, so the filter (running in
// the host's namespace, from where it dials upstream) creates its
// listeners inside the container's namespace by switching one locked OS
// thread there and back.

import (
	"errors"
	"fmt"
	"net"
	"os"
	"runtime"
	"strconv"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// inNetns runs fn on a thread switched into the namespace nsFD. If the
// switch back fails, the thread is left locked so that the Go runtime
// discards it instead of reusing a thread in the wrong namespace.
func inNetns(nsFD int, fn func() error) error {
	runtime.LockOSThread()
	self, err := netns.Get()
	if err != nil {
		runtime.UnlockOSThread()
		return err
	}
	defer self.Close()
	if err := unix.Setns(nsFD, unix.CLONE_NEWNET); err != nil {
		runtime.UnlockOSThread()
		return fmt.Errorf("setns: %w", err)
	}
	fnErr := fn()
	if err := netns.Set(self); err != nil {
		return errors.Join(fnErr, fmt.Errorf("setns back: %w", err))
	}
	runtime.UnlockOSThread()
	return fnErr
}

// Listeners are the filter's sockets inside a container's namespace: one
// per address family, because redirected traffic arrives on 127.0.0.1 or
// ::1, and SO_ORIGINAL_DST needs a socket of the connection's own family.
type Listeners struct {
	Proxy  []*net.TCPListener
	DNSUDP []*net.UDPConn
	DNSTCP []*net.TCPListener
}

// Close closes every listener.
func (l *Listeners) Close() {
	for _, c := range l.Proxy {
		c.Close()
	}
	for _, c := range l.DNSUDP {
		c.Close()
	}
	for _, c := range l.DNSTCP {
		c.Close()
	}
}

// Listen creates the listeners inside nsFD, on 127.0.0.1 and, when the
// namespace has IPv6, on ::1.
func Listen(nsFD int, ports Ports) (*Listeners, error) {
	l := &Listeners{}
	err := inNetns(nsFD, func() error {
		for _, fam := range []struct {
			tcp, udp string
			ip       net.IP
		}{{"tcp4", "udp4", net.IPv4(127, 0, 0, 1)}, {"tcp6", "udp6", net.IPv6loopback}} {
			proxy, err := net.ListenTCP(fam.tcp, &net.TCPAddr{IP: fam.ip, Port: int(ports.Proxy)})
			if err != nil {
				if fam.tcp == "tcp6" {
					return nil // no IPv6 here: no IPv6 traffic either
				}
				return err
			}
			l.Proxy = append(l.Proxy, proxy)
			dnsTCP, err := net.ListenTCP(fam.tcp, &net.TCPAddr{IP: fam.ip, Port: int(ports.DNS)})
			if err != nil {
				return err
			}
			l.DNSTCP = append(l.DNSTCP, dnsTCP)
			dnsUDP, err := net.ListenUDP(fam.udp, &net.UDPAddr{IP: fam.ip, Port: int(ports.DNS)})
			if err != nil {
				return err
			}
			l.DNSUDP = append(l.DNSUDP, dnsUDP)
		}
		return nil
	})
	if err != nil {
		l.Close()
		return nil, fmt.Errorf("listen in the container's network namespace: %w", err)
	}
	return l, nil
}

// EnsureRoutes makes outbound connections reach netfilter in a namespace
// with no route out (a fresh one has only lo): without a default route,
// connect() fails with ENETUNREACH before the redirect can see it. It also
// lets redirected packets keep a non-loopback source on their way to
// 127.0.0.1 (route_localnet; without it they are dropped as martians in a
// namespace with a real interface, such as Docker's or a pod's); the rules
// drop anything arriving from outside for 127.0.0.0/8.
func EnsureRoutes(nsFD int) error {
	if err := inNetns(nsFD, func() error {
		for _, conf := range []string{"all", "default"} {
			p := "/proc/sys/net/ipv4/conf/" + conf + "/route_localnet"
			if err := os.WriteFile(p, []byte("1"), 0o644); err != nil {
				return err
			}
		}
		return nil
	}); err != nil {
		return fmt.Errorf("route_localnet: %w", err)
	}
	h, err := netlink.NewHandleAt(netns.NsHandle(nsFD))
	if err != nil {
		return err
	}
	defer h.Close()
	lo, err := h.LinkByIndex(loIndex)
	if err != nil {
		return err
	}
	if err := h.LinkSetUp(lo); err != nil {
		return err
	}
	for _, family := range []int{netlink.FAMILY_V4, netlink.FAMILY_V6} {
		routes, err := h.RouteListFiltered(family, &netlink.Route{Dst: nil}, netlink.RT_FILTER_DST)
		if err == nil && len(routes) > 0 {
			continue // Docker's or CNI's default route: leave it
		}
		// The lowest priority: a front-end that wires the namespace after
		// create (moby v2) adds its own default route, which must win
		// rather than collide with this one.
		r := &netlink.Route{LinkIndex: loIndex, Family: family, Scope: netlink.SCOPE_LINK, Priority: 0xffffffff,
			Dst: &net.IPNet{IP: net.IPv6zero, Mask: net.CIDRMask(0, 128)}}
		if family == netlink.FAMILY_V4 {
			r.Dst = &net.IPNet{IP: net.IPv4zero.To4(), Mask: net.CIDRMask(0, 32)}
			r.Src = net.IPv4(127, 0, 0, 1)
		}
		if err := h.RouteAdd(r); err != nil && !errors.Is(err, unix.EEXIST) {
			if family == netlink.FAMILY_V6 && errors.Is(err, unix.EACCES) {
				continue // IPv6 disabled in this namespace
			}
			return fmt.Errorf("default route via lo (family %d): %w", family, err)
		}
	}
	return nil
}

// NamespaceUsers returns the processes whose network namespace is nsFD's
// (the filter's own processes live in the host's and hold the namespace
// by file descriptor only).
func NamespaceUsers(nsFD int) ([]int, error) {
	var ns unix.Stat_t
	if err := unix.Fstat(nsFD, &ns); err != nil {
		return nil, err
	}
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return nil, err
	}
	var pids []int
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		var st unix.Stat_t
		// Gone, or a zombie (its namespaces are released): not a user.
		if unix.Stat("/proc/"+e.Name()+"/ns/net", &st) == nil && st.Ino == ns.Ino && st.Dev == ns.Dev {
			pids = append(pids, pid)
		}
	}
	return pids, nil
}

// NetnsID identifies the namespace of nsFD for as long as the system runs:
// its cookie (SO_NETNS_COOKIE of a socket made in it), which, unlike its
// inode, is never given to another namespace. Kernels before 5.14 have no
// cookie; there it is the inode, unique among the namespaces alive.
func NetnsID(nsFD int) (string, error) {
	var cookie uint64
	err := inNetns(nsFD, func() error {
		fd, err := unix.Socket(unix.AF_UNIX, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			return err
		}
		defer unix.Close(fd)
		cookie, err = unix.GetsockoptUint64(fd, unix.SOL_SOCKET, unix.SO_NETNS_COOKIE)
		return err
	})
	if errors.Is(err, unix.ENOPROTOOPT) {
		var st unix.Stat_t
		if err := unix.Fstat(nsFD, &st); err != nil {
			return "", err
		}
		return "ino" + strconv.FormatUint(st.Ino, 10), nil
	}
	if err != nil {
		return "", fmt.Errorf("network namespace cookie: %w", err)
	}
	return strconv.FormatUint(cookie, 10), nil
}
