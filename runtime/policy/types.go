// Package policy is clawrun's policy language: the OpenShell policy v1
// schema plus clawrun's own extensions under the "clawrun" key. It parses,
// validates and compiles policies into an immutable Plan. Everything here is
// pure: no file outside the caller's bytes is read, no kernel is touched.
package policy

import (
	"fmt"
	"strconv"
	"strings"
)

// Compatibility says what to do when the kernel cannot enforce part of a
// policy (a missing path, an older Landlock ABI).
type Compatibility string

const (
	// BestEffort enforces what it can and records what was skipped.
	BestEffort Compatibility = "best_effort"
	// HardRequirement fails the container's creation on any gap.
	HardRequirement Compatibility = "hard_requirement"
)

// Policy is one parsed and validated policy document.
type Policy struct {
	// Name identifies the policy in errors, state and logs: a preset or
	// file name, "inline" for an annotation document.
	Name string `json:"name"`

	Version          int                      `json:"version"`
	FilesystemPolicy Filesystem               `json:"filesystem_policy"`
	Landlock         Landlock                 `json:"landlock"`
	Process          Process                  `json:"process"`
	NetworkPolicies  map[string]NetworkPolicy `json:"network_policies,omitempty"`
	Clawrun          Extensions               `json:"clawrun"`

	// HasFilesystem records that the document has a filesystem_policy
	// section. Only such a policy produces a Landlock Layer: a policy
	// without one (an egress shortcut, a network-only policy) confines no
	// file access, whereas an empty filesystem_policy denies every file.
	HasFilesystem bool `json:"has_filesystem"`
	// HasNetwork records that the document has a network_policies section.
	// Only such a policy produces a NetworkLayer: an empty network_policies
	// denies all egress, an absent one leaves egress to the other policies.
	HasNetwork bool `json:"has_network"`

	// Warnings name the fields that were accepted but are not enforced.
	Warnings []Warning `json:"-"`
}

// Filesystem is OpenShell's filesystem_policy.
type Filesystem struct {
	ReadOnly       []string `json:"read_only,omitempty"`
	ReadWrite      []string `json:"read_write,omitempty"`
	IncludeWorkdir bool     `json:"include_workdir,omitempty"`
}

// Landlock is OpenShell's landlock section.
type Landlock struct {
	Compatibility Compatibility `json:"compatibility"`
}

// Process is OpenShell's process section: who the agent runs as.
type Process struct {
	RunAsUser  string `json:"run_as_user,omitempty"`
	RunAsGroup string `json:"run_as_group,omitempty"`
}

// NetworkPolicy is one named entry of network_policies.
type NetworkPolicy struct {
	Name      string     `json:"name,omitempty"`
	Endpoints []Endpoint `json:"endpoints"`
	Binaries  []Binary   `json:"binaries,omitempty"`
}

// Endpoint is a host (exact, or "*." + domain) and the ports allowed on it.
type Endpoint struct {
	Host        string   `json:"host"`
	Ports       []int    `json:"ports"` // port and ports merged, sorted, unique
	Path        string   `json:"path,omitempty"`
	Protocol    string   `json:"protocol,omitempty"` // rest|websocket|graphql|mcp|json-rpc|tcp
	TLS         string   `json:"tls,omitempty"`
	Enforcement string   `json:"enforcement,omitempty"` // enforce|audit
	Access      string   `json:"access,omitempty"`      // read-only|read-write|full
	Rules       []Rule   `json:"rules,omitempty"`
	DenyRules   []Rule   `json:"deny_rules,omitempty"`
	AllowedIPs  []string `json:"allowed_ips,omitempty"` // CIDRs
}

// Rule is an L7 rule: method, path glob and query of requests. On a
// json-rpc or mcp endpoint, Method is the JSON-RPC method of a call in the
// request body, and Tool (mcp only, with method tools/call) a glob of the
// tool it runs (params.name).
type Rule struct {
	Method string            `json:"method,omitempty"`
	Path   string            `json:"path,omitempty"`
	Query  map[string]string `json:"query,omitempty"`
	Tool   string            `json:"tool,omitempty"`
}

