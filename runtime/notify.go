package runtime

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/opencontainers/runtime-spec/specs-go"
	"github.com/sirupsen/logrus"
	"golang.org/x/sys/unix"
)

// sd_notify from inside a container, as runc does it. When clawrun runs
// with NOTIFY_SOCKET (a systemd Type=notify unit, podman
// --sdnotify=container), the container's process gets a socket of its own,
// NOTIFY_SOCKET=/run/notify/notify.sock, a read-only bind mount of
// <state dir>/notify where clawrun listens. run and start then wait until
// the process sends READY=1, or exits, and pass READY=1 on to the host's
// socket with MAINPID (the container's init, or clawrun itself for a
// foreground run, which stays the service's main process), then wait for
// the service manager to take it in (BARRIER=1). containerd's shims
// remove NOTIFY_SOCKET from the runtime's environment: they never get this.
const (
	notifyDir            = "notify"
	notifySocketName     = "notify.sock"
	notifyDirInContainer = "/run/notify"
	// notifyPoll is how often a wait for READY=1 checks that the process
	// still runs.
	notifyPoll = 100 * time.Millisecond
	// notifyBarrierTimeout bounds the wait for the service manager.
	notifyBarrierTimeout = 30 * time.Second
)

// notifySocket is a container's notify socket and the host's.
type notifySocket struct {
	host string // clawrun's NOTIFY_SOCKET
	dir  string // <state dir>/notify, /run/notify in the container
	conn *net.UnixConn
}

// newNotifySocket is nil when clawrun has no NOTIFY_SOCKET.
func newNotifySocket(host, stateDir string) *notifySocket {
	if host == "" {
		return nil
	}
	return &notifySocket{host: host, dir: filepath.Join(stateDir, notifyDir)}
}

// setupSpec gives the container its socket's directory and points its
// process's NOTIFY_SOCKET at it (replacing any the spec has).
func (n *notifySocket) setupSpec(spec *specs.Spec) {
	spec.Mounts = append(spec.Mounts, specs.Mount{
		Destination: notifyDirInContainer,
		Type:        "bind",
		Source:      n.dir,
		Options:     []string{"bind", "nosuid", "noexec", "nodev", "ro"},
	})
	spec.Process.Env = append(slices.DeleteFunc(spec.Process.Env, func(kv string) bool {
		return strings.HasPrefix(kv, "NOTIFY_SOCKET=")
	}), "NOTIFY_SOCKET="+path.Join(notifyDirInContainer, notifySocketName))
}

// makeDir makes the mount's source, once the state dir exists.
func (n *notifySocket) makeDir() error {
	return os.Mkdir(n.dir, 0o755)
}

// listen binds the container's socket. It is reached through
// /proc/self/fd, so that a long --root cannot overflow sun_path.
func (n *notifySocket) listen() error {
	dir, err := os.Open(n.dir)
	if errors.Is(err, os.ErrNotExist) {
		return errors.New("NOTIFY_SOCKET is set, but the container was created without it: its process has no notify socket")
	}
	if err != nil {
		return err
	}
	defer dir.Close()
	// A socket left by an earlier start would make the bind fail.
	if err := os.Remove(filepath.Join(n.dir, notifySocketName)); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	name := fmt.Sprintf("/proc/self/fd/%d/%s", dir.Fd(), notifySocketName)
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: name, Net: "unixgram"})
	if err != nil {
		return fmt.Errorf("notify socket: %w", err)
	}
	// Any user of the container may notify, as with systemd's own socket.
	if err := os.Chmod(filepath.Join(n.dir, notifySocketName), 0o777); err != nil {
		conn.Close()
		return err
	}
	n.conn = conn
	return nil
}

func (n *notifySocket) Close() {
	if n != nil && n.conn != nil {
		n.conn.Close()
	}
}

// waitReady returns once the container's process said READY=1, which it
// passes on to the host's socket with mainPID, or once the process pid
// exited without saying it.
func (n *notifySocket) waitReady(pid, mainPID int) error {
	buf := make([]byte, 4096)
	pidfd, err := unix.PidfdOpen(pid, 0)
	if errors.Is(err, unix.ESRCH) {
		// Exited and reaped already (a foreground run's wait for the
		// process may come first): what it sent is queued.
		return n.readyQueued(buf, mainPID)
	}
	if err != nil {
		return os.NewSyscallError("pidfd_open", err)
	}
	defer unix.Close(pidfd)
	for {
		if err := n.conn.SetReadDeadline(time.Now().Add(notifyPoll)); err != nil {
			return err
		}
		k, err := n.conn.Read(buf)
		switch {
		case errors.Is(err, os.ErrDeadlineExceeded):
			if pidfdExited(pidfd) {
				// What it sent before exiting is queued (a READY=1
				// between this read's timeout and the exit check).
				return n.readyQueued(buf, mainPID)
			}
		case err != nil:
			return err
		default:
			if ready := readyLine(buf[:k]); ready != nil {
				return n.notifyHost(ready, mainPID)
			}
		}
	}
}

