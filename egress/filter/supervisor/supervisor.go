package supervisor

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"runtime"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/clawrun/clawrun/egress/kernel"
)

// ReadyFD is the supervisor's fd on which it reports "ok" or the error
// that kept it from filtering, then closes it.
const ReadyFD = 3

// RuntimeFD is the supervisor's end of a pipe from the runtime that
// starts it, which sends two lines on it:
//
//	StartMsg: the runtime has recorded the supervisor (where delete finds
//	    it): it may set up the filter. Until then it touches nothing.
//	CommitMsg: the runtime has recorded the filter as the namespace's:
//	    the filter is the container's for good.
//
// The end of the pipe before a message (the runtime died: a killed
// create) is an order to undo: exit, after removing what it set up.
const RuntimeFD = 4

// The runtime's messages on RuntimeFD.
const (
	StartMsg  = "start"
	CommitMsg = "commit"
)

// Main runs the supervisor of the filter whose config is configPath,
// starting its workers from the program workerExe; it never returns.
func Main(configPath, workerExe string) {
	// Neither end is for the worker.
	unix.CloseOnExec(ReadyFD)
	unix.CloseOnExec(RuntimeFD)
	ready := os.NewFile(ReadyFD, "ready")
	err := supervise(configPath, workerExe, runtimeMessages(os.NewFile(RuntimeFD, "runtime")), func(setupErr error) {
		if ready == nil {
			return
		}
		msg := "ok\n"
		if setupErr != nil {
			msg = "error: " + setupErr.Error() + "\n"
		}
		_, _ = ready.WriteString(msg)
		ready.Close()
		ready = nil
	})
	if err != nil {
		fmt.Fprintln(os.Stderr, "clawrun egress supervisor:", err)
		os.Exit(1)
	}
	os.Exit(0)
}

// errRuntimeGone is the supervisor's exit when its runtime died before
// it could start.
var errRuntimeGone = errors.New("the runtime that started it is gone")

// runtimeMessages delivers the runtime's lines on f, then "" when the
// runtime closes it or dies.
func runtimeMessages(f *os.File) <-chan string {
	msgs := make(chan string, 2)
	go func() {
		defer close(msgs)
		if f == nil {
			return
		}
		defer f.Close()
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			msgs <- sc.Text()
		}
	}()
	return msgs
}

func supervise(configPath, workerExe string, fromRuntime <-chan string, reportReady func(error)) error {
	// Workers are forked from this thread only, and it lives as long as the
	// supervisor: a worker's Pdeathsig fires when the thread that forked it
	// exits, not the process, and Go discards threads left locked.
	runtime.LockOSThread()
	// Caught from the start: a stop asked for during the setup comes
	// after it, and undoes it.
	sigs := make(chan os.Signal, 8)
	signal.Notify(sigs, unix.SIGTERM, unix.SIGINT, unix.SIGHUP)
	if err := awaitStart(fromRuntime, sigs); err != nil {
		return err
	}
	cfg, err := loadConfig(configPath)
	if err != nil {
		reportReady(err)
		return err
	}
	exe, err := os.Open(workerExe)
	if err != nil {
		err = fmt.Errorf("egress worker program: %w", err)
		reportReady(err)
		return err
	}
	s := &supervisor{
		cfg: cfg, configPath: configPath, workerExe: exe, sigs: sigs, fromRuntime: fromRuntime,
		status:  &Status{State: StateStarting, Supervisor: os.Getpid()},
		events:  make(chan workerEvent, 64),
		backoff: 50 * time.Millisecond,
	}
	s.save()

	if s.ns, err = os.Open(cfg.Netns); err != nil {
		reportReady(fmt.Errorf("network namespace: %w", err))
		return err
	}
	s.nsFD = int(s.ns.Fd())
	if err := s.installFilter(); err != nil {
		reportReady(err)
		return err
	}
	if err := s.firstWorker(); err != nil {
		reportReady(err)
		return err
	}
	s.status.State = StateRunning
	s.save()
	reportReady(nil)
	return s.serve()
}

