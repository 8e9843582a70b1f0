package runtime

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"time"

	"golang.org/x/sys/unix"

	"github.com/opencontainers/runc/libcontainer"
	"github.com/opencontainers/runc/libcontainer/exeseal"

	"github.com/clawrun/clawrun/internal/sibling"
	"github.com/clawrun/clawrun/landlock/launcher"
	"github.com/clawrun/clawrun/runtime/confinespec"
	"github.com/clawrun/clawrun/seccomp"
)

// The launcher reports what it enforced as JSON lines on a channel it keeps
// open, close-on-exec, across the execve of the command: the channel's
// last close means the command runs, and a last line with an error says
// why it does not. An exec'd process reports over a pipe that clawrun
// reads. The container's init reports into its record, a file in the state
// dir (initReportFile): the record outlives whoever started the container,
// so `state` says what the launcher did even when `start` was killed, and
// start and run learn of its last close through inotify. The container
// never gets the file: the launcher's descriptor closes on exec.

// reportTimeout bounds the wait for the launcher once the init may run it.
const reportTimeout = 10 * time.Second

// errInitExited is an init that closed its record without a report: it
// exited, or was killed, before the launcher ran. libcontainer's init
// prints its own errors (a failing startContainer hook) on the
// container's stderr, where runc's do too.
var errInitExited = errors.New("container init exited before its process started (the init's error, such as a failing startContainer hook, is on the container's stderr)")

// launchReport is clawrun's side of the launcher's channel.
type launchReport struct {
	reader *os.File // an exec'd process's pipe; nil for the init (its record)
	writer *os.File // the launcher's end, ours to close once it has it
	exe    *os.File // the launcher's sealed binary, ours to close likewise
}

func (l *launchReport) Close() {
	if l.reader != nil {
		l.reader.Close()
	}
	l.closeWriter()
}

// closeWriter closes our copies of what the process inherits.
func (l *launchReport) closeWriter() {
	for _, f := range []**os.File{&l.writer, &l.exe} {
		if *f != nil {
			(*f).Close()
			*f = nil
		}
	}
}

// attachLauncher passes the launcher its spec and its report channel.
func (r *runner) attachLauncher(process *libcontainer.Process) (*launchReport, error) {
	spec, err := launcherSpec(r.confine.Launch)
	if err != nil {
		return nil, err
	}
	rep, err := r.openReport()
	if err != nil {
		return nil, err
	}
	spec.ReportFD = 3 + len(process.ExtraFiles)
	process.ExtraFiles = append(process.ExtraFiles, rep.writer)
	if rep.exe, err = sealedLauncher(r.stateDir); err != nil {
		rep.Close()
		return nil, err
	}
	if rep.exe != nil {
		spec.ExeFD = 3 + len(process.ExtraFiles)
		process.ExtraFiles = append(process.ExtraFiles, rep.exe)
		process.Args = slices.Concat([]string{launcher.ExeAt(spec.ExeFD)}, process.Args[1:])
	}
	env, err := launcher.Encode(&spec)
	if err != nil {
		rep.Close()
		return nil, err
	}
	process.Env = append(process.Env, env)
	return rep, nil
}

// openReport opens the launcher's report channel: the init's record, or
// an exec'd process's pipe.
func (r *runner) openReport() (*launchReport, error) {
	if r.init {
		f, err := os.OpenFile(filepath.Join(r.stateDir, initReportFile), os.O_WRONLY|os.O_CREATE|os.O_TRUNC|os.O_APPEND, 0o600)
		if err != nil {
			return nil, fmt.Errorf("launcher report: %w", err)
		}
		return &launchReport{writer: f}, nil
	}
	pr, pw, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	return &launchReport{reader: pr, writer: pw}, nil
}

// sealedLauncher returns clawrun-launch (installed next to clawrun) for
// the process to run, as sealExecutable hands it over, or nil when it is
// not installed: clawrun's own binary is the launcher then.
func sealedLauncher(stateDir string) (*os.File, error) {
	path := launcherBinary()
	if path == "" {
		return nil, nil
	}
	exe, err := sealExecutable(path, stateDir)
	if err != nil {
		return nil, fmt.Errorf("policy launcher %s: %w", path, err)
	}
	return exe, nil
}

// sealExecutable returns the executable path as a file nobody can write:
// never the installed file as it is, so that the container cannot reach a
// host binary through /proc to replace it (CVE-2019-5736). A read-only
// view of it (readOnlyView), or where there is none, a sealed copy. The
// view's second layer is an empty directory of stateDir's own (never the
// state dir itself, which holds the container's CA key); a copy goes to
// stateDir on a kernel without memfds.
func sealExecutable(path, stateDir string) (*os.File, error) {
	empty := filepath.Join(stateDir, viewLayerDir)
	if err := os.Mkdir(empty, 0o700); err == nil || errors.Is(err, os.ErrExist) {
		if view, err := readOnlyView(path, empty); err == nil {
			return view, nil
		}
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, err
	}
	return exeseal.CloneBinary(f, st.Size(), launcher.HelperName, stateDir)
}

