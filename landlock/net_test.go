package landlock

import (
	"net"
	"testing"

	"golang.org/x/sys/unix"
)

func newListener(t *testing.T) (*net.TCPAddr, error) {
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	return ln.Addr().(*net.TCPAddr), nil
}

// dialRaw connects with plain syscalls on the calling thread (Go's net
// package may run the connect on another thread).
func dialRaw(addr *net.TCPAddr) error {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	sa := &unix.SockaddrInet4{Port: addr.Port}
	copy(sa.Addr[:], addr.IP.To4())
	return unix.Connect(fd, sa)
}
