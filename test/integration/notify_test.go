package integration

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/clawrun/clawrun/test/bundle"
)

// notifyWaiter waits in the container until the test creates /tmp/go,
// after saying which notify socket it has, then says READY=1.
const notifyWaiter = `echo "socket=$NOTIFY_SOCKET"; [ -S "$NOTIFY_SOCKET" ] && echo is-socket; echo waiting; ` +
	`while [ ! -e /tmp/go ]; do sleep 0.05; done; probe sd-notify READY=1 STATUS=up; ` + sleeper

// TestNotifySocket: sd_notify through the runtime, as systemd Type=notify
// units and podman --sdnotify=container use it. The runtime runs with
// NOTIFY_SOCKET (the host's socket); the container gets a socket of its
// own at /run/notify/notify.sock; run -d and start return only once the
// container said READY=1, which reaches the host's socket with MAINPID and
// a barrier. Under a policy too: the launcher must not get in the way.
func TestNotifySocket(t *testing.T) {
	t.Parallel()
	requireReady(t)
	for _, confined := range []bool{false, true} {
		name := "no-policy"
		if confined {
			name = "policy"
		}
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			mk := func(r *rtest, script string) string {
				if confined {
					return r.probeBundle(withPolicy("agent-default"), bundle.Shell(script))
				}
				return r.probeBundle(bundle.Shell(script))
			}
			runtimeFor := func(t *testing.T) *rtest {
				var r *rtest
				if confined {
					r = policyRuntime(t)
				} else {
					r = newRuntime(t)
				}
				// runc binds <root>/<id>/notify/notify.sock as is: keep it
				// within sun_path's 108 bytes.
				root, err := os.MkdirTemp("", "nr")
				if err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() { os.RemoveAll(root) })
				r.root = root
				return r
			}

			t.Run("run-detached", func(t *testing.T) {
				t.Parallel()
				r := runtimeFor(t)
				b := mk(r, notifyWaiter)
				ls := newNotifyListener(t)
				id := newID(t)
				r.track(id)
				p := r.startBG(runOpts{Env: []string{"NOTIFY_SOCKET=" + ls.path}}, "run", "-d", "--bundle", b, id)
				ls.waitReadyThrough(t, r, p, id, p.stdout)
			})

			t.Run("create-start", func(t *testing.T) {
				t.Parallel()
				r := runtimeFor(t)
				b := mk(r, notifyWaiter)
				ls := newNotifyListener(t)
				id := newID(t)
				r.track(id)
				env := []string{"NOTIFY_SOCKET=" + ls.path}
				cr := r.runWith(runOpts{Env: env}, "create", "--bundle", b, id)
				if cr.Code != 0 {
					t.Fatalf("create:\n%s", cr)
				}
				p := r.startBG(runOpts{Env: env}, "start", id)
				ls.waitReadyThrough(t, r, p, id, func() string { return readFile(cr.StdoutPath) })
			})

			// In the foreground the runtime stays the service's main process.
			t.Run("run-foreground", func(t *testing.T) {
				t.Parallel()
				r := runtimeFor(t)
				b := mk(r, `echo "socket=$NOTIFY_SOCKET"; probe sd-notify READY=1`)
				ls := newNotifyListener(t)
				id := newID(t)
				r.track(id)
				p := r.startBG(runOpts{Env: []string{"NOTIFY_SOCKET=" + ls.path}}, "run", "--bundle", b, id)
				res := p.wait(cmdTimeout)
				if res.Code != 0 || !strings.Contains(res.Stdout, "socket=/run/notify/notify.sock\nOK\n") {
					t.Fatalf("run: want the container's socket and its READY=1 sent:\n%s", res)
				}
				ls.want(t, "READY=1", "MAINPID="+strconv.Itoa(p.cmd.Process.Pid), "BARRIER=1")
			})

			// A process that exits without READY=1 ends the wait.
			t.Run("exit-without-ready", func(t *testing.T) {
				t.Parallel()
				r := runtimeFor(t)
				if !r.isClawrun() {
					t.Skipf("not clawrun: %s waits for READY=1 forever when the container exits without it", r.bin)
				}
				b := mk(r, `exit 3`)
				ls := newNotifyListener(t)
				env := []string{"NOTIFY_SOCKET=" + ls.path}
				id := newID(t)
				r.track(id)
				if res := r.runWith(runOpts{Env: env}, "run", "--bundle", b, id); res.Code != 3 {
					t.Errorf("run: want the container's exit status 3:\n%s", res)
				}
				id = newID(t)
				r.track(id)
				if res := r.runWith(runOpts{Env: env}, "run", "-d", "--bundle", b, id); res.Code != 0 {
					t.Errorf("run -d:\n%s", res)
				}
				if got := ls.lines(); len(got) > 0 {
					t.Errorf("the host's socket got %q from a container that said nothing", got)
				}
			})
		})
	}
}