// viewLayerDir is the empty directory in the state dir under the
// launcher's read-only view.
const viewLayerDir = "launcher-view"

// launcherBinary is clawrun-launch in the directory of the running clawrun
// binary, "" if it is not there. Only that directory is searched, never
// $PATH: the launcher enforces the policy.
func launcherBinary() string {
	path, _ := sibling.Find(launcher.HelperName)
	return path
}

// launcherSpec is what the launcher of one process gets: the
// confinement's launch, its seccomp profile compiled (the launcher only
// installs the program).
func launcherSpec(l confinespec.Launch) (launcher.Spec, error) {
	spec := launcher.Spec{Layers: l.Layers, Strict: l.Strict, ReportFD: -1, ExeFD: -1}
	if l.Seccomp != nil {
		prog, err := seccomp.Compile(l.Seccomp)
		if err != nil {
			return spec, fmt.Errorf("policy: %w", err)
		}
		spec.Seccomp = prog
	}
	return spec, nil
}

// wait reads an exec'd process's report until its pipe closes, and fails
// if the launcher could not enforce the policy or run the command.
func (l *launchReport) wait() error {
	l.closeWriter()
	done := make(chan struct{})
	var data []byte
	var err error
	go func() {
		data, err = io.ReadAll(l.reader)
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(reportTimeout):
		return fmt.Errorf("policy launcher did not report within %v", reportTimeout)
	}
	if err != nil {
		return err
	}
	rep, err := lastReport(data)
	if err != nil {
		return err
	}
	if rep == nil {
		return errors.New("policy launcher exited without a report")
	}
	return reportFailure(rep)
}

// execInit lets a created confined init run (the launcher, then the
// command) and waits until the command runs or fails to. The caller's own
// copy of the record, if any, must be closed already.
func execInit(c *libcontainer.Container, stateDir string) error {
	closed, err := watchLastClose(filepath.Join(stateDir, initReportFile))
	if err != nil {
		return fmt.Errorf("launcher report: %w", err)
	}
	defer closed.Close()
	if err := c.Exec(); err != nil {
		return err
	}
	if err := closed.wait(reportTimeout); err != nil {
		return err
	}
	rep, err := readInitReport(stateDir)
	switch {
	case err != nil:
		return err
	case rep != nil:
		return reportFailure(rep)
	}
	if _, err := os.Stat(stateDir); errors.Is(err, os.ErrNotExist) {
		return libcontainer.ErrNotExist // deleted meanwhile
	}
	return errInitExited
}

// readInitReport returns the init's last report, or nil until the
// launcher has reported.
func readInitReport(stateDir string) (*launcher.Report, error) {
	data, err := os.ReadFile(filepath.Join(stateDir, initReportFile))
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	return lastReport(data)
}

// lastReport parses the last line of a report channel: the outcome. Nil
// for nothing reported.
func lastReport(data []byte) (*launcher.Report, error) {
	lines := bytes.Split(bytes.TrimSpace(data), []byte("\n"))
	last := lines[len(lines)-1]
	if len(last) == 0 {
		return nil, nil
	}
	var rep launcher.Report
	if err := json.Unmarshal(last, &rep); err != nil {
		return nil, fmt.Errorf("policy launcher report: %w", err)
	}
	return &rep, nil
}

// reportFailure is the error of a launcher that reported one.
func reportFailure(rep *launcher.Report) error {
	if rep.Error != "" {
		return fmt.Errorf("policy: %s", rep.Error)
	}
	return nil
}

// lastClose waits for the last close of a file opened for writing.
type lastClose struct{ fd int }

// watchLastClose watches path, which must exist, for its last close
// after writing (IN_CLOSE_WRITE comes when the last descriptor of the open
// file goes, the launcher's at its execve), or its removal.
func watchLastClose(path string) (*lastClose, error) {
	fd, err := unix.InotifyInit1(unix.IN_CLOEXEC | unix.IN_NONBLOCK)
	if err != nil {
		return nil, os.NewSyscallError("inotify_init1", err)
	}
	if _, err := unix.InotifyAddWatch(fd, path, unix.IN_CLOSE_WRITE|unix.IN_DELETE_SELF); err != nil {
		unix.Close(fd)
		return nil, &os.PathError{Op: "inotify_add_watch", Path: path, Err: err}
	}
	return &lastClose{fd: fd}, nil
}

func (l *lastClose) wait(timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		left := time.Until(deadline)
		if left <= 0 {
			return fmt.Errorf("policy launcher did not report within %v", timeout)
		}
		fds := []unix.PollFd{{Fd: int32(l.fd), Events: unix.POLLIN}}
		n, err := unix.Poll(fds, int(left.Milliseconds())+1)
		switch {
		case errors.Is(err, unix.EINTR):
		case err != nil:
			return os.NewSyscallError("poll", err)
		case n > 0:
			return nil // the only events watched are the ones awaited
		}
	}
}

func (l *lastClose) Close() { unix.Close(l.fd) }

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
