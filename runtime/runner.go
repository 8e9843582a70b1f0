package runtime

import (
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"github.com/opencontainers/runc/libcontainer"
	"github.com/opencontainers/runtime-spec/specs-go"
	"github.com/sirupsen/logrus"
	"golang.org/x/sys/unix"
)

// action is what a runner does with its container.
type action int

const (
	actCreate action = iota // start the init, leave it blocked on the exec fifo
	actRun                  // start a process and let it run
)

// ProcessIO holds the options shared by create, run and exec for the
// process being started.
type ProcessIO struct {
	// ConsoleSocket receives the pty master when a detached process has a
	// terminal.
	ConsoleSocket string
	// PidfdSocket receives a pidfd of the process.
	PidfdSocket string
	// PidFile gets the process's host pid, written atomically.
	PidFile string
	// PreserveFDs passes clawrun's fds 3+len(LISTEN_FDS) ... +N-1 on.
	PreserveFDs int
	// Detach returns as soon as the process runs.
	Detach bool
}

// runner starts one process in a container and, in the foreground,
// forwards signals to it and returns its exit status.
type runner struct {
	ProcessIO
	container  *libcontainer.Container
	action     action
	init       bool // the container's first process
	subreaper  bool
	destroy    bool // destroy the container when the process fails or ends
	listenFDs  []*os.File
	subCgroups map[string]string
	// confine, when set, runs the process through the policy launcher,
	// whose report goes to the init's record in stateDir or, for an exec'd
	// process, a pipe.
	confine  *confinement
	stateDir string
	// notify, when set, listens for the process's READY=1 (run with
	// NOTIFY_SOCKET).
	notify *notifySocket
	// began is when the create or run of a confined init began: its
	// start-up time is recorded (recordStartup) once it is confined.
	began time.Time
}

func (r *runner) run(config *specs.Process) (status int, retErr error) {
	defer func() {
		if retErr != nil {
			r.destroyContainer()
		}
	}()
	detach := r.Detach || r.action == actCreate
	if detach && config.Terminal && r.ConsoleSocket == "" {
		return -1, invalidArgument(errors.New("cannot allocate a terminal for a detached process without --console-socket"))
	}
	if (!detach || !config.Terminal) && r.ConsoleSocket != "" {
		return -1, invalidArgument(errors.New("--console-socket needs a detached process with a terminal (process.terminal or -t)"))
	}
	process, err := newProcess(config)
	if err != nil {
		return -1, invalidArgument(err)
	}
	process.LogLevel = strconv.Itoa(int(logrus.GetLevel()))
	process.Init = r.init
	process.SubCgroupPaths = r.subCgroups
	if len(r.listenFDs) > 0 {
		process.Env = append(process.Env, "LISTEN_FDS="+strconv.Itoa(len(r.listenFDs)), "LISTEN_PID=1")
		process.ExtraFiles = append(process.ExtraFiles, r.listenFDs...)
	}
	base := 3 + len(process.ExtraFiles)
	for fd := base; fd < base+r.PreserveFDs; fd++ {
		if _, err := unix.FcntlInt(uintptr(fd), unix.F_GETFD, 0); err != nil {
			return -1, invalidArgument(fmt.Errorf("--preserve-fds: fd %d (preserved fd %d of %d) is not open", fd, fd-base, r.PreserveFDs))
		}
		process.ExtraFiles = append(process.ExtraFiles, os.NewFile(uintptr(fd), "preserved-fd-"+strconv.Itoa(fd)))
	}

	var report *launchReport
	if r.confine != nil {
		if report, err = r.attachLauncher(process); err != nil {
			return -1, err
		}
		defer report.Close()
	}

	// Signals are caught before the process exists so that no SIGCHLD is lost.
	var fwd *signalForwarder
	if !detach {
		fwd = startSignalForwarder(r.subreaper)
		defer fwd.stop()
	}
	io, err := setupStdio(process, r.container, config.Terminal, detach, r.ConsoleSocket)
	if err != nil {
		return -1, err
	}
	defer io.Close()
	if r.PidfdSocket != "" {
		closeConn, err := dialPidfdSocket(process, r.PidfdSocket)
		if err != nil {
			return -1, err
		}
		defer closeConn()
	}

	started := time.Now()
	switch {
	case r.action == actCreate:
		err = r.container.Start(process)
	case r.confine != nil && r.init:
		// Stop at the exec fifo to check the command and the policy's
		// paths inside the fully set-up container first.
		if err = r.container.Start(process); err != nil {
			break
		}
		if err = r.checkInContainer(process); err == nil {
			err = r.startEgress(process)
		}
		if err == nil {
			report.closeWriter()
			err = execInit(r.container, r.stateDir)
			if errors.Is(err, errInitExited) && !detach {
				// The container ran and exited (a failing startContainer
				// hook): its exit status is run's, as with runc.
				err = nil
			}
		}
		if err != nil {
			// The init holds our stdio pipes: it must go before they close.
			terminate(process)
		}
	default:
		err = r.container.Run(process)
	}
	if err != nil {
		return -1, err
	}
	if r.action == actCreate && r.confine != nil {
		err := r.checkInContainer(process)
		if err == nil {
			err = r.startEgress(process)
		}
		if err != nil {
			terminate(process)
			return -1, err
		}
	}
	if r.confine != nil && r.init {
		recordStartup(r.stateDir, r.began)
	}
	if report != nil && !r.init {
		r.recordExecLaunch(process, started)
		// An exec'd process reports over a pipe until its command runs.
		if err := report.wait(); err != nil {
			terminate(process)
			return -1, err
		}
	}
	if err := io.waitConsole(); err != nil {
		terminate(process)
		return -1, err
	}
	io.closePostStart()
	if r.PidFile != "" {
		if err := writePidFile(r.PidFile, process); err != nil {
			terminate(process)
			return -1, err
		}
	}
	if detach {
		r.waitReady(process, 0)
		return 0, nil
	}
	readyDone := make(chan struct{})
	go func() {
		// clawrun stays the service's main process.
		r.waitReady(process, os.Getpid())
		close(readyDone)
	}()
	status, err = fwd.forward(process, io)
	if err != nil {
		terminate(process)
	}
	<-readyDone // a READY=1 sent just before the process exited is passed on too
	if err != nil {
		return -1, err
	}
	r.destroyContainer()
	return status, nil
}

