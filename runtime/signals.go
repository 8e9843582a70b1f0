package runtime

import (
	"os"
	"os/signal"

	"github.com/opencontainers/runc/libcontainer"
	"github.com/opencontainers/runc/libcontainer/system"
	"github.com/opencontainers/runc/libcontainer/utils"
	"github.com/sirupsen/logrus"
	"golang.org/x/sys/unix"
)

// signalForwarder relays the signals clawrun receives to a container
// process and reaps children until that process exits.
type signalForwarder struct {
	signals chan os.Signal
	ready   chan struct{} // closed once every signal is being caught
}

// startSignalForwarder must run before the process starts, so that no
// SIGCHLD is lost. With subreaper, orphans inside the container that get
// reparented to clawrun are reaped here too.
func startSignalForwarder(subreaper bool) *signalForwarder {
	if subreaper {
		if err := system.SetSubreaper(1); err != nil {
			logrus.Warn(err)
		}
	}
	f := &signalForwarder{signals: make(chan os.Signal, 2048), ready: make(chan struct{})}
	// SIGCHLD must be caught before the process starts; installing the
	// handlers for the ~60 other signals is slow, so it overlaps with the
	// container's start.
	signal.Notify(f.signals, unix.SIGCHLD)
	go func() {
		signal.Notify(f.signals)
		close(f.ready)
	}()
	return f
}

// forward returns the exit status of process once it exits.
func (f *signalForwarder) forward(process *libcontainer.Process, io *stdio) (int, error) {
	pid, err := process.Pid()
	if err != nil {
		return -1, err
	}
	<-f.ready
	_ = io.resize()
	for s := range f.signals {
		switch s {
		case unix.SIGWINCH:
			_ = io.resize()
		case unix.SIGCHLD:
			for _, e := range reap() {
				if e.pid == pid {
					_, _ = process.Wait()
					return e.status, nil
				}
			}
		case unix.SIGURG:
			// The Go runtime's preemption signal: not the user's.
		default:
			if err := process.Signal(s); err != nil {
				logrus.Debugf("forwarding %v: %v", s, err)
			}
		}
	}
	return -1, nil
}

func (f *signalForwarder) stop() { signal.Stop(f.signals) }

type exited struct{ pid, status int }

// reap collects every child that has exited.
func reap() []exited {
	var out []exited
	for {
		var ws unix.WaitStatus
		pid, err := unix.Wait4(-1, &ws, unix.WNOHANG, nil)
		if err != nil || pid <= 0 {
			return out
		}
		out = append(out, exited{pid: pid, status: utils.ExitStatus(ws)})
	}
}
