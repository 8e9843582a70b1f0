// Package launcher is the part of clawrun that runs INSIDE the container.
//
// libcontainer has no hook between "rootfs, user and capabilities are set
// up" and "execve the user's command", which is exactly where Landlock must
// be applied (it forbids mounts once enforced, and its paths are the ones
// the container sees). So clawrun rewrites the container's command to run
// the launcher first: the launcher enforces the policy's Landlock layers
// and the seccomp filter the runtime compiled on its only running thread,
// reports what the kernel really accepted, and execve's the real command.
//
// The launcher is clawrun-launch (HelperName), a small binary of this
// package alone, installed next to clawrun. The runtime never lets the
// container reach it by a path: it passes a sealed memfd copy (which
// nobody can write) as an inherited descriptor, the init execs it through
// /proc/self/fd, and the launcher closes it before the command runs. When
// clawrun-launch is not installed, clawrun's own binary is the launcher
// (/proc/self/exe, libcontainer's sealed copy of clawrun).
//
// Everything the launcher needs arrives in one environment variable, which
// it removes before exec; nothing of it reaches the agent.
package launcher

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/clawrun/clawrun/landlock"
	"github.com/clawrun/clawrun/seccomp/bpf"
)

const (
	// Arg is argv[1] of the launcher: clawrun's main hands over to Main.
	Arg = "__clawrun_launch"
	// EnvVar carries the JSON Spec.
	EnvVar = "_CLAWRUN_LAUNCH"
	// Exe is how the launcher is reached from inside the container when
	// it is clawrun's own binary.
	Exe = "/proc/self/exe"
	// HelperName is the launcher's own binary, installed next to clawrun.
	HelperName = "clawrun-launch"
)

// Spec is what the runtime asks the launcher to enforce.
type Spec struct {
	// Layers of an exec'd process carry the files their paths were at
	// create (landlock.Layer.Pinned).
	Layers []Layer `json:"layers"`
	// Strict (hard_requirement): any gap fails the launch.
	Strict bool `json:"strict"`
	// Seccomp is a filter stacked on the spec's own, compiled by the
	// runtime (see seccomp/bpf); nil for none.
	Seccomp []byte `json:"seccomp_bpf,omitempty"`
	// ReportFD receives the Report as JSON; -1 for none.
	ReportFD int `json:"report_fd"`
	// ExeFD is the launcher's own executable (ExeAt), which it closes
	// first; -1 when it runs as Exe.
	ExeFD int `json:"exe_fd"`
}

// Layer is one Landlock ruleset and the policy it came from.
type Layer struct {
	Source string         `json:"source"`
	Rules  landlock.Layer `json:"rules"`
}

// Status is how much of a container's Landlock policy is in force: what
// the launcher reports (enforced, partial, off) and what the runtime says
// of a container without a report (pending, failed, none). One set of
// names for both sides of the launcher's report.
type Status string

const (
	// StatusEnforced: every rule in place (paths that do not exist, and
	// symlinks whose targets other rules already grant, are listed but
	// weaken nothing).
	StatusEnforced Status = "enforced"
	// StatusPartial: best effort left out a kernel feature or an existing
	// path (a symlink, a path that is no longer the file it was at create).
	StatusPartial Status = "partial"
	// StatusOff: no Landlock on this kernel.
	StatusOff Status = "off"
	// StatusPending: created, not started yet (no report).
	StatusPending Status = "pending"
	// StatusFailed: the launcher reported an error; the process did not run.
	StatusFailed Status = "failed"
	// StatusNone: the policy has no filesystem rules.
	StatusNone Status = "none"
)

// Report is what was really enforced, as the kernel answered.
type Report struct {
	// Status is StatusEnforced, StatusPartial or StatusOff.
	Status  Status        `json:"status"`
	ABI     int           `json:"abi"`
	Layers  []LayerReport `json:"layers,omitempty"`
	Seccomp bool          `json:"seccomp_loaded"`
	Error   string        `json:"error,omitempty"`
}

// LayerReport is one layer's outcome.
type LayerReport struct {
	Source string `json:"source"`
	landlock.Result
}

// Command returns the args that make the container run the launcher
// before args.
func Command(args []string) []string {
	return append([]string{Exe, Arg, "--"}, args...)
}

// ExeAt is the path the init execs the launcher by when the launcher is
// the descriptor fd it inherits.
func ExeAt(fd int) string {
	return "/proc/self/fd/" + strconv.Itoa(fd)
}

// Encode returns the environment entry carrying spec.
func Encode(spec *Spec) (string, error) {
	data, err := json.Marshal(spec)
	if err != nil {
		return "", err
	}
	return EnvVar + "=" + string(data), nil
}

// Main runs the launcher and never returns. clawrun calls it from an
// init(), before the init work of the packages it links.
func Main() {
	// Landlock and seccomp are applied to this thread, and execve happens
	// from it: after execve it is the process's only thread.
	runtime.LockOSThread()
	err := launch()
	fmt.Fprintf(os.Stderr, "clawrun: %v\n", err)
	// The shell's convention: 127 not found, 126 found but not runnable.
	if errors.Is(err, exec.ErrNotFound) || errors.Is(err, os.ErrNotExist) {
		os.Exit(127)
	}
	os.Exit(126)
}