// supervisor is one filter's supervisor once started: the namespace it
// filters, the listeners it keeps there, and its worker.
type supervisor struct {
	cfg         *Config
	configPath  string
	workerExe   *os.File // the program of its workers
	status      *Status
	sigs        chan os.Signal
	fromRuntime <-chan string // nil once the runtime committed

	ns     *os.File
	nsFD   int
	ln     *kernel.Listeners
	files  []*os.File // the listeners, for the workers
	layout string

	worker  *exec.Cmd // nil while none runs
	cg      *memCgroup
	events  chan workerEvent
	backoff time.Duration // before the next restart
	recent  []time.Time   // the worker's exits in the last minute
}

// save writes the status file.
func (s *supervisor) save() { _ = writeStatus(s.cfg.StatusFile, s.status) }

// memoryLimit is the worker's.
func (s *supervisor) memoryLimit() int64 { return MemoryLimit(s.cfg.Limits.MemoryBytes) }

// installFilter sets up the routes, the listeners and the nftables rules
// in the namespace, the rules last: from then on everything goes through
// the listeners. On failure nothing of the rules stays.
func (s *supervisor) installFilter() error {
	ports := kernel.Ports{Proxy: s.cfg.ProxyPort, DNS: s.cfg.DNSPort}
	if err := kernel.EnsureRoutes(s.nsFD); err != nil {
		return err
	}
	ln, err := kernel.Listen(s.nsFD, ports)
	if err != nil {
		return err
	}
	s.ln = ln
	if err := kernel.InstallRules(s.nsFD, ports); err != nil {
		ln.Close()
		return err
	}
	if s.files, s.layout, err = listenerFiles(ln); err != nil {
		_ = kernel.RemoveRules(s.nsFD)
		return err
	}
	return nil
}

// firstWorker starts the first worker and waits until it enforces its
// rules, not merely started. On failure the worker, its cgroup and the
// rules are gone.
func (s *supervisor) firstWorker() error {
	if err := s.startWorker(); err != nil {
		_ = kernel.RemoveRules(s.nsFD)
		return err
	}
	if exited, err := awaitLoaded(s.events, s.status, s.memoryLimit(), 10*time.Second); err != nil {
		if !exited {
			_ = s.worker.Process.Kill()
			awaitExit(s.events, s.status, time.Minute)
		}
		s.cg.remove()
		_ = kernel.RemoveRules(s.nsFD)
		return err
	}
	return nil
}

// startWorker starts a worker on the listeners, in the workers' memory
// cgroup (made on first use).
func (s *supervisor) startWorker() (err error) {
	if s.cg == nil {
		if s.cg, err = newWorkerCgroup(s.memoryLimit()); err != nil {
			return err
		}
	}
	if s.worker, err = spawnWorker(s.workerExe, s.configPath, s.files, s.layout, s.cg, s.events); err != nil {
		s.worker = nil
		return err
	}
	s.status.Worker = s.worker.Process.Pid
	return nil
}

// serve runs the started filter until it is stopped: by the runtime's
// death before it committed, or by a signal. It passes SIGHUP (a reload)
// to the worker and restarts a worker that died.
func (s *supervisor) serve() error {
	for {
		select {
		case m := <-s.fromRuntime:
			if m == CommitMsg {
				s.fromRuntime = nil // the container's for good
				continue
			}
			// The runtime died (or gave up) before it committed: nothing
			// will ever stop this filter but this.
			return s.stop()
		case sig := <-s.sigs:
			if sig == unix.SIGHUP {
				if s.worker != nil && s.worker.Process != nil {
					_ = s.worker.Process.Signal(unix.SIGHUP)
				}
				continue
			}
			return s.stop()
		case ev := <-s.events:
			if ev.report != nil {
				noteReport(s.status, *ev.report, time.Now())
				s.save()
				continue
			}
			if stopped, err := s.restart(ev.exit); stopped {
				return err
			}
		}
	}
}

