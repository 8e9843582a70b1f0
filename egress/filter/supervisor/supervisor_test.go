package supervisor

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// The test binary run as SupervisorArg is a stand-in supervisor that
// either stops on SIGTERM or, with stubStuckEnv set, ignores it.
const stubStuckEnv = "_CLAWRUN_TEST_STUCK"

func TestMain(m *testing.M) {
	if len(os.Args) > 2 && os.Args[1] == SupervisorArg {
		if os.Getenv(stubStuckEnv) != "" {
			signal.Ignore(syscall.SIGTERM)
		}
		fmt.Println("ready")
		time.Sleep(time.Minute)
		os.Exit(0)
	}
	os.Exit(m.Run())
}

func TestAwaitStart(t *testing.T) {
	for _, tc := range []struct {
		name    string
		msgs    []string
		sig     os.Signal
		started bool
	}{
		{name: "started", msgs: []string{StartMsg}, started: true},
		{name: "the runtime died", msgs: nil},
		{name: "a commit before the start", msgs: []string{CommitMsg}},
		{name: "stopped", sig: syscall.SIGTERM},
		{name: "a reload is no stop", msgs: []string{StartMsg}, sig: syscall.SIGHUP, started: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			msgs := make(chan string, len(tc.msgs))
			sigs := make(chan os.Signal, 1)
			if tc.sig != nil {
				sigs <- tc.sig
			}
			for _, m := range tc.msgs {
				msgs <- m
			}
			if tc.sig == nil || tc.started {
				close(msgs)
			}
			err := awaitStart(msgs, sigs)
			if (err == nil) != tc.started {
				t.Fatalf("awaitStart = %v, started %v", err, tc.started)
			}
		})
	}
}

func TestRuntimeMessages(t *testing.T) {
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	msgs := runtimeMessages(r)
	if _, err := w.WriteString(StartMsg + "\n" + CommitMsg + "\n"); err != nil {
		t.Fatal(err)
	}
	w.Close()
	var got []string
	for m := range msgs {
		got = append(got, m)
	}
	if len(got) != 2 || got[0] != StartMsg || got[1] != CommitMsg {
		t.Fatalf("messages %q, want start and commit, then the end", got)
	}
	if _, ok := <-runtimeMessages(nil); ok {
		t.Fatal("no pipe: want the end at once")
	}
}

func TestStop(t *testing.T) {
	cfg := filepath.Join(t.TempDir(), "egress-filter.json")
	start := func(stuck bool) int {
		cmd := exec.Command(os.Args[0], SupervisorArg, cfg)
		if stuck {
			cmd.Env = append(os.Environ(), stubStuckEnv+"=1")
		}
		out, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
		// Its signal handling is in place when it says so.
		if line, err := bufio.NewReader(out).ReadString('\n'); err != nil || line != "ready\n" {
			t.Fatalf("the stand-in supervisor said %q (%v)", line, err)
		}
		return cmd.Process.Pid
	}

	pid := start(false)
	if killed, err := Stop(pid, 0, cfg, 5*time.Second); killed || err != nil {
		t.Errorf("Stop of a supervisor that stops = killed %v, %v", killed, err)
	}
	if Running(pid, SupervisorArg, cfg) {
		t.Errorf("it still runs")
	}

	pid = start(true)
	began := time.Now()
	killed, err := Stop(pid, 0, cfg, 200*time.Millisecond)
	if !killed || err != nil {
		t.Errorf("Stop of a stuck supervisor = killed %v, %v; want killed", killed, err)
	}
	if took := time.Since(began); took > 2*time.Second {
		t.Errorf("Stop of a stuck supervisor took %v", took)
	}
	if Running(pid, SupervisorArg, cfg) {
		t.Errorf("the stuck supervisor still runs")
	}

	// Another process, or another filter's supervisor: left alone.
	other := start(true)
	if killed, err := Stop(other, 0, cfg+".other", 0); killed || err != nil {
		t.Errorf("Stop of another filter's supervisor = killed %v, %v", killed, err)
	}
	if err := unix.Kill(other, 0); err != nil || !Running(other, SupervisorArg, cfg) {
		t.Errorf("another filter's supervisor was stopped: %v", err)
	}
	if killed, err := Stop(os.Getpid(), 0, cfg, 0); killed || err != nil {
		t.Errorf("Stop of a process that is no supervisor = killed %v, %v", killed, err)
	}
}
