// Package filter runs clawrun's egress filter for one network namespace,
// as two processes started from clawrun-egress (or clawrun's own binary
// when the helper is not installed, see Binary), detached from the runtime
// and outside the container's cgroup:
//
//   - the supervisor attaches to the namespace, installs the routes and
//     nftables rules, creates the listening sockets and keeps them for the
//     namespace's whole life; it restarts a crashed worker with the same
//     sockets, so nothing inside can squat the ports meanwhile, and while
//     no worker runs, connections are not accepted: traffic fails closed;
//   - the worker serves the policy resolver and the transparent proxy on
//     those sockets and reloads the rules on SIGHUP.
//
// The runtime starts the supervisor at create, waits for it to report
// ready, and stops it (which removes the rules) when the container goes.
package filter

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
)

// Hidden argv[1] values of clawrun's binary, and clawrun-egress's.
const (
	SupervisorArg = "__egress-supervisor"
	WorkerArg     = "__egress-worker"
)

// Config is one filter instance, written as JSON by the runtime.
type Config struct {
	// Netns is the namespace to filter, e.g. /proc/PID/ns/net, and NsPid a
	// process in it (to find which executable opened a connection).
	Netns string `json:"netns"`
	NsPid int    `json:"ns_pid"`
	// Container names the container in the decision log.
	Container string `json:"container"`
	// RulesFile holds the current egress.Rules (JSON); SIGHUP reloads it.
	RulesFile string `json:"rules_file"`
	// LogFile receives the decision log (JSON lines, rotated).
	LogFile     string `json:"log_file"`
	LogMaxBytes int64  `json:"log_max_bytes"`
	LogKeep     int    `json:"log_keep"`
	// StatusFile is rewritten by the supervisor: pids, generation, state.
	StatusFile string `json:"status_file"`
	// Upstream resolvers ("ip:port") and address ranges upstream
	// connections may reach although private.
	Upstream       []string `json:"upstream"`
	AllowedRanges  []string `json:"allowed_ranges,omitempty"`
	SyntheticRange string   `json:"synthetic_range"`
	ProxyPort      uint16   `json:"proxy_port"`
	DNSPort        uint16   `json:"dns_port"`
}

// Status is what the supervisor reports in StatusFile.
type Status struct {
	State      string `json:"state"` // starting, running, restarting, failed, stopped
	Supervisor int    `json:"supervisor_pid"`
	Worker     int    `json:"worker_pid,omitempty"`
	Generation int64  `json:"generation"`
	Restarts   int    `json:"restarts"`
	Error      string `json:"error,omitempty"`
}

// LoadConfig reads a Config file.
func LoadConfig(path string) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	// Unknown fields are an error: a helper binary older than the clawrun
	// that wrote the file must not run with half of its settings.
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	var c Config
	if err := dec.Decode(&c); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return &c, nil
}

// ReadStatus reads a StatusFile.
func ReadStatus(path string) (*Status, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var s Status
	if err := json.Unmarshal(data, &s); err != nil {
		return nil, err
	}
	return &s, nil
}

func writeJSONAtomic(path string, v any) error {
	data, err := json.Marshal(v)
	if err != nil {
		return err
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, data, 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}