// waitReadyThrough checks a run -d or start invocation p of container id:
// it must not return before the container says READY=1 (when the test
// creates /tmp/go in it), and then the host's socket has READY=1, MAINPID
// (the container's init) and BARRIER=1. out is the container's stdout.
func (l *notifyListener) waitReadyThrough(t *testing.T, r *rtest, p *proc, id string, out func() string) {
	t.Helper()
	waitFor(t, cmdTimeout, "the container to wait for /tmp/go", func() bool {
		select {
		case <-p.done:
			t.Fatalf("%v returned before the container said READY=1:\n%s", p.argv, p.result())
		default:
		}
		return strings.Contains(out(), "waiting")
	})
	if !strings.Contains(out(), "socket=/run/notify/notify.sock\nis-socket\n") {
		t.Fatalf("the container has no notify socket of its own: %q", out())
	}
	select {
	case <-p.done:
		t.Fatalf("%v returned before the container said READY=1:\n%s", p.argv, p.result())
	default:
	}
	if got := l.lines(); len(got) > 0 {
		t.Fatalf("the host's socket got %q before the container said anything", got)
	}
	pid := r.state(id).Pid
	if err := os.WriteFile(fmt.Sprintf("/proc/%d/root/tmp/go", pid), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if res := p.wait(cmdTimeout); res.Code != 0 {
		t.Fatalf("after READY=1:\n%s", res)
	}
	l.want(t, "READY=1", "MAINPID="+strconv.Itoa(pid), "BARRIER=1")
	if st := r.state(id); st.Status != "running" {
		t.Errorf("after READY=1 the container is %s", st.Status)
	}
}

// notifyListener is a service manager's notify socket on the host: it
// keeps every line it gets and acknowledges barriers (closes the file
// descriptor that comes with BARRIER=1), as systemd does.
type notifyListener struct {
	path string
	mu   sync.Mutex
	got  []string
}

func newNotifyListener(t *testing.T) *notifyListener {
	t.Helper()
	dir, err := os.MkdirTemp("", "nt") // sun_path is 108 bytes: not t.TempDir()
	if err != nil {
		t.Fatal(err)
	}
	l := &notifyListener{path: filepath.Join(dir, "notify.sock")}
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: l.path, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close(); os.RemoveAll(dir) })
	go func() {
		buf, oob := make([]byte, 4096), make([]byte, unix.CmsgSpace(4*8))
		for {
			n, oobn, _, _, err := conn.ReadMsgUnix(buf, oob)
			if err != nil {
				return
			}
			l.mu.Lock()
			l.got = append(l.got, strings.Split(strings.TrimSpace(string(buf[:n])), "\n")...)
			l.mu.Unlock()
			// The acknowledgement, once the message is taken in.
			closeRights(oob[:oobn])
		}
	}()
	return l
}

func closeRights(oob []byte) {
	msgs, _ := unix.ParseSocketControlMessage(oob)
	for _, m := range msgs {
		fds, _ := unix.ParseUnixRights(&m)
		for _, fd := range fds {
			unix.Close(fd)
		}
	}
}

func (l *notifyListener) lines() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Clone(l.got)
}

// want checks that every line of want has arrived (they all have once the
// runtime returned: the barrier is the last of them).
func (l *notifyListener) want(t *testing.T, want ...string) {
	t.Helper()
	got := l.lines()
	for _, w := range want {
		if !slices.Contains(got, w) {
			t.Errorf("the host's notify socket got %q, want %q among them", got, w)
		}
	}
}
