// Package supervisor is the egress filter's supervisor (see package
// filter): the process that installs a namespace's rules and sockets and
// keeps a worker serving on them. It is a package of its own, importing
// nothing of the worker's (no proxy, resolver, TLS inspection or policy
// language), so that clawrun-egress, the program the runtime starts as
// every filter's supervisor, holds only this: each supervisor pages in a
// few MiB of program instead of the worker's.
//
// Also here is what the runtime and the worker share with it: the status
// file, the worker's reports, and how a filter is stopped.
package supervisor

import (
	"encoding/json"
	"fmt"
	"os"
	"time"

	"github.com/clawrun/clawrun/internal/jsonfile"
)

// Hidden argv[1] values of the filter's processes.
const (
	SupervisorArg = "__egress-supervisor"
	WorkerArg     = "__egress-worker"
)

// Programs installed next to clawrun: the supervisor (this package
// alone) and the worker it starts from its own directory.
const (
	SupervisorName = "clawrun-egress"
	WorkerName     = "clawrun-egress-worker"
)

// Config is what the supervisor reads of a filter's config (the
// runtime's filter.Config). The rest is the worker's, which reads the
// whole file, refusing any field it does not know, before it reports its
// rules loaded: a filter with a config it cannot honour does not start.
type Config struct {
	Netns      string `json:"netns"`
	StatusFile string `json:"status_file"`
	ProxyPort  uint16 `json:"proxy_port"`
	DNSPort    uint16 `json:"dns_port"`
	Limits     struct {
		MemoryBytes int64 `json:"memory_bytes,omitempty"`
	} `json:"limits,omitzero"`
}

// loadConfig reads the supervisor's part of a config file.
func loadConfig(path string) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var c Config
	if err := json.Unmarshal(data, &c); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return &c, nil
}

// DefaultMemoryBytes is the worker's memory limit unless the config sets
// one: a worker serves in about 10 MiB; the proxy's caps keep its buffers
// well below this limit, which is the backstop.
const DefaultMemoryBytes = 256 << 20

// MemoryLimit is the worker's memory limit for a configured one (zero:
// the default).
func MemoryLimit(configured int64) int64 {
	if configured > 0 {
		return configured
	}
	return DefaultMemoryBytes
}

// Status is what the supervisor reports in the config's status file.
type Status struct {
	State      State `json:"state"`
	Supervisor int   `json:"supervisor_pid"`
	Worker     int   `json:"worker_pid,omitempty"`
	Generation int64 `json:"generation"`
	Restarts   int   `json:"restarts"`
	// Error is why the filter is not running, in its state's terms.
	Error string `json:"error,omitempty"`
	// LastFailure is the filter's latest failure (a worker that died, a
	// generation it refused), kept after it recovered.
	LastFailure *Failure `json:"last_failure,omitempty"`
	// LogFailure is set while the decision log cannot be written: the
	// filter still decides, but what it decides goes unrecorded.
	LogFailure *Failure `json:"log_failure,omitempty"`
}

// State is where a filter is in its life, as its supervisor records it
// in the status file and the runtime reads it: one set of names for both
// sides.
type State string

const (
	StateStarting   State = "starting"   // the supervisor is setting up; no worker yet
	StateRunning    State = "running"    // a worker decides, with Status.Generation loaded
	StateRestarting State = "restarting" // the worker died; the rules stay and a new worker is coming
	StateFailed     State = "failed"     // the filter gave up: the rules stay, nothing gets out
	StateStopped    State = "stopped"    // stopped on request
)

// Failure is one failure of the filter, in the worker's own words where
// it had any.
type Failure struct {
	Time time.Time `json:"time"`
	// Generation is the rules generation that was refused (0: not a
	// refused reload).
	Generation int64  `json:"generation,omitempty"`
	Message    string `json:"message"`
}

// ReadStatus reads a status file.
func ReadStatus(path string) (*Status, error) {
	var s Status
	if err := jsonfile.Read(path, &s); err != nil {
		return nil, err
	}
	return &s, nil
}

func writeStatus(path string, s *Status) error { return jsonfile.Write(path, s, 0o600) }
