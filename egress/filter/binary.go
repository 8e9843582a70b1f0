package filter

import (
	"time"

	"github.com/clawrun/clawrun/egress/filter/supervisor"
	"github.com/clawrun/clawrun/internal/sibling"
)

// HelperName is the filter's own program, installed next to clawrun with
// the worker's (supervisor.WorkerName). Each holds only its part of the
// filter (no libcontainer, no policy language, no CLI; the supervisor not
// even the proxy), so each of a filter's two processes pages in a few MiB
// of program instead of clawrun's whole binary: that is most of a
// filter's memory.
const HelperName = supervisor.SupervisorName

// Binary is the executable to start a filter's supervisor from:
// HelperName in the directory of the running clawrun binary when it is
// installed there with the worker's program, else clawrun's own binary
// (which runs the same code). Only that directory is searched, never
// $PATH: the filter runs as root.
func Binary() string {
	sup, ok := sibling.Find(HelperName)
	if _, workerOK := sibling.Find(supervisor.WorkerName); ok && workerOK {
		return sup
	}
	return "/proc/self/exe"
}

// The supervisor's side of the runtime's API, under the names the
// runtime has always used.

const (
	SupervisorArg = supervisor.SupervisorArg
	WorkerArg     = supervisor.WorkerArg
	ReadyFD       = supervisor.ReadyFD
	RuntimeFD     = supervisor.RuntimeFD
	StartMsg      = supervisor.StartMsg
	CommitMsg     = supervisor.CommitMsg
)

type (
	Status  = supervisor.Status
	State   = supervisor.State
	Failure = supervisor.Failure
)

const (
	StateStarting   = supervisor.StateStarting
	StateRunning    = supervisor.StateRunning
	StateRestarting = supervisor.StateRestarting
	StateFailed     = supervisor.StateFailed
	StateStopped    = supervisor.StateStopped
)

// ReadStatus reads a StatusFile.
func ReadStatus(path string) (*Status, error) { return supervisor.ReadStatus(path) }

// Stop: see supervisor.Stop.
func Stop(pid, workerPid int, configPath string, grace time.Duration) (killed bool, err error) {
	return supervisor.Stop(pid, workerPid, configPath, grace)
}

// Running: see supervisor.Running.
func Running(pid int, role, configPath string) bool { return supervisor.Running(pid, role, configPath) }

// IsSupervisor: see supervisor.IsSupervisor.
func IsSupervisor(pid int) bool { return supervisor.IsSupervisor(pid) }

// SupervisorMain runs the supervisor from clawrun's own binary, whose
// workers then run from it too; it never returns.
func SupervisorMain(configPath string) { supervisor.Main(configPath, "/proc/self/exe") }