// waitReady passes the process's READY=1 on to clawrun's NOTIFY_SOCKET,
// with mainPID (0: the process's own pid), once the process says it.
// Like runc, a host socket that cannot be told is a warning.
func (r *runner) waitReady(process *libcontainer.Process, mainPID int) {
	if r.notify == nil {
		return
	}
	pid, err := process.Pid()
	if err == nil {
		if mainPID == 0 {
			mainPID = pid
		}
		err = r.notify.waitReady(pid, mainPID)
	}
	if err != nil {
		logrus.Warn(err)
	}
}

func (r *runner) destroyContainer() {
	if r.destroy {
		if err := destroy(r.container, r.stateDir, filterStopGrace); err != nil {
			logrus.Warn(err)
		}
	}
}

// startEgress starts the egress filter of an init under a plan with
// network policies, once its network namespace exists.
func (r *runner) startEgress(process *libcontainer.Process) error {
	if !r.init || r.confine == nil || r.confine.Egress == nil {
		return nil
	}
	pid, err := process.Pid()
	if err != nil {
		return err
	}
	return startEgress(r.confine.Egress, r.stateDir, r.container.ID(), pid)
}

func terminate(p *libcontainer.Process) {
	_ = p.Signal(unix.SIGKILL)
	_, _ = p.Wait()
}

// writePidFile writes the pid through a temporary file and a rename, so
// that a reader never sees a partial file.
func writePidFile(path string, process *libcontainer.Process) error {
	pid, err := process.Pid()
	if err != nil {
		return err
	}
	tmp := filepath.Join(filepath.Dir(path), "."+filepath.Base(path))
	f, err := os.OpenFile(tmp, os.O_RDWR|os.O_CREATE|os.O_EXCL|os.O_SYNC, 0o666)
	if err != nil {
		return err
	}
	_, err = f.WriteString(strconv.Itoa(pid))
	f.Close()
	if err != nil {
		os.Remove(tmp)
		return err
	}
	return os.Rename(tmp, path)
}

func dialPidfdSocket(process *libcontainer.Process, path string) (func(), error) {
	conn, err := net.Dial("unix", path)
	if err != nil {
		return nil, fmt.Errorf("pidfd socket %s: %w", path, err)
	}
	f, err := conn.(*net.UnixConn).File()
	if err != nil {
		conn.Close()
		return nil, err
	}
	process.PidfdSocket = f
	return func() { conn.Close(); f.Close() }, nil
}

// recordExecLaunch notes an exec'd launcher's pid, which the kernel's
// audit names for its Landlock denials (`clawrun audit`). Without it the
// process still runs; its denials are only not attributed.
func (r *runner) recordExecLaunch(process *libcontainer.Process, started time.Time) {
	pid, err := process.Pid()
	if err == nil {
		err = recordLaunch(r.stateDir, pid, started)
	}
	if err != nil {
		logrus.Warnf("clawrun audit will not attribute this process's file denials: %v", err)
	}
}
