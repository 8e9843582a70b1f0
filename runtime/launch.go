package runtime

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/opencontainers/runc/libcontainer"

	"github.com/clawrun/clawrun/landlock/launcher"
)

// The launcher reports what it enforced as JSON lines on a channel it keeps
// open, close-on-exec, across the execve of the command: the channel
// closing means the command runs; a last line with an error means it does
// not. The channel is a pipe when clawrun waits for the process (run,
// exec), and a FIFO in the state dir for a created container, which
// `start` reads. The final report is kept in the state dir for `state`.
const initReportFIFO = "clawrun-launch.fifo"

// launchReport is the read end of the launcher's channel.
type launchReport struct {
	reader *os.File // nil for a created container (start reads the FIFO)
	writer *os.File // the launcher's end, ours to close once it has it
}

func (l *launchReport) Close() {
	if l.reader != nil {
		l.reader.Close()
	}
	l.closeWriter()
}

func (l *launchReport) closeWriter() {
	if l.writer != nil {
		l.writer.Close()
		l.writer = nil
	}
}

// attachLauncher passes the launcher its spec and its report channel.
func (r *runner) attachLauncher(process *libcontainer.Process) (*launchReport, error) {
	rep := &launchReport{}
	if r.init && r.action == actCreate {
		fifo := filepath.Join(r.stateDir, initReportFIFO)
		if err := unix.Mkfifo(fifo, 0o600); err != nil {
			return nil, fmt.Errorf("launcher report: %w", err)
		}
		// Read-write: opening does not block, and the FIFO keeps what the
		// launcher writes until start reads it.
		f, err := os.OpenFile(fifo, os.O_RDWR, 0)
		if err != nil {
			return nil, err
		}
		rep.writer = f
	} else {
		pr, pw, err := os.Pipe()
		if err != nil {
			return nil, err
		}
		rep.reader, rep.writer = pr, pw
	}
	spec := r.confine.Launch
	spec.ReportFD = 3 + len(process.ExtraFiles)
	process.ExtraFiles = append(process.ExtraFiles, rep.writer)
	env, err := launcher.Encode(&spec)
	if err != nil {
		rep.Close()
		return nil, err
	}
	process.Env = append(process.Env, env)
	return rep, nil
}

// wait reads the launcher's report until the channel closes, keeps the
// final report in the state dir when it is the init's, and fails if the
// launcher could not enforce the policy or run the command.
func (l *launchReport) wait(stateDir string, init bool) error {
	l.closeWriter()
	return readReport(l.reader, stateDir, init)
}

func readReport(r io.Reader, stateDir string, init bool) error {
	done := make(chan struct{})
	var data []byte
	var err error
	go func() {
		data, err = io.ReadAll(r)
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
	lines := strings.Split(strings.TrimSpace(string(data)), "\n")
	last := lines[len(lines)-1]
	if last == "" {
		return errors.New("policy launcher exited without a report")
	}
	var rep launcher.Report
	if err := json.Unmarshal([]byte(last), &rep); err != nil {
		return fmt.Errorf("policy launcher report: %w", err)
	}
	if init {
		if err := os.WriteFile(filepath.Join(stateDir, initReportFile), []byte(last), 0o600); err != nil {
			return err
		}
	}
	if rep.Error != "" {
		return fmt.Errorf("policy: %s", rep.Error)
	}
	return nil
}

// readInitReport returns the init's final report, or nil while the
// container has not started.
func readInitReport(stateDir string) (*launcher.Report, error) {
	data, err := os.ReadFile(filepath.Join(stateDir, initReportFile))
	if err != nil || len(data) == 0 {
		return nil, err
	}
	var rep launcher.Report
	if err := json.Unmarshal(data, &rep); err != nil {
		return nil, err
	}
	return &rep, nil
}

// startReport opens a created container's FIFO for reading before start
// lets the init go.
func startReport(stateDir string) (*os.File, error) {
	f, err := os.OpenFile(filepath.Join(stateDir, initReportFIFO), os.O_RDONLY|unix.O_NONBLOCK, 0)
	if err != nil {
		return nil, err
	}
	// Blocking reads from here on: EOF comes when the launcher's end closes.
	if err := unix.SetNonblock(int(f.Fd()), false); err != nil {
		f.Close()
		return nil, err
	}
	return f, nil
}

// checkInContainer runs the create-time checks that need the container's
// view: the command must exist (as runc reports at create), and the policy
// paths are resolved as the launcher will and pinned (under
// hard_requirement, a path that would get no rule fails).
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
	if err := r.confine.pinPaths(root.fd); err != nil {
		return err
	}
	return r.confine.save(r.stateDir)
}