// readyQueued passes on a READY=1 among the datagrams already queued on
// the container's socket, without waiting for more.
func (n *notifySocket) readyQueued(buf []byte, mainPID int) error {
	if err := n.conn.SetReadDeadline(time.Time{}); err != nil {
		return err
	}
	raw, err := n.conn.SyscallConn()
	if err != nil {
		return err
	}
	for {
		var k int
		var rerr error
		if err := raw.Read(func(fd uintptr) bool {
			k, _, rerr = unix.Recvfrom(int(fd), buf, unix.MSG_DONTWAIT)
			return true // never wait for more
		}); err != nil {
			return err
		}
		switch {
		case errors.Is(rerr, unix.EAGAIN):
			return nil
		case rerr != nil:
			return os.NewSyscallError("recvfrom", rerr)
		}
		if ready := readyLine(buf[:k]); ready != nil {
			return n.notifyHost(ready, mainPID)
		}
	}
}

// pidfdExited tells whether the process of pidfd has exited.
func pidfdExited(pidfd int) bool {
	fds := []unix.PollFd{{Fd: int32(pidfd), Events: unix.POLLIN}}
	n, err := unix.Poll(fds, 0)
	return err == nil && n > 0
}

// readyLine is the READY= line of an sd_notify datagram, or nil.
func readyLine(msg []byte) []byte {
	for line := range bytes.SplitSeq(msg, []byte("\n")) {
		if bytes.HasPrefix(line, []byte("READY=")) {
			return line
		}
	}
	return nil
}

// notifyHost tells the host's socket that the service is ready and which
// process it is.
func (n *notifySocket) notifyHost(ready []byte, mainPID int) error {
	client, err := net.DialUnix("unixgram", nil, &net.UnixAddr{Name: n.host, Net: "unixgram"})
	if err != nil {
		return fmt.Errorf("NOTIFY_SOCKET %s: %w", n.host, err)
	}
	defer client.Close()
	for _, msg := range [][]byte{append(ready, '\n'), []byte("MAINPID=" + strconv.Itoa(mainPID) + "\n")} {
		if _, err := client.Write(msg); err != nil {
			return fmt.Errorf("NOTIFY_SOCKET %s: %w", n.host, err)
		}
	}
	return notifyBarrier(client)
}

// notifyBarrier waits until the service manager has processed what was
// sent (sd_notify_barrier(3)): it closes the pipe sent with BARRIER=1.
func notifyBarrier(client *net.UnixConn) error {
	r, w, err := os.Pipe()
	if err != nil {
		return err
	}
	defer r.Close()
	err = sendWithFD(client, []byte("BARRIER=1"), w)
	w.Close()
	if err != nil {
		return fmt.Errorf("NOTIFY_SOCKET barrier: %w", err)
	}
	if err := r.SetReadDeadline(time.Now().Add(notifyBarrierTimeout)); err != nil {
		return err
	}
	var b [1]byte
	k, err := r.Read(b[:])
	switch {
	case k == 0 && errors.Is(err, io.EOF):
		return nil
	case errors.Is(err, os.ErrDeadlineExceeded):
		// A manager that does not know the barrier protocol keeps the fd.
		logrus.Warnf("NOTIFY_SOCKET: no barrier acknowledgement within %v, ignored", notifyBarrierTimeout)
		return nil
	case err == nil:
		return errors.New("NOTIFY_SOCKET barrier: unexpected data on the barrier pipe")
	default:
		return fmt.Errorf("NOTIFY_SOCKET barrier: %w", err)
	}
}

// sendWithFD sends msg and a descriptor of f on a connected datagram
// socket (net's WriteMsgUnix refuses connected datagram sockets).
func sendWithFD(conn *net.UnixConn, msg []byte, f *os.File) error {
	raw, err := conn.SyscallConn()
	if err != nil {
		return err
	}
	var sendErr error
	err = raw.Write(func(fd uintptr) bool {
		sendErr = unix.Sendmsg(int(fd), msg, unix.UnixRights(int(f.Fd())), nil, 0)
		return !errors.Is(sendErr, unix.EAGAIN)
	})
	if err != nil {
		return err
	}
	return sendErr
}
