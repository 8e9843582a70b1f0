package runtime

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"github.com/opencontainers/runc/libcontainer"

	"github.com/clawrun/clawrun/landlock/launcher"
)

// launchReport is where the launcher's report arrives: a file in the state
// dir for a container's init (it runs after `create` has returned), a pipe
// for an exec'd process (read while clawrun waits).
type launchReport struct {
	pipe   *os.File // read end (exec only)
	writer *os.File // the launcher's end
}

func (l *launchReport) Close() {
	if l.pipe != nil {
		l.pipe.Close()
	}
	if l.writer != nil {
		l.writer.Close()
	}
}

// attachLauncher passes the launcher its spec and its report channel.
func (r *runner) attachLauncher(process *libcontainer.Process) (*launchReport, error) {
	var w *os.File
	rep := &launchReport{}
	if r.init {
		f, err := os.OpenFile(filepath.Join(r.stateDir, initReportFile), os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
		if err != nil {
			return nil, err
		}
		w = f
	} else {
		pr, pw, err := os.Pipe()
		if err != nil {
			return nil, err
		}
		rep.pipe, w = pr, pw
	}
	spec := r.confine.Launch
	spec.ReportFD = 3 + len(process.ExtraFiles)
	process.ExtraFiles = append(process.ExtraFiles, w)
	env, err := launcher.Encode(&spec)
	if err != nil {
		w.Close()
		rep.Close()
		return nil, err
	}
	process.Env = append(process.Env, env)
	rep.writer = w // closed once the process holds it (see waitExec)
	return rep, nil
}

// waitExec reads an exec'd process's report; it fails if the launcher
// could not enforce the policy (the process then exits by itself).
func (l *launchReport) waitExec() error {
	l.writer.Close()
	done := make(chan struct{})
	var data []byte
	var err error
	go func() {
		data, err = io.ReadAll(l.pipe)
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		return errors.New("policy launcher did not report within 10s")
	}
	if err != nil {
		return err
	}
	return reportError(data)
}

func reportError(data []byte) error {
	if len(data) == 0 {
		return errors.New("policy launcher exited without a report")
	}
	var rep launcher.Report
	if err := json.Unmarshal(data, &rep); err != nil {
		return fmt.Errorf("policy launcher report: %w", err)
	}
	if rep.Error != "" {
		return fmt.Errorf("policy: %s", rep.Error)
	}
	return nil
}

// readInitReport returns the init's report, or nil while the launcher has
// not run yet.
func readInitReport(stateDir string) (*launcher.Report, error) {
	data, err := os.ReadFile(filepath.Join(stateDir, initReportFile))
	if err != nil || len(data) == 0 {
		return nil, err
	}
	var rep launcher.Report
	if err := json.Unmarshal(data, &rep); err != nil {
		return nil, nil // still being written
	}
	return &rep, nil
}

// waitInitReport waits (briefly: the launcher needs a few ms) for the
// init's report after start, so that `state` right after `start` tells
// the truth and a launcher failure surfaces as a start error.
func waitInitReport(c *libcontainer.Container, stateDir string) error {
	deadline := time.Now().Add(5 * time.Second)
	for delay := 200 * time.Microsecond; ; delay = min(delay*2, 20*time.Millisecond) {
		rep, err := readInitReport(stateDir)
		if err != nil && !errors.Is(err, os.ErrNotExist) {
			return err
		}
		if rep != nil {
			if rep.Error != "" {
				return fmt.Errorf("policy: %s", rep.Error)
			}
			return nil
		}
		if st, err := c.Status(); err == nil && st == libcontainer.Stopped {
			return errors.New("policy launcher exited without a report")
		}
		if time.Now().After(deadline) {
			return errors.New("policy launcher did not report within 5s")
		}
		time.Sleep(delay)
	}
}

// checkInContainer runs the create-time checks that need the container's
// view: the command must exist (as runc reports at create), and under
// hard_requirement every policy path must exist.
func (r *runner) checkInContainer(process *libcontainer.Process) error {
	pid, err := process.Pid()
	if err != nil {
		return err
	}
	root, err := openContainerRoot(pid)
	if err != nil {
		return err
	}
	defer root.Close()
	cmd := r.confine.Command
	if err := root.lookPath(cmd[0], process.Env, process.Cwd); err != nil {
		return err
	}
	if !r.confine.Launch.Strict {
		return nil
	}
	for _, l := range r.confine.Launch.Layers {
		for _, p := range append(append([]string(nil), l.Rules.ReadOnly...), l.Rules.ReadWrite...) {
			if _, err := root.stat(p); err != nil {
				return fmt.Errorf("policy %s: filesystem_policy path %s: %v (landlock.compatibility is hard_requirement)", l.Source, p, err)
			}
		}
	}
	return nil
}
