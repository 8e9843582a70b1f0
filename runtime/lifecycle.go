package runtime

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/opencontainers/runc/libcontainer"
	"github.com/sirupsen/logrus"
	"golang.org/x/sys/unix"
)

// Start lets a created container's init exec the user's process.
func (r *Runtime) Start(id string) (err error) {
	defer classify(&err)
	c, err := r.load(id)
	if err != nil {
		return err
	}
	status, err := c.Status()
	if err != nil {
		return err
	}
	switch status {
	case libcontainer.Created:
		return r.startCreated(c, filepath.Join(r.Root, id))
	case libcontainer.Stopped:
		return failedPrecondition(errors.New("cannot start a container that has stopped"))
	case libcontainer.Running:
		return failedPrecondition(errors.New("cannot start an already running container"))
	default:
		return failedPrecondition(fmt.Errorf("cannot start a container in the %s state", status))
	}
}

// startCreated lets a created container's init exec the process: through
// the policy launcher, whose outcome it waits for, when the container has a
// policy. With NOTIFY_SOCKET, it then waits for the process's READY=1, as
// runc's start does; a host socket that cannot be told is a warning.
func (r *Runtime) startCreated(c *libcontainer.Container, stateDir string) error {
	conf, err := loadConfinement(stateDir)
	if err != nil {
		return err
	}
	notify := newNotifySocket(r.NotifySocket, stateDir)
	if notify != nil {
		if err := notify.listen(); err != nil {
			return err
		}
		defer notify.Close()
	}
	if err := execCreated(c, stateDir, conf); err != nil || notify == nil {
		return err
	}
	st, err := c.State()
	if err != nil {
		return err
	}
	if err := notify.waitReady(st.InitProcessPid, st.InitProcessPid); err != nil {
		logrus.Warn(err)
	}
	return nil
}

// execCreated lets a created init exec the process: directly without a
// policy; with one, through the launcher, once its egress filter is known
// to run.
func execCreated(c *libcontainer.Container, stateDir string, conf *confinement) error {
	if conf == nil {
		return c.Exec()
	}
	if err := checkEgressRunning(stateDir, conf); err != nil {
		return failedPrecondition(err)
	}
	return execInit(c, stateDir)
}

// Kill sends the signal named rawSig to the container's init. Signal 0
// only checks that the init runs (a liveness probe). With all, a
// container that is no longer running is not an error (runc's obsolete
// -a keeps that meaning). The container is looked up before the signal
// is parsed, as runc does, so that swapped arguments ("kill KILL ID") say
// that the container does not exist.
func (r *Runtime) Kill(id, rawSig string, all bool) (err error) {
	defer classify(&err)
	c, err := r.load(id)
	if err != nil {
		return err
	}
	sig, err := ParseSignal(rawSig)
	if err != nil {
		return err
	}
	err = c.Signal(sig)
	if all && errors.Is(err, libcontainer.ErrNotRunning) {
		return nil
	}
	return err
}

// ParseSignal accepts "KILL", "SIGKILL", "kill", "9", or "0" (no
// signal: kill(2)'s existence check).
func ParseSignal(raw string) (unix.Signal, error) {
	if n, err := strconv.Atoi(raw); err == nil {
		if n < 0 || n > 64 {
			return -1, invalidArgument(fmt.Errorf("invalid signal number %d", n))
		}
		return unix.Signal(n), nil
	}
	name := strings.ToUpper(raw)
	if !strings.HasPrefix(name, "SIG") {
		name = "SIG" + name
	}
	sig := unix.SignalNum(name)
	if sig == 0 {
		return -1, invalidArgument(fmt.Errorf("unknown signal %q", raw))
	}
	return sig, nil
}

// Delete removes a stopped (or, with force, any) container and everything
// it holds. A created container is killed first, as runc does.
func (r *Runtime) Delete(id string, force bool) (err error) {
	defer classify(&err)
	if id == "" {
		return ErrEmptyID
	}
	stateDir := filepath.Join(r.Root, id)
	grace := filterStopGrace
	if force {
		grace = filterStopGraceForced
	}
	c, err := libcontainer.Load(r.Root, id)
	if errors.Is(err, libcontainer.ErrNotExist) {
		// A state dir without a readable state is debris of a crash.
		afterEgress, stopErr := stopEgress(stateDir, grace)
		_ = os.RemoveAll(stateDir)
		if err := errors.Join(stopErr, afterEgress()); err != nil {
			return err
		}
		if force {
			return nil
		}
		return err
	}
	if err != nil {
		return err
	}
	if force {
		return killAndDestroy(c, stateDir, grace)
	}
	status, err := c.Status()
	if err != nil {
		return err
	}
	switch status {
	case libcontainer.Stopped:
		return destroy(c, stateDir, grace)
	case libcontainer.Created:
		return killAndDestroy(c, stateDir, grace)
	default:
		return failedPrecondition(fmt.Errorf("cannot delete container %s that is not stopped: %s (use --force)", id, status))
	}
}

// killAndDestroy SIGKILLs the init, waits up to 10 s for it to go away,
// then removes the container's cgroup and state (see destroy).
func killAndDestroy(c *libcontainer.Container, stateDir string, filterGrace time.Duration) error {
	_ = c.Signal(unix.SIGKILL)
	for range 1000 {
		if err := c.Signal(unix.Signal(0)); err != nil {
			return destroy(c, stateDir, filterGrace)
		}
		time.Sleep(10 * time.Millisecond)
	}
	return errors.New("container init still running after SIGKILL")
}

// Pause freezes every process of the container.
func (r *Runtime) Pause(id string) (err error) {
	defer classify(&err)
	c, err := r.load(id)
	if err != nil {
		return err
	}
	return c.Pause()
}

// Resume thaws a paused container.
func (r *Runtime) Resume(id string) (err error) {
	defer classify(&err)
	c, err := r.load(id)
	if err != nil {
		return err
	}
	return c.Resume()
}

// Processes lists the host pids of the container's processes.
func (r *Runtime) Processes(id string) (_ []int, err error) {
	defer classify(&err)
	c, err := r.load(id)
	if err != nil {
		return nil, err
	}
	return c.Processes()
}

// destroy stops what clawrun runs beside the container (its egress
// filter, killed if it does not stop within filterGrace; its rules keep
// the namespace closed meanwhile), then removes the container's processes,
// cgroups and state, then the rules nobody needs any more.
func destroy(c *libcontainer.Container, stateDir string, filterGrace time.Duration) error {
	afterEgress, stopErr := stopEgress(stateDir, filterGrace)
	if err := c.Destroy(); err != nil {
		return err
	}
	return errors.Join(stopErr, afterEgress())
}