func launch() error {
	if len(os.Args) < 4 || os.Args[2] != "--" {
		return errors.New("launcher: usage: " + Arg + " -- COMMAND [ARG...]")
	}
	args := os.Args[3:]
	spec, err := decodeSpec(os.Getenv(EnvVar))
	if err != nil {
		return err
	}
	env := cleanEnv(os.Environ())

	report := Report{}
	fail := func(err error) error {
		report.Error = err.Error()
		writeReport(spec.ReportFD, &report)
		return err
	}
	if spec.ExeFD >= 0 {
		// The agent must not inherit the launcher's binary.
		if err := unix.Close(spec.ExeFD); err != nil {
			return fail(fmt.Errorf("launcher: closing its executable: %w", err))
		}
	}
	// Resolve the command while nothing is restricted yet; running it
	// still needs the policy's EXECUTE right.
	path, err := lookPath(args[0], env)
	if err != nil {
		return fail(err)
	}
	if err := unix.Prctl(unix.PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0); err != nil {
		return fail(fmt.Errorf("no_new_privs: %w", err))
	}
	report.ABI = landlock.ABI()
	report.Status = StatusEnforced
	if report.ABI == 0 && len(spec.Layers) > 0 {
		report.Status = StatusOff
	}
	for _, l := range spec.Layers {
		res, err := landlock.Restrict(l.Rules, spec.Strict)
		report.Layers = append(report.Layers, LayerReport{Source: l.Source, Result: res})
		if err != nil {
			return fail(fmt.Errorf("landlock (%s): %w", l.Source, err))
		}
		if res.Degraded() && report.Status == StatusEnforced {
			report.Status = StatusPartial
		}
	}
	if spec.Seccomp != nil {
		if err := bpf.Install(spec.Seccomp); err != nil {
			return fail(fmt.Errorf("seccomp: %w", err))
		}
		report.Seccomp = true
	}
	// The report stays open across the execve, close-on-exec: the runtime
	// reads until it closes, so a command the policy will not let run
	// (Landlock refuses EXECUTE only at execve) is reported as a failure
	// rather than as a started process.
	writeReportLine(spec.ReportFD, &report)
	if spec.ReportFD >= 0 {
		unix.CloseOnExec(spec.ReportFD)
	}
	err = syscall.Exec(path, args, env)
	err = &exec.Error{Name: args[0], Err: err}
	report.Error = err.Error()
	writeReport(spec.ReportFD, &report)
	return err
}

// decodeSpec reads the runtime's spec. A field this launcher does not know
// fails the launch: a launcher older than its runtime must not leave out a
// part of the policy.
func decodeSpec(data string) (*Spec, error) {
	dec := json.NewDecoder(strings.NewReader(data))
	dec.DisallowUnknownFields()
	var spec Spec
	if err := dec.Decode(&spec); err != nil {
		return nil, fmt.Errorf("launcher: invalid %s: %w", EnvVar, err)
	}
	return &spec, nil
}

// cleanEnv drops the launcher's own variables and libcontainer's, which
// must not reach the agent.
func cleanEnv(env []string) []string {
	out := env[:0]
	for _, kv := range env {
		if strings.HasPrefix(kv, EnvVar+"=") || strings.HasPrefix(kv, "_LIBCONTAINER_") {
			continue
		}
		out = append(out, kv)
	}
	return out
}

// lookPath resolves name against the PATH of the container's process, as
// libcontainer does for a process without a launcher.
func lookPath(name string, env []string) (string, error) {
	if strings.Contains(name, "/") {
		if err := executable(name); err != nil {
			return "", &exec.Error{Name: name, Err: err}
		}
		return name, nil
	}
	pathVar := ""
	for _, kv := range env {
		if v, ok := strings.CutPrefix(kv, "PATH="); ok {
			pathVar = v
		}
	}
	for _, dir := range filepath.SplitList(pathVar) {
		if dir == "" {
			dir = "."
		}
		p := filepath.Join(dir, name)
		if executable(p) == nil {
			return p, nil
		}
	}
	return "", &exec.Error{Name: name, Err: exec.ErrNotFound}
}

func executable(path string) error {
	st, err := os.Stat(path)
	if err != nil {
		return err
	}
	if st.IsDir() || st.Mode()&0o111 == 0 {
		return os.ErrPermission
	}
	return nil
}

// writeReportLine writes r as one JSON line; the last line is the outcome.
func writeReportLine(fd int, r *Report) {
	if fd < 0 {
		return
	}
	data, err := json.Marshal(r)
	if err != nil {
		return
	}
	_, _ = unix.Write(fd, append(data, '\n'))
}

// writeReport writes the final line and closes the channel.
func writeReport(fd int, r *Report) {
	writeReportLine(fd, r)
	if fd >= 0 {
		_ = unix.Close(fd)
	}
}
