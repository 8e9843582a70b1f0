// Package filter runs clawrun's egress filter for one network namespace,
// as two processes started from clawrun-egress and clawrun-egress-worker
// (or clawrun's own binary when they are not installed, see Binary),
// detached from the runtime and outside the container's cgroup:
//
//   - the supervisor (package supervisor) attaches to the namespace,
//     installs the routes and nftables rules, creates the listening
//     sockets and keeps them for the
//     namespace's whole life; it restarts a crashed worker with the same
//     sockets, so nothing inside can squat the ports meanwhile, and while
//     no worker runs, connections are not accepted: traffic fails closed;
//   - the worker serves the policy resolver and the transparent proxy on
//     those sockets, in a memory cgroup of its own (see supervisor/cgroup.go), and
//     loads a proposed generation of rules on SIGHUP (see reload.go). It
//     reports what it loaded or refused, and why it exits, on its stderr,
//     which the supervisor reads into the Status: the Status says what is
//     enforced, and why the filter failed in the worker's own words.
//
// The runtime starts the supervisor at create, waits for it to report
// ready, and stops it (which removes the rules) when the container goes.
package filter

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"

	"github.com/clawrun/clawrun/egress/credentials"
	"github.com/clawrun/clawrun/egress/filter/supervisor"
	"github.com/clawrun/clawrun/egress/inference"
	"github.com/clawrun/clawrun/egress/proxy"
	"github.com/clawrun/clawrun/internal/jsonfile"
)

// Config is one filter instance, written as JSON by the runtime.
type Config struct {
	// Netns is the namespace to filter, e.g. /proc/PID/ns/net, and NsPid
	// the process it was taken from.
	Netns string `json:"netns"`
	NsPid int    `json:"ns_pid"`
	// Container names the container in the decision log.
	Container string `json:"container"`
	// RulesFile holds the rules.Rules (JSON) in force; SIGHUP loads the
	// proposal next to it (ProposalFile).
	RulesFile string `json:"rules_file"`
	// LogFile receives the decision log (JSON lines, rotated).
	LogFile     string `json:"log_file"`
	LogMaxBytes int64  `json:"log_max_bytes"`
	LogKeep     int    `json:"log_keep"`
	// LogFormat is the decision log's format (decisionlog.Format; "":
	// the default).
	LogFormat string `json:"log_format,omitempty"`
	// StatusFile is rewritten by the supervisor: pids, the generation the
	// worker loaded, state, failures.
	StatusFile string `json:"status_file"`
	// StatsFile is rewritten by the worker every second: its counts
	// (Stats); empty: none are written.
	StatsFile string `json:"stats_file,omitempty"`
	// Upstream resolvers ("ip:port") and address ranges upstream
	// connections may reach although private.
	Upstream       []string `json:"upstream"`
	AllowedRanges  []string `json:"allowed_ranges,omitempty"`
	SyntheticRange string   `json:"synthetic_range"`
	ProxyPort      uint16   `json:"proxy_port"`
	DNSPort        uint16   `json:"dns_port"`
	// Limits bound the filter's memory and its connections; zero fields
	// take the defaults.
	Limits Limits `json:"limits,omitzero"`
	// CACert and CAKey are the container's CA (its certificate, PEM, and
	// the key file inspect.CA.WriteKeyFile wrote), with which the filter
	// inspects the TLS of inspected endpoints; empty when the container
	// has none (rules with an inspected endpoint are then refused).
	CACert string `json:"ca_cert,omitempty"`
	CAKey  string `json:"ca_key,omitempty"`
	// UpstreamCAFile holds the CAs (PEM) that inspected upstreams'
	// certificates must verify against; empty: the host's system roots.
	UpstreamCAFile string `json:"upstream_ca_file,omitempty"`
	// Credentials name the secrets the filter injects into inspected
	// requests and where it reads them (a root-only file, or its own
	// environment variable CredentialEnv(Env), which the runtime sets):
	// never the secrets themselves.
	Credentials []credentials.Spec `json:"credentials,omitempty"`
	// Inference routes inference.local to the configured model backend
	// (egress.inference); nil: the name does not resolve.
	Inference *inference.Route `json:"inference,omitempty"`
}

// CredentialEnv is the filter's environment variable that carries the
// value of the runtime's variable name, for a credential of source env.
func CredentialEnv(name string) string { return "_CLAWRUN_CREDENTIAL_" + name }

// loadCredentials reads the values of cfg's credentials.
func loadCredentials(cfg *Config) (*credentials.Set, error) {
	return credentials.Load(cfg.Credentials, func(name string) (string, bool) {
		return os.LookupEnv(CredentialEnv(name))
	})
}

// Limits bound what a container's traffic can cost its filter.
type Limits struct {
	// MemoryBytes is the worker's hard memory limit (a memory cgroup of
	// its own; supervisor.DefaultMemoryBytes when zero); its Go heap is
	// kept under 3/4 of it.
	MemoryBytes int64 `json:"memory_bytes,omitempty"`
	// Conns, Pending and HandshakeBytes: see proxy.ConnLimits (its
	// defaults when zero).
	Conns          int `json:"conns,omitempty"`
	Pending        int `json:"pending,omitempty"`
	HandshakeBytes int `json:"handshake_bytes,omitempty"`
}

// memoryBytes is the worker's memory limit.
func (c *Config) memoryBytes() int64 { return supervisor.MemoryLimit(c.Limits.MemoryBytes) }

// connLimits are the proxy's limits (which takes its defaults for those
// unset).
func (c *Config) connLimits() proxy.ConnLimits {
	return proxy.ConnLimits{Conns: c.Limits.Conns, Pending: c.Limits.Pending, HandshakeBytes: c.Limits.HandshakeBytes}
}

// LoadConfig reads a Config file.
func LoadConfig(path string) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var c Config
	if err := decodeStrict(path, data, &c); err != nil {
		return nil, err
	}
	return &c, nil
}

// decodeStrict decodes the JSON file path (its contents data) into v.
// Unknown fields are an error: a filter older than the clawrun that
// wrote the file must not run with half of what it says.
func decodeStrict(path string, data []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	if dec.More() {
		return fmt.Errorf("%s: data after the JSON value", path)
	}
	return nil
}

func writeJSONAtomic(path string, v any) error { return jsonfile.Write(path, v, 0o600) }
