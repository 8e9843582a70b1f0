package main

// Sockets shared between processes, for the egress filter's binaries
// checks (which process a connection belongs to):
//
//	fd-hold SOCK SECONDS              hold the file descriptors sent over a
//	                                  unix socket: SOCK is a path to listen
//	                                  on, or fd:N, an inherited connected one
//	                                  (told "ready" with one byte at start);
//	                                  every message received is acknowledged
//	                                  with one byte; the descriptors are kept
//	                                  until their sender closes its
//	                                  connection; SECONDS bounds it all:
//	                                  "OK held=N"
//	handoff-tls MODE HOLDER ADDR PORT SNI
//	                                  tls ADDR PORT SNI (ADDR an IP literal)
//	                                  on a socket shared with HOLDER, the path
//	                                  of a running fd-hold's socket (the
//	                                  socket is sent to it), or exec:PATH
//	                                  (PATH fd-hold fd:3 is started as a child
//	                                  that inherits the socket). MODE share:
//	                                  the connection's own socket is shared
//	                                  before it connects, and kept; MODE
//	                                  reuseport: a SO_REUSEPORT listener on
//	                                  the connection's source address is
//	                                  shared, then closed, and the connection
//	                                  is made from that same address and port

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

func init() {
	if commands == nil {
		commands = map[string]command{}
	}
	commands["fd-hold"] = command{"SOCK SECONDS", 2, 2, cmdFdHold}
	commands["handoff-tls"] = command{"share|reuseport HOLDER ADDR PORT SNI", 5, 5, cmdHandoffTLS}
}

// cmdFdHold receives and keeps file descriptors.
func cmdFdHold(a []string) error {
	secs, err := strconv.ParseFloat(a[1], 64)
	if err != nil || secs <= 0 {
		return failure{"USAGE", "SECONDS must be a number"}
	}
	deadline := time.Now().Add(time.Duration(secs * float64(time.Second)))
	var held []int
	if n, ok := strings.CutPrefix(a[0], "fd:"); ok {
		fd, err := strconv.Atoi(n)
		if err != nil {
			return failure{"USAGE", "fd:N needs a number"}
		}
		if _, err := unix.Write(fd, []byte{1}); err != nil {
			return errSys("write", err)
		}
		held, err = receiveFds(fd, deadline)
		if err != nil {
			return err
		}
		return okWith(fmt.Sprintf("held=%d", len(held)))
	}
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: a[0], Net: "unix"})
	if err != nil {
		return netErr("listen", err)
	}
	defer ln.Close()
	for {
		_ = ln.SetDeadline(deadline)
		c, err := ln.AcceptUnix()
		if errors.Is(err, os.ErrDeadlineExceeded) {
			return okWith(fmt.Sprintf("held=%d", len(held)))
		}
		if err != nil {
			return netErr("accept", err)
		}
		f, err := c.File()
		c.Close()
		if err != nil {
			return netErr("file", err)
		}
		fds, err := receiveFds(int(f.Fd()), deadline)
		if err != nil {
			return err
		}
		// Held for as long as the sender's connection: a shared TCP
		// connection then ends with its sender.
		held = append(held, fds...)
		for _, fd := range fds {
			unix.Close(fd)
		}
		f.Close()
	}
}

// receiveFds keeps the descriptors of every message on the unix socket
// fd, acknowledging each message, until the peer closes or deadline.
func receiveFds(fd int, deadline time.Time) ([]int, error) {
	var held []int
	if err := unix.SetNonblock(fd, false); err != nil { // SO_RCVTIMEO bounds each wait
		return nil, errSys("fcntl", err)
	}
	for {
		left := time.Until(deadline)
		if left <= 0 {
			return held, nil
		}
		tv := unix.NsecToTimeval(left.Nanoseconds())
		if err := unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv); err != nil {
			return held, errSys("setsockopt", err)
		}
		buf, oob := make([]byte, 1), make([]byte, unix.CmsgSpace(4*4))
		n, oobn, _, _, err := unix.Recvmsg(fd, buf, oob, 0)
		switch {
		case errors.Is(err, unix.EAGAIN), errors.Is(err, unix.EINTR):
			continue
		case err != nil:
			return held, errSys("recvmsg", err)
		case n == 0:
			return held, nil // the peer closed
		}
		msgs, err := unix.ParseSocketControlMessage(oob[:oobn])
		if err != nil {
			return held, errSys("recvmsg", err)
		}
		for _, m := range msgs {
			fds, err := unix.ParseUnixRights(&m)
			if err == nil {
				held = append(held, fds...)
			}
		}
		if _, err := unix.Write(fd, []byte{1}); err != nil {
			return held, errSys("write", err)
		}
	}
}

