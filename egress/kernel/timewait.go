package kernel

// The filter dials every upstream connection from the host's network
// namespace. When the container closes first, the filter passes the end
// on (it half-closes the upstream connection: the client may still be
// reading the answer), so the filter's side of the upstream connection
// is the one that closes first, and TCP leaves it in TIME_WAIT for 60 s,
// in the host's namespace, for every container's filter together. Past
// some 14,000 of them towards one destination, every connect() scans the
// ephemeral port range for a free port, and each new connection costs
// milliseconds of CPU: a cliff, reached at ~235 new connections a second
// to one destination from the whole host.
//
// TimeWaits removes that state once the exchange is over: the upstream
// has had the filter's FIN and acknowledged it, has sent its own and got
// the last ACK; the connection ended cleanly on both sides. Only a
// socket in TIME_WAIT is removed (sock_diag SOCK_DESTROY, as ss -K does),
// and only the one this connection left (its cookie, which the TIME_WAIT
// socket keeps, must match: the same addresses may already belong to a
// newer connection). What TIME_WAIT would still have done: answer a
// retransmission of the upstream's FIN (if the last ACK was lost) with
// that ACK; the upstream gets a RST instead and ends the connection it
// had finished already. Old segments of the connection arriving in a new
// one with the same addresses are refused by TCP timestamps (PAWS), as
// with net.ipv4.tcp_tw_reuse.

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

const (
	sockDestroy  = 21 // SOCK_DESTROY
	tcpTimeWait  = 6  // TCP_TIME_WAIT (uapi tcp_states.h)
	diagStateOff = 1  // struct inet_diag_msg: idiag_state
	diagIDOff    = 4  // struct inet_diag_msg: id
	diagCookie   = 40 // struct inet_diag_sockid: idiag_cookie
)

// TimeWaits closes upstream connections without leaving them in
// TIME_WAIT in the namespace they are dialed from. Each Close costs one
// sock_diag lookup, and one more request when there is a TIME_WAIT to
// remove.
type TimeWaits struct {
	mu   sync.Mutex // one request at a time
	diag int        // a NETLINK_SOCK_DIAG socket
	seq  uint32
}

// NewTimeWaits opens a sock_diag socket in the calling thread's network
// namespace (the one the upstream connections are dialed from).
func NewTimeWaits() (*TimeWaits, error) {
	diag, err := unix.Socket(unix.AF_NETLINK, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.NETLINK_SOCK_DIAG)
	if err != nil {
		return nil, fmt.Errorf("sock_diag socket: %w", err)
	}
	// A lost answer must not hold the proxy up.
	tv := unix.NsecToTimeval(time.Second.Nanoseconds())
	if err := unix.SetsockoptTimeval(diag, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv); err != nil {
		unix.Close(diag)
		return nil, err
	}
	return &TimeWaits{diag: diag}, nil
}

// Close closes c, a TCP connection whose both directions have ended (its
// socket stamped by StampCookie), and removes the TIME_WAIT it left, if it
// left one (it closed first). A connection that cannot be looked up is
// only closed.
func (t *TimeWaits) Close(c net.Conn) error {
	local, remote := AddrPort(c.LocalAddr()), AddrPort(c.RemoteAddr())
	cookie, cookieErr := socketCookie(c)
	err := c.Close()
	if cookieErr != nil || !local.IsValid() || !remote.IsValid() {
		return err
	}
	_ = t.forget(unmapPort(local), unmapPort(remote), cookie)
	return err
}

// forget removes the TIME_WAIT socket from local to remote if it is the
// one of the connection whose cookie is cookie.
func (t *TimeWaits) forget(local, remote netip.AddrPort, cookie uint64) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.seq++
	m, err := diagRoundTrip(t.diag, t.seq, diagMessage(sockDiagByFamily, unix.NLM_F_REQUEST, t.seq, local, remote, cookie))
	if err != nil {
		return err
	}
	if m.Header.Type == unix.NLMSG_ERROR {
		return diagErrno(m) // ENOENT: no socket left, ESTALE: another connection's
	}
	if state, got, err := diagStateCookie(m); err != nil || state != tcpTimeWait || got != cookie {
		return errors.Join(err, errors.New("not this connection's TIME_WAIT"))
	}
	t.seq++
	m, err = diagRoundTrip(t.diag, t.seq, diagMessage(sockDestroy, unix.NLM_F_REQUEST|unix.NLM_F_ACK, t.seq, local, remote, cookie))
	if err != nil {
		return err
	}
	return diagErrno(m)
}

// diagStateCookie reads the state and the cookie of a sock_diag answer.
func diagStateCookie(m syscall.NetlinkMessage) (uint8, uint64, error) {
	if m.Header.Type != sockDiagByFamily || len(m.Data) < inetDiagMsgLen {
		return 0, 0, fmt.Errorf("sock_diag: unexpected answer (type %d, %d bytes)", m.Header.Type, len(m.Data))
	}
	c := m.Data[diagIDOff+diagCookie:]
	ne := binary.NativeEndian
	return m.Data[diagStateOff], uint64(ne.Uint32(c)) | uint64(ne.Uint32(c[4:]))<<32, nil
}

// StampCookie gives a socket its cookie (SO_COOKIE, the kernel's
// identifier of a socket, made when first asked for): a net.Dialer's
// Control, so that the TIME_WAIT socket its connection may leave gets it
// too and Close can tell it.
func StampCookie(_, _ string, raw syscall.RawConn) error {
	_, err := rawCookie(raw)
	return err
}

// socketCookie is c's socket's cookie.
func socketCookie(c net.Conn) (uint64, error) {
	sc, ok := c.(syscall.Conn)
	if !ok {
		return 0, errors.New("not a socket")
	}
	raw, err := sc.SyscallConn()
	if err != nil {
		return 0, err
	}
	return rawCookie(raw)
}

func rawCookie(raw syscall.RawConn) (uint64, error) {
	var cookie uint64
	var sockErr error
	if err := raw.Control(func(fd uintptr) {
		cookie, sockErr = unix.GetsockoptUint64(int(fd), unix.SOL_SOCKET, unix.SO_COOKIE)
	}); err != nil {
		return 0, err
	}
	return cookie, sockErr
}