// restart records a worker's exit and starts another after a backoff.
// The worker's sockets stay here meanwhile, so connections wait in the
// backlog (nothing gets out, nothing can take the port). After more than
// 20 exits in a minute the filter has failed: it keeps the rules and the
// sockets, so the namespace stays closed, and only waits to be stopped
// (stopped, with stop's error).
func (s *supervisor) restart(exit *workerExit) (stopped bool, err error) {
	s.worker = nil
	s.status.Restarts++
	s.status.State = StateRestarting
	s.status.Error = exit.describe(s.memoryLimit())
	s.status.LastFailure = &Failure{Time: time.Now(), Message: s.status.Error}
	s.save()
	now := time.Now()
	s.recent = append(s.recent, now)
	for len(s.recent) > 0 && now.Sub(s.recent[0]) > time.Minute {
		s.recent = s.recent[1:]
	}
	if len(s.recent) > 20 {
		s.status.State = StateFailed
		s.save()
		for sig := range s.sigs {
			if sig != unix.SIGHUP {
				return true, s.stop()
			}
		}
	}
	time.Sleep(s.backoff)
	s.backoff = min(s.backoff*2, 2*time.Second)
	if err := s.startWorker(); err != nil {
		// Like an exit: retried after the backoff, and failed after too
		// many.
		s.events <- workerEvent{exit: &workerExit{err: err, notStart: true}}
		return false, nil
	}
	// Running again once the worker says it loaded its rules.
	s.save()
	return false, nil
}

// stop stops the worker and removes what the filter set up, but the rules
// while other processes still use the namespace.
func (s *supervisor) stop() error {
	s.status.State = StateStopped
	if s.worker != nil && s.worker.Process != nil {
		_ = s.worker.Process.Signal(unix.SIGTERM)
		if !awaitExit(s.events, s.status, 2*time.Second) {
			_ = s.worker.Process.Kill()
			awaitExit(s.events, s.status, time.Minute)
		}
	}
	if s.cg != nil {
		s.cg.remove()
	}
	var err error
	// Other containers (a pod's) may still run in the namespace: then
	// the rules stay, with no filter behind them, so nothing of theirs
	// gets out; they go with the namespace. When that cannot be told,
	// they stay too.
	users, uerr := kernel.NamespaceUsers(s.nsFD)
	switch {
	case uerr != nil:
		s.status.Error = "stopped; its rules stay (processes in the namespace unknown: " + uerr.Error() + ")"
	case len(users) > 0:
		s.status.Error = fmt.Sprintf("stopped with processes %v still in the namespace: its rules stay, nothing gets out", users)
	default:
		err = kernel.RemoveRules(s.nsFD)
	}
	s.ln.Close()
	s.ns.Close()
	s.save()
	return err
}

// awaitStart waits for the runtime's StartMsg. The runtime's death,
// another message or a stop signal first is an error: the supervisor
// exits, having done nothing.
func awaitStart(fromRuntime <-chan string, sigs <-chan os.Signal) error {
	for {
		select {
		case m := <-fromRuntime:
			if m == StartMsg {
				return nil
			}
			return errRuntimeGone
		case s := <-sigs:
			if s != unix.SIGHUP {
				return fmt.Errorf("stopped (%v) before it started", s)
			}
		}
	}
}

// FDLayoutEnv tells the worker how many of each listener it inherits.
const FDLayoutEnv = "_CLAWRUN_EGRESS_FDS"

// listenerFiles dups the listeners for the worker, with the layout
// "proxy,dnsudp,dnstcp" counts.
func listenerFiles(ln *kernel.Listeners) ([]*os.File, string, error) {
	var files []*os.File
	for _, l := range ln.Proxy {
		f, err := l.File()
		if err != nil {
			return nil, "", err
		}
		files = append(files, f)
	}
	for _, c := range ln.DNSUDP {
		f, err := c.File()
		if err != nil {
			return nil, "", err
		}
		files = append(files, f)
	}
	for _, l := range ln.DNSTCP {
		f, err := l.File()
		if err != nil {
			return nil, "", err
		}
		files = append(files, f)
	}
	layout := strconv.Itoa(len(ln.Proxy)) + "," + strconv.Itoa(len(ln.DNSUDP)) + "," + strconv.Itoa(len(ln.DNSTCP))
	return files, layout, nil
}

