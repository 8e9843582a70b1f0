package supervisor

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// workerEvent is what the supervisor learns of a worker, in the order it
// happened: its reports, then its exit.
type workerEvent struct {
	report *Report
	exit   *workerExit
}

// workerExit is how a worker ended, and why in its own words.
type workerExit struct {
	err      error // from Wait, or from starting it (notStarted)
	notStart bool
	oom      bool   // its cgroup's kernel OOM killer fired meanwhile
	words    string // its fatal report, else what it printed last
}

// spawnWorker starts a worker from exe (a file the supervisor holds
// open) on the listeners' files in cgroup cg and sends its events (until
// its exit) to events.
func spawnWorker(exe *os.File, configPath string, files []*os.File, layout string, cg *memCgroup, events chan<- workerEvent) (*exec.Cmd, error) {
	// The program the supervisor started with, by its open file: a
	// worker restarted after an upgrade replaced it is of the same
	// version as its supervisor still. The child execs it from a
	// descriptor above those it inherits (3 and up: the listeners), which
	// would otherwise replace it before the exec.
	exeFD, err := unix.FcntlInt(exe.Fd(), unix.F_DUPFD_CLOEXEC, 3+len(files))
	if err != nil {
		return nil, err
	}
	defer unix.Close(exeFD)
	stderrR, stderrW, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	cmd := exec.Command("/proc/self/fd/"+strconv.Itoa(exeFD), WorkerArg, configPath)
	cmd.Args[0] = exe.Name()
	cmd.ExtraFiles = files
	cmd.Env = append(os.Environ(), FDLayoutEnv+"="+layout, cgroupEnv+"="+cg.dir)
	cmd.Stderr = stderrW
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	ooms := cg.oomKills()
	err = cmd.Start()
	stderrW.Close()
	if err != nil {
		stderrR.Close()
		return nil, err
	}
	go watchWorker(cmd, stderrR, cg, ooms, events)
	return cmd, nil
}

// watchWorker passes the worker's reports on, keeps what else it prints
// (a panic, the Go runtime's fatal error), and reports its exit.
func watchWorker(cmd *exec.Cmd, stderr *os.File, cg *memCgroup, ooms int64, events chan<- workerEvent) {
	var words lastWords
	sc := bufio.NewScanner(stderr)
	sc.Buffer(make([]byte, 4096), 64<<10)
	for sc.Scan() {
		rep, ok := parseReport(sc.Text())
		switch {
		case !ok:
			words.printed(sc.Text())
		case rep.Event == EventFatal:
			words.fatal = rep.Error
		default:
			events <- workerEvent{report: &rep}
		}
	}
	_, _ = io.Copy(io.Discard, stderr) // past a line too long to scan
	stderr.Close()
	err := cmd.Wait()
	now := cg.oomKills()
	events <- workerEvent{exit: &workerExit{err: err, oom: ooms >= 0 && now > ooms, words: words.String()}}
}

// lastWords keeps what explains a worker's end: its fatal report, else
// the first line of a panic or a fatal runtime error, else its last line.
type lastWords struct {
	fatal, crash, last string
}

func (w *lastWords) printed(line string) {
	line = strings.TrimSpace(line)
	if line == "" {
		return
	}
	if len(line) > 512 {
		line = line[:512] + "..."
	}
	if w.crash == "" && (strings.HasPrefix(line, "panic: ") || strings.HasPrefix(line, "fatal error: ")) {
		w.crash = line
	}
	w.last = line
}

func (w lastWords) String() string {
	switch {
	case w.fatal != "":
		return w.fatal
	case w.crash != "":
		return w.crash
	}
	return w.last
}

// describe says how the worker ended: the signal or the exit status,
// with its own words. limit is its memory limit.
func (e *workerExit) describe(limit int64) string {
	var ee *exec.ExitError
	var what string
	switch {
	case e.notStart:
		what = "could not be started: " + e.err.Error()
	case errors.As(e.err, &ee) && ee.Sys().(syscall.WaitStatus).Signaled():
		what = "killed by " + unix.SignalName(ee.Sys().(syscall.WaitStatus).Signal())
		if e.oom {
			what += fmt.Sprintf(" for want of memory (its limit is %d MiB)", limit>>20)
		}
	case errors.As(e.err, &ee):
		what = fmt.Sprintf("exited with status %d", ee.ExitCode())
	case e.err != nil:
		what = e.err.Error()
	default:
		what = "exited"
	}
	if e.words != "" {
		what += ": " + e.words
	}
	return "worker " + what
}

// awaitExit waits up to timeout for the worker's exit, noting its last
// reports in st.
func awaitExit(events <-chan workerEvent, st *Status, timeout time.Duration) bool {
	deadline := time.After(timeout)
	for {
		select {
		case ev := <-events:
			if ev.exit != nil {
				return true
			}
			noteReport(st, *ev.report, time.Now())
		case <-deadline:
			return false
		}
	}
}

// awaitLoaded waits up to timeout for a new worker to load its rules,
// noting its reports in st; the error says why it did not, and exited
// whether the worker is gone.
func awaitLoaded(events <-chan workerEvent, st *Status, limit int64, timeout time.Duration) (exited bool, err error) {
	deadline := time.After(timeout)
	for {
		select {
		case ev := <-events:
			if ev.exit != nil {
				return true, errors.New(ev.exit.describe(limit))
			}
			noteReport(st, *ev.report, time.Now())
			if ev.report.Event == EventLoaded {
				return false, nil
			}
		case <-deadline:
			return false, fmt.Errorf("the worker did not load its rules within %s", timeout)
		}
	}
}
