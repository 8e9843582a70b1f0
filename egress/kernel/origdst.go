package kernel

// Kernel side: the sockets of redirected connections: where one was
// really sent, and how one is turned away.

import (
	"errors"
	"net"
	"net/netip"
	"unsafe"

	"golang.org/x/sys/unix"
)

const ip6tSoOriginalDst = 80 // IP6T_SO_ORIGINAL_DST

// OriginalDst returns the address the client connected to before the
// nftables redirect, from conntrack (SO_ORIGINAL_DST).
func OriginalDst(c net.Conn) (netip.AddrPort, error) {
	tc, ok := c.(*net.TCPConn)
	if !ok {
		return netip.AddrPort{}, errors.New("not a TCP connection")
	}
	raw, err := tc.SyscallConn()
	if err != nil {
		return netip.AddrPort{}, err
	}
	local := tc.LocalAddr().(*net.TCPAddr)
	var out netip.AddrPort
	var sockErr error
	err = raw.Control(func(fd uintptr) {
		if local.IP.To4() != nil {
			var sa unix.RawSockaddrInet4
			size := uint32(unsafe.Sizeof(sa))
			if sockErr = getsockopt(int(fd), unix.SOL_IP, unix.SO_ORIGINAL_DST, unsafe.Pointer(&sa), &size); sockErr == nil {
				port := uint16(sa.Port>>8 | sa.Port<<8)
				out = netip.AddrPortFrom(netip.AddrFrom4(sa.Addr), port)
			}
			return
		}
		var sa unix.RawSockaddrInet6
		size := uint32(unsafe.Sizeof(sa))
		if sockErr = getsockopt(int(fd), unix.SOL_IPV6, ip6tSoOriginalDst, unsafe.Pointer(&sa), &size); sockErr == nil {
			port := uint16(sa.Port>>8 | sa.Port<<8)
			out = netip.AddrPortFrom(netip.AddrFrom16(sa.Addr), port)
		}
	})
	if err != nil {
		return netip.AddrPort{}, err
	}
	return out, sockErr
}

func getsockopt(fd, level, name int, val unsafe.Pointer, size *uint32) error {
	_, _, errno := unix.Syscall6(unix.SYS_GETSOCKOPT, uintptr(fd), uintptr(level), uintptr(name), uintptr(val), uintptr(unsafe.Pointer(size)), 0)
	if errno != 0 {
		return errno
	}
	return nil
}

// Destination is where the client of c meant to connect: its original
// destination, or, when c was not redirected, the address it reached.
func Destination(c net.Conn) netip.AddrPort {
	if dst, err := OriginalDst(c); err == nil {
		return dst
	}
	return AddrPort(c.LocalAddr())
}

// AddrPort is a connection's address as a netip.AddrPort.
func AddrPort(a net.Addr) netip.AddrPort {
	if ta, ok := a.(*net.TCPAddr); ok {
		return ta.AddrPort()
	}
	ap, _ := netip.ParseAddrPort(a.String())
	return ap
}

// Reset closes c at once and with a reset: nothing of it stays behind,
// not even in TIME_WAIT.
func Reset(c net.Conn) {
	if tc, ok := c.(interface{ SetLinger(int) error }); ok {
		_ = tc.SetLinger(0)
	}
	c.Close()
}