// Stop asks the supervisor pid of the filter whose config is configPath to
// stop (SIGTERM), which removes its rules, and waits up to grace for it.
// One that does not stop in time (stopped, stuck) is killed with its
// worker workerPid (SIGKILL): killed reports it, as its rules then stay
// for the caller to remove. A supervisor that is gone, or whose pid now
// belongs to another process, is no error.
func Stop(pid, workerPid int, configPath string, grace time.Duration) (killed bool, err error) {
	sup, err := openFilterProcess(pid, SupervisorArg, configPath)
	if err != nil || sup < 0 {
		return false, err // gone, and its worker with it (Pdeathsig)
	}
	defer unix.Close(sup)
	defer reap(pid)
	if err := unix.PidfdSendSignal(sup, unix.SIGTERM, nil, 0); err != nil && !errors.Is(err, unix.ESRCH) {
		return false, err
	}
	if exited(sup, grace) {
		return false, nil
	}
	worker, err := openFilterProcess(workerPid, WorkerArg, configPath)
	if err != nil {
		return false, err
	}
	if worker >= 0 {
		defer unix.Close(worker)
		_ = unix.PidfdSendSignal(worker, unix.SIGKILL, nil, 0)
	}
	cg, hasCgroup := supervisorCgroup(pid) // read while it is there
	_ = unix.PidfdSendSignal(sup, unix.SIGKILL, nil, 0)
	if !exited(sup, time.Second) || (worker >= 0 && !exited(worker, time.Second)) {
		return true, fmt.Errorf("egress supervisor %d did not stop within %s, nor when killed", pid, grace)
	}
	if hasCgroup {
		cg.remove()
	}
	return true, nil
}

// openFilterProcess returns a pidfd of pid if it is the filter process
// Running checks for, -1 if it is not (gone, or another program now):
// signals sent through it cannot reach a process that reused the pid.
func openFilterProcess(pid int, role, configPath string) (int, error) {
	if !Running(pid, role, configPath) {
		return -1, nil
	}
	fd, err := unix.PidfdOpen(pid, 0)
	if errors.Is(err, unix.ESRCH) {
		return -1, nil
	}
	if err != nil {
		return -1, err
	}
	if !Running(pid, role, configPath) { // reused between the check and the open
		unix.Close(fd)
		return -1, nil
	}
	return fd, nil
}

// exited waits up to timeout for the process of pidfd to exit (a zombie
// has: its files are closed, its rules and sockets released).
func exited(pidfd int, timeout time.Duration) bool {
	deadline := time.Now().Add(timeout)
	for {
		fds := []unix.PollFd{{Fd: int32(pidfd), Events: unix.POLLIN}}
		n, err := unix.Poll(fds, int(max(0, time.Until(deadline).Milliseconds())))
		switch {
		case n > 0:
			return true
		case errors.Is(err, unix.EINTR):
			continue
		}
		return false
	}
}

// reap collects the supervisor's exit status when it is our child (run
// in the foreground, or stopped by the create that started it); usually
// it is not, and init or a subreaper reaps it.
func reap(pid int) {
	var ws unix.WaitStatus
	_, _ = unix.Wait4(pid, &ws, unix.WNOHANG, nil)
}

// Running tells whether pid is a live filter process in the role
// SupervisorArg or WorkerArg of the filter whose config is configPath; a
// reused pid is another program.
func Running(pid int, role, configPath string) bool {
	args := liveArgs(pid)
	return len(args) > 2 && args[1] == role && args[2] == configPath
}

// IsSupervisor tells whether pid is a live supervisor of any filter (not
// a zombie, not a reused pid running another program).
func IsSupervisor(pid int) bool {
	args := liveArgs(pid)
	return len(args) > 1 && args[1] == SupervisorArg
}

// liveArgs is the command line of pid, nil when it is gone or a zombie.
func liveArgs(pid int) []string {
	if pid <= 0 || zombie(pid) {
		return nil
	}
	cmdline, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/cmdline")
	if err != nil {
		return nil
	}
	return strings.Split(string(cmdline), "\x00")
}

// zombie reports whether pid has exited but was not reaped yet.
func zombie(pid int) bool {
	data, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return false
	}
	// The state follows the command name, which may hold ')'.
	i := bytes.LastIndexByte(data, ')')
	return i >= 0 && i+2 < len(data) && (data[i+2] == 'Z' || data[i+2] == 'X')
}
