package runtime

import (
	"net"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

func TestReadyLine(t *testing.T) {
	for msg, want := range map[string]string{
		"READY=1":                       "READY=1",
		"STATUS=starting\nREADY=1\n":    "READY=1",
		"READY=1\nSTATUS=up":            "READY=1",
		"STATUS=READY=1":                "",
		"WATCHDOG=1":                    "",
		"":                              "",
		"MAINPID=7\nREADY=1\nREADY=2\n": "READY=1",
	} {
		if got := string(readyLine([]byte(msg))); got != want {
			t.Errorf("readyLine(%q) = %q, want %q", msg, got, want)
		}
	}
}

// TestReadyQueuedAfterExit: a READY=1 the process sent just before it
// exited is already queued when its exit is seen; it is passed on, and
// an empty queue ends the wait at once.
func TestReadyQueuedAfterExit(t *testing.T) {
	n, host, send := containerNotifySocket(t)
	// The read before the exit check timed out: its deadline has passed.
	if err := n.conn.SetReadDeadline(time.Now().Add(-time.Second)); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 4096)

	done := make(chan error, 1)
	go func() { done <- n.readyQueued(buf, 42) }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("an empty queue: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("an empty queue: readyQueued waits for more")
	}
	if got := host.lines(); len(got) != 0 {
		t.Fatalf("an empty queue: the host got %q", got)
	}

	send("STATUS=starting")
	send("READY=1")
	if err := n.readyQueued(buf, 42); err != nil {
		t.Fatal(err)
	}
	host.want(t, "READY=1", "MAINPID=42", "BARRIER=1")
}

// TestReadyOfReapedProcess: a process that said READY=1 and was reaped
// before the wait began (a foreground run waits for its process
// meanwhile) still has it passed on.
func TestReadyOfReapedProcess(t *testing.T) {
	n, host, send := containerNotifySocket(t)
	cmd := exec.Command("/bin/true")
	if err := cmd.Run(); err != nil {
		t.Fatal(err)
	}
	send("READY=1")
	if err := n.waitReady(cmd.Process.Pid, 42); err != nil {
		t.Fatal(err)
	}
	host.want(t, "READY=1", "MAINPID=42", "BARRIER=1")
}

// containerNotifySocket is a container's notify socket, listening, whose
// host socket is a testHostSocket, and a function that sends it a
// datagram as the container's process would.
func containerNotifySocket(t *testing.T) (*notifySocket, *testHostSocket, func(string)) {
	t.Helper()
	dir := t.TempDir()
	host := hostNotifySocket(t, filepath.Join(dir, "host.sock"))
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: filepath.Join(dir, "c.sock"), Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	send := func(msg string) {
		c, err := net.DialUnix("unixgram", nil, conn.LocalAddr().(*net.UnixAddr))
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		if _, err := c.Write([]byte(msg)); err != nil {
			t.Fatal(err)
		}
	}
	return &notifySocket{host: host.path, conn: conn}, host, send
}

// testHostSocket is a service manager's notify socket that takes in
// every datagram and acknowledges barriers (closes the fds sent).
type testHostSocket struct {
	path string
	got  chan string
}

func hostNotifySocket(t *testing.T, path string) *testHostSocket {
	t.Helper()
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	h := &testHostSocket{path: path, got: make(chan string, 64)}
	go func() {
		buf, oob := make([]byte, 4096), make([]byte, unix.CmsgSpace(4*8))
		for {
			k, oobn, _, _, err := conn.ReadMsgUnix(buf, oob)
			if err != nil {
				return
			}
			for _, line := range strings.Split(strings.TrimSpace(string(buf[:k])), "\n") {
				h.got <- line
			}
			msgs, _ := unix.ParseSocketControlMessage(oob[:oobn])
			for _, m := range msgs {
				fds, _ := unix.ParseUnixRights(&m)
				for _, fd := range fds {
					unix.Close(fd)
				}
			}
		}
	}()
	return h
}

// want checks that the socket took in every line of want so far.
func (h *testHostSocket) want(t *testing.T, want ...string) {
	t.Helper()
	got := h.lines()
	for _, w := range want {
		if !slices.Contains(got, w) {
			t.Errorf("the host got %q, want %q among them", got, w)
		}
	}
}

// lines is what the socket took in so far.
func (h *testHostSocket) lines() []string {
	var out []string
	for {
		select {
		case l := <-h.got:
			out = append(out, l)
		default:
			return out
		}
	}
}