// cmdHandoffTLS shares a socket of the connection with another process,
// then makes the TLS handshake.
func cmdHandoffTLS(a []string) error {
	mode, holder := a[0], a[1]
	dst, err := netip.ParseAddrPort(net.JoinHostPort(a[2], a[3]))
	if err != nil {
		return failure{"USAGE", "ADDR must be an IP literal: " + err.Error()}
	}
	sni := a[4]
	var sock, shared int
	switch mode {
	case "share":
		if sock, err = tcpSocket(dst, netip.AddrPort{}); err != nil {
			return err
		}
		shared = sock
	case "reuseport":
		src, err := sourceAddr(dst)
		if err != nil {
			return err
		}
		if shared, err = tcpSocket(dst, netip.AddrPortFrom(src, 0)); err != nil {
			return err
		}
		if err := unix.Listen(shared, 8); err != nil {
			return errSys("listen", err)
		}
		sa, err := unix.Getsockname(shared)
		if err != nil {
			return errSys("getsockname", err)
		}
		if sock, err = tcpSocket(dst, netip.AddrPortFrom(src, uint16(sockaddrPort(sa)))); err != nil {
			return err
		}
	default:
		return failure{"USAGE", "MODE is share or reuseport"}
	}
	done, err := shareFd(holder, shared)
	if err != nil {
		return err
	}
	defer done()
	if mode == "reuseport" {
		unix.Close(shared)
	}
	if err := unix.Connect(sock, sockaddr(dst)); err != nil {
		return errSys("connect", err)
	}
	f := os.NewFile(uintptr(sock), "tcp")
	c, err := net.FileConn(f)
	f.Close()
	if err != nil {
		return netErr("connect", err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(netTimeout))
	return tlsOver(c, sni, nil)
}

// tcpSocket is a TCP socket of dst's family; bound to src with
// SO_REUSEADDR and SO_REUSEPORT when src is valid.
func tcpSocket(dst netip.AddrPort, src netip.AddrPort) (int, error) {
	family := unix.AF_INET
	if dst.Addr().Is6() {
		family = unix.AF_INET6
	}
	fd, err := unix.Socket(family, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return -1, errSys("socket", err)
	}
	if !src.IsValid() {
		return fd, nil
	}
	for _, opt := range []int{unix.SO_REUSEADDR, unix.SO_REUSEPORT} {
		if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, opt, 1); err != nil {
			return -1, errSys("setsockopt", err)
		}
	}
	if err := unix.Bind(fd, sockaddr(src)); err != nil {
		return -1, errSys("bind", err)
	}
	return fd, nil
}

// sourceAddr is the address the kernel picks to reach dst (a UDP
// "connection" sends nothing).
func sourceAddr(dst netip.AddrPort) (netip.Addr, error) {
	c, err := net.Dial("udp", dst.String())
	if err != nil {
		return netip.Addr{}, netErr("route", err)
	}
	defer c.Close()
	return c.LocalAddr().(*net.UDPAddr).AddrPort().Addr().Unmap(), nil
}

func sockaddr(ap netip.AddrPort) unix.Sockaddr {
	if ap.Addr().Is4() {
		return &unix.SockaddrInet4{Port: int(ap.Port()), Addr: ap.Addr().As4()}
	}
	return &unix.SockaddrInet6{Port: int(ap.Port()), Addr: ap.Addr().As16()}
}

func sockaddrPort(sa unix.Sockaddr) int {
	switch v := sa.(type) {
	case *unix.SockaddrInet4:
		return v.Port
	case *unix.SockaddrInet6:
		return v.Port
	}
	return 0
}

// shareFd gives fd to holder: sends it to a running fd-hold's socket, or
// starts "PATH fd-hold fd:3" with fd inherited. It returns once the
// holder has it; done ends the sharing (the child holder exits).
func shareFd(holder string, fd int) (done func(), err error) {
	if path, ok := strings.CutPrefix(holder, "exec:"); ok {
		return startHolder(path, fd)
	}
	var c *net.UnixConn
	for deadline := time.Now().Add(netTimeout); ; {
		c, err = net.DialUnix("unix", nil, &net.UnixAddr{Name: holder, Net: "unix"})
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			return nil, netErr("connect to the holder", err)
		}
		time.Sleep(20 * time.Millisecond) // the holder is starting
	}
	_ = c.SetDeadline(time.Now().Add(netTimeout))
	if _, _, err := c.WriteMsgUnix([]byte{0}, unix.UnixRights(fd), nil); err != nil {
		c.Close()
		return nil, netErr("send the socket", err)
	}
	if _, err := c.Read(make([]byte, 1)); err != nil {
		c.Close()
		return nil, netErr("holder's acknowledgement", err)
	}
	return func() { c.Close() }, nil
}

// startHolder runs "path fd-hold fd:3 60" with fd as its fd 4 and waits
// until it has exec'd (it says so on fd 3).
func startHolder(path string, fd int) (func(), error) {
	pair, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, errSys("socketpair", err)
	}
	// Pollable, for the read deadline below.
	if err := unix.SetNonblock(pair[0], true); err != nil {
		return nil, errSys("fcntl", err)
	}
	mine, theirs := os.NewFile(uintptr(pair[0]), "holder"), os.NewFile(uintptr(pair[1]), "holder")
	// A copy for the child: os/exec would put fd itself in blocking mode
	// and the os.File would close it when collected.
	dup, err := unix.Dup(fd)
	if err != nil {
		return nil, errSys("dup", err)
	}
	shared := os.NewFile(uintptr(dup), "shared")
	cmd := exec.Command(path, "fd-hold", "fd:3", "60")
	cmd.ExtraFiles = []*os.File{theirs, shared}
	err = cmd.Start()
	theirs.Close()
	shared.Close()
	if err != nil {
		return nil, failure{"EXIT", err.Error()}
	}
	_ = mine.SetReadDeadline(time.Now().Add(netTimeout))
	if _, err := mine.Read(make([]byte, 1)); err != nil {
		_ = cmd.Process.Kill()
		return nil, netErr("holder ready", err)
	}
	return func() { mine.Close(); _ = cmd.Wait() }, nil
}
