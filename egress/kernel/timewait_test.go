package kernel

import (
	"io"
	"net"
	"os"
	"testing"
	"time"

	"github.com/clawrun/clawrun/egress/internal/egresstest"
)

// closedExchange is a loopback connection dialed as the filter dials
// (its socket stamped), whose both directions have ended: the side that
// closes first (shuts down writing) does, then the other. It returns the
// dialed side, still open, and the server's.
func closedExchange(t testing.TB, dialedFirst bool) (dialed, served net.Conn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	d := net.Dialer{Control: StampCookie}
	dialed, err = d.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	served, err = ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { dialed.Close(); served.Close() })
	first, second := dialed, served
	if !dialedFirst {
		first, second = served, dialed
	}
	if err := first.(*net.TCPConn).CloseWrite(); err != nil {
		t.Fatal(err)
	}
	readToEnd(t, second)
	if err := second.(*net.TCPConn).CloseWrite(); err != nil {
		t.Fatal(err)
	}
	readToEnd(t, first)
	return dialed, served
}

func readToEnd(t testing.TB, c net.Conn) {
	t.Helper()
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if n, err := io.Copy(io.Discard, c); n != 0 || err != nil {
		t.Fatalf("read %d bytes (%v), want the end", n, err)
	}
}

// The connection that closed first leaves no TIME_WAIT behind; Close
// alone (the control) does.
func TestTimeWaitsCloseRemovesTheTimeWait(t *testing.T) {
	needRoot(t)
	tw, err := NewTimeWaits()
	if err != nil {
		t.Fatal(err)
	}
	control, _ := closedExchange(t, true)
	local, remote := AddrPort(control.LocalAddr()), AddrPort(control.RemoteAddr())
	control.Close()
	if st := egresstest.TCPState(t, local, remote); st != egresstest.TimeWait {
		t.Fatalf("control: the connection closed first is in state %q after Close, want TIME_WAIT", st)
	}

	c, _ := closedExchange(t, true)
	local, remote = AddrPort(c.LocalAddr()), AddrPort(c.RemoteAddr())
	if err := tw.Close(c); err != nil {
		t.Fatal(err)
	}
	if st := egresstest.TCPState(t, local, remote); st != "" {
		t.Fatalf("the connection closed first is in state %q after TimeWaits.Close, want gone", st)
	}
}

// A connection whose peer closed first is closed the ordinary way: the
// peer gets the last FIN, acknowledges it and keeps the TIME_WAIT, as
// without TimeWaits.
func TestTimeWaitsClosePassiveSideUntouched(t *testing.T) {
	needRoot(t)
	tw, err := NewTimeWaits()
	if err != nil {
		t.Fatal(err)
	}
	c, s := closedExchange(t, false)
	local, remote := AddrPort(c.LocalAddr()), AddrPort(c.RemoteAddr())
	if err := tw.Close(c); err != nil {
		t.Fatal(err)
	}
	s.Close()
	deadline := time.Now().Add(5 * time.Second)
	for egresstest.TCPState(t, remote, local) != egresstest.TimeWait {
		if time.Now().After(deadline) {
			t.Fatalf("the peer that closed first is in state %q, want TIME_WAIT (a clean end)", egresstest.TCPState(t, remote, local))
		}
		time.Sleep(10 * time.Millisecond)
	}
	if st := egresstest.TCPState(t, local, remote); st != "" {
		t.Fatalf("the side that closed last is in state %q, want gone", st)
	}
}

func needRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Fatal("removing a TIME_WAIT socket (SOCK_DESTROY) needs CAP_NET_ADMIN: run as root")
	}
}

// BenchmarkTimeWaitsClose is what Close costs a connection that closed
// first (the lookup and the removal of its TIME_WAIT), against a plain
// Close.
func BenchmarkTimeWaitsClose(b *testing.B) {
	tw, err := NewTimeWaits()
	if err != nil {
		b.Fatal(err)
	}
	for _, bc := range []struct {
		name  string
		close func(net.Conn) error
	}{{"TimeWaits", tw.Close}, {"plain", net.Conn.Close}} {
		b.Run(bc.name, func(b *testing.B) {
			for b.Loop() {
				b.StopTimer()
				c, s := closedExchange(b, true)
				s.Close()
				b.StartTimer()
				if err := bc.close(c); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
