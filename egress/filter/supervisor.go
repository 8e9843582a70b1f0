package filter

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/clawrun/clawrun/egress"
)

// ReadyFD is the supervisor's fd on which it reports "ok" or the error
// that kept it from filtering, then closes it.
const ReadyFD = 3

// SupervisorMain runs the supervisor; it never returns.
func SupervisorMain(configPath string) {
	ready := os.NewFile(ReadyFD, "ready")
	err := supervise(configPath, func(setupErr error) {
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

func supervise(configPath string, reportReady func(error)) error {
	// Workers are forked from this thread only, and it lives as long as the
	// supervisor: a worker's Pdeathsig fires when the thread that forked it
	// exits, not the process, and Go discards threads left locked.
	runtime.LockOSThread()
	cfg, err := LoadConfig(configPath)
	if err != nil {
		reportReady(err)
		return err
	}
	status := &Status{State: "starting", Supervisor: os.Getpid()}
	save := func() { _ = writeJSONAtomic(cfg.StatusFile, status) }
	save()

	ns, err := os.Open(cfg.Netns)
	if err != nil {
		reportReady(fmt.Errorf("network namespace: %w", err))
		return err
	}
	nsFD := int(ns.Fd())
	ports := egress.Ports{Proxy: cfg.ProxyPort, DNS: cfg.DNSPort}
	if err := egress.EnsureRoutes(nsFD); err != nil {
		reportReady(err)
		return err
	}
	ln, err := egress.Listen(nsFD, ports)
	if err != nil {
		reportReady(err)
		return err
	}
	// Rules last: from here on everything goes through the sockets above.
	if err := egress.InstallRules(nsFD, ports); err != nil {
		ln.Close()
		reportReady(err)
		return err
	}
	files, layout, err := listenerFiles(ln)
	if err != nil {
		_ = egress.RemoveRules(nsFD)
		reportReady(err)
		return err
	}

	sigs := make(chan os.Signal, 8)
	signal.Notify(sigs, unix.SIGTERM, unix.SIGINT, unix.SIGHUP)
	var worker *exec.Cmd
	var cg *memCgroup
	events := make(chan workerEvent, 64)
	startWorker := func() (err error) {
		if cg == nil {
			if cg, err = newWorkerCgroup(cfg.limits().MemoryBytes); err != nil {
				return err
			}
		}
		if worker, err = spawnWorker(configPath, files, layout, cg, events); err != nil {
			worker = nil
			return err
		}
		status.Worker = worker.Process.Pid
		return nil
	}
	if err := startWorker(); err != nil {
		_ = egress.RemoveRules(nsFD)
		reportReady(err)
		return err
	}
	// Ready once the worker enforces its rules, not merely started.
	if exited, err := awaitLoaded(events, status, cfg.limits().MemoryBytes, 10*time.Second); err != nil {
		if !exited {
			_ = worker.Process.Kill()
			awaitExit(events, status, time.Minute)
		}
		cg.remove()
		_ = egress.RemoveRules(nsFD)
		reportReady(err)
		return err
	}
	status.State = "running"
	save()
	reportReady(nil)

	stop := func() error {
		status.State = "stopped"
		if worker != nil && worker.Process != nil {
			_ = worker.Process.Signal(unix.SIGTERM)
			if !awaitExit(events, status, 2*time.Second) {
				_ = worker.Process.Kill()
				awaitExit(events, status, time.Minute)
			}
		}
		if cg != nil {
			cg.remove()
		}
		var err error
		// Other containers (a pod's) may still run in the namespace: then
		// the rules stay, with no filter behind them, so nothing of theirs
		// gets out; they go with the namespace. When that cannot be told,
		// they stay too.
		users, uerr := egress.NamespaceUsers(nsFD)
		switch {
		case uerr != nil:
			status.Error = "stopped; its rules stay (processes in the namespace unknown: " + uerr.Error() + ")"
		case len(users) > 0:
			status.Error = fmt.Sprintf("stopped with processes %v still in the namespace: its rules stay, nothing gets out", users)
		default:
			err = egress.RemoveRules(nsFD)
		}
		ln.Close()
		ns.Close()
		save()
		return err
	}

	backoff := 50 * time.Millisecond
	var recent []time.Time
	for {
		select {
		case s := <-sigs:
			if s == unix.SIGHUP {
				if worker != nil && worker.Process != nil {
					_ = worker.Process.Signal(unix.SIGHUP)
				}
				continue
			}
			return stop()
		case ev := <-events:
			if ev.report != nil {
				noteReport(status, *ev.report)
				save()
				continue
			}
			exit := ev.exit
			worker = nil
			// The worker died: its sockets stay here, so connections wait
			// in the backlog (nothing gets out, nothing can take the port)
			// until a new worker accepts them.
			status.Restarts++
			status.State = "restarting"
			status.Error = exit.describe(cfg.limits().MemoryBytes)
			status.LastFailure = &Failure{Time: time.Now(), Message: status.Error}
			save()
			now := time.Now()
			recent = append(recent, now)
			for len(recent) > 0 && now.Sub(recent[0]) > time.Minute {
				recent = recent[1:]
			}
			if len(recent) > 20 {
				status.State = "failed"
				save()
				// Keep the rules and the sockets: the namespace stays
				// closed until the container is deleted.
				for s := range sigs {
					if s != unix.SIGHUP {
						return stop()
					}
				}
			}
			time.Sleep(backoff)
			backoff = min(backoff*2, 2*time.Second)
			if err := startWorker(); err != nil {
				// Like an exit: retried after the backoff, and failed
				// after too many.
				events <- workerEvent{exit: &workerExit{err: err, notStart: true}}
				continue
			}
			// Running again once the worker says it loaded its rules.
			save()
		}
	}
}

const fdLayoutEnv = "_CLAWRUN_EGRESS_FDS"

// listenerFiles dups the listeners for the worker, with the layout
// "proxy,dnsudp,dnstcp" counts.
func listenerFiles(ln *egress.Listeners) ([]*os.File, string, error) {
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

// Stop asks the supervisor with the given pid to stop, and waits for it.
func Stop(pid int, timeout time.Duration) error {
	if pid <= 0 || !isSupervisor(pid) {
		return nil // gone (its pid may even belong to another process now)
	}
	if err := unix.Kill(pid, unix.SIGTERM); err != nil {
		if errors.Is(err, unix.ESRCH) {
			return nil
		}
		return err
	}
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		if err := unix.Kill(pid, 0); errors.Is(err, unix.ESRCH) {
			return nil
		}
		// The supervisor may be our child (run in the foreground): reap it.
		var ws unix.WaitStatus
		_, _ = unix.Wait4(pid, &ws, unix.WNOHANG, nil)
		// Usually it is not (its starter exited): it stays a zombie until
		// init or a subreaper reaps it, which some do only now and then.
		// A zombie has done all it had to do.
		if zombie(pid) {
			return nil
		}
		time.Sleep(5 * time.Millisecond)
	}
	_ = unix.Kill(pid, syscall.SIGKILL)
	return fmt.Errorf("egress supervisor %d did not stop within %s", pid, timeout)
}

// isSupervisor tells whether pid is still an egress supervisor.
func isSupervisor(pid int) bool {
	cmdline, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/cmdline")
	if err != nil {
		return false
	}
	args := strings.Split(string(cmdline), "\x00")
	return len(args) > 1 && args[1] == SupervisorArg
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