// Binary restricts a network policy to connections made by an executable.
type Binary struct {
	Path string `json:"path"`
}

// Extensions are clawrun's own settings, under the top-level "clawrun" key.
type Extensions struct {
	Seccomp  SeccompSettings  `json:"seccomp"`
	Landlock LandlockSettings `json:"landlock"`
}

// SeccompSettings choose the seccomp profile stacked on the spec's own.
type SeccompSettings struct {
	// Profile is "agent" (the default) or "none" (only the spec's profile).
	Profile string `json:"profile"`
	// DenySyscalls are denied (EPERM) in addition to the profile.
	DenySyscalls []string `json:"deny_syscalls,omitempty"`
}

// LandlockSettings are Landlock options beyond OpenShell's.
type LandlockSettings struct {
	// ScopeSignals and ScopeAbstractUnix (ABI 6) keep the agent from
	// signalling, or connecting to abstract unix sockets of, processes
	// outside its Landlock domain. Both default to true.
	ScopeSignals      bool `json:"scope_signals"`
	ScopeAbstractUnix bool `json:"scope_abstract_unix"`
	// TCPBind and TCPConnect, when set, are the only TCP ports the agent may
	// bind or connect to (ABI 4); nil leaves TCP to the egress filter.
	TCPBind    []uint16 `json:"tcp_bind,omitempty"`
	TCPConnect []uint16 `json:"tcp_connect,omitempty"`
}

// Warning is a field that was accepted but is not (fully) enforced.
type Warning struct {
	File   string `json:"file,omitempty"`
	Line   int    `json:"line,omitempty"`
	Field  string `json:"field"`
	Reason string `json:"reason"`
}

// Error is one validation failure, precise enough to fix the file.
type Error struct {
	File   string
	Line   int
	Field  string
	Reason string
}

// RequestFields are the endpoint's fields that constrain requests rather
// than connections: path, access (read-only, read-write), rules and
// deny_rules. Checking them needs the request: the filter reads it on
// plain HTTP, and over TLS only by inspecting the connection.
func (ep Endpoint) RequestFields() []string {
	var fields []string
	if ep.Path != "" {
		fields = append(fields, "path")
	}
	if ep.Access == "read-only" || ep.Access == "read-write" {
		fields = append(fields, "access")
	}
	if len(ep.Rules) > 0 {
		fields = append(fields, "rules")
	}
	if len(ep.DenyRules) > 0 {
		fields = append(fields, "deny_rules")
	}
	return fields
}

// Inspected reports an endpoint whose TLS the egress filter terminates to
// read every request: one with request fields, or tls: terminate, unless
// tls: skip opts out (and then its request fields deny TLS to it).
func (ep Endpoint) Inspected() bool {
	if ep.TLS == "skip" || ep.Protocol == "tcp" {
		return false
	}
	return ep.TLS == "terminate" || len(ep.RequestFields()) > 0
}

// RPCProtocol reports a protocol whose rules name JSON-RPC methods (and
// MCP tools) carried in the request body.
func RPCProtocol(protocol string) bool { return protocol == "json-rpc" || protocol == "mcp" }

// InspectedEndpoints names the endpoints of a policy's network_policies
// whose TLS the egress filter inspects (Inspected), one line each: the
// field, what it allows and the names of the credentials (creds) the
// filter injects into its requests, in key order.
func InspectedEndpoints(policies map[string]NetworkPolicy, creds []Credential) []string {
	var out []string
	for _, key := range sortedKeys(policies) {
		for i, ep := range policies[key].Endpoints {
			if ep.Inspected() {
				what := ep.Host + ", ports " + joinInts(ep.Ports)
				if names := injectedCredentials(ep, creds); len(names) > 0 {
					what += ", credentials " + strings.Join(names, ", ")
				}
				out = append(out, fmt.Sprintf("network_policies.%s.endpoints[%d] (%s)", key, i, what))
			}
		}
	}
	return out
}

func joinInts(v []int) string {
	s := make([]string, len(v))
	for i, n := range v {
		s[i] = strconv.Itoa(n)
	}
	return strings.Join(s, ", ")
}
