// Package rules is what the egress filter allows: the network layers of
// a policy Plan compiled into Rules (FromPlan), and the pure decisions on
// them: a name, port and process (Match...), a plain-HTTP request
// (AllowRequest), an address class (Permitted). Every decision carries a
// typed Reason, which flows unchanged into the decision log.
package rules

import (
	"net/netip"

	"github.com/clawrun/clawrun/runtime/policy"
)

// Reason says why a connection or a query was decided as it was. It is
// written as is into the decision log.
type Reason string

const (
	ReasonAllowed       Reason = "allowed"          // an endpoint matched
	ReasonNotAllowed    Reason = "not_allowed"      // no endpoint for that name
	ReasonPort          Reason = "port"             // the name is allowed, not on that port
	ReasonPrivateIP     Reason = "private_ip"       // resolves to a blocked address class
	ReasonNoSNI         Reason = "no_sni"           // TLS without a server name
	ReasonIPLiteral     Reason = "ip_literal"       // a raw IP where a name is needed
	ReasonECH           Reason = "ech"              // encrypted ClientHello: the SNI is a decoy
	ReasonBinary        Reason = "binary"           // the endpoint is for other executables
	ReasonUnenforceable Reason = "unenforceable"    // a field clawrun cannot enforce here
	ReasonInspect       Reason = "inspect_required" // a spliced connection to an endpoint that is now inspected
	ReasonNotHTTP       Reason = "unknown_protocol" // neither TLS nor HTTP on a captured connection
	ReasonResolve       Reason = "resolve_failed"   // the upstream lookup failed
	ReasonUpstream      Reason = "upstream_failed"  // the upstream connection failed
	ReasonQueryType     Reason = "query_type"       // a DNS type that is answered empty
	ReasonTCPRequired   Reason = "tcp_required"     // a name restricted to binaries asked over UDP: answered truncated, to be asked over TCP
	// The filter's own limits (see ConnLimits and LogLimits).
	ReasonConnLimit        Reason = "conn_limit"          // refused: the namespace has its most open connections
	ReasonHandshakeLimit   Reason = "handshake_limit"     // refused or cut: too many connections not yet decided
	ReasonHandshakeTimeout Reason = "handshake_timeout"   // no whole ClientHello or request head in time
	ReasonHandshakeSize    Reason = "handshake_too_large" // more handshake than a connection may buffer
	ReasonLogRate          Reason = "log_rate_limit"      // decisions not logged one by one: the log's rate
)

// Endpoint is one allowed (host, ports) pair of a network policy.
type Endpoint struct {
	// Host is a canonical pattern (hostname.ParsePattern): exact, or "*."
	// + domain, matched by hostname.Match (exactly one more label: *.x.com
	// matches a.x.com, not x.com nor a.b.x.com).
	Host  string `json:"host"`
	Ports []int  `json:"ports"`
	// Protocol "tcp" endpoints are reached through synthetic addresses
	// (the server may speak first); others are TLS or HTTP.
	Protocol string `json:"protocol,omitempty"`
	// Audit allows but logs what would have been denied.
	Audit bool `json:"audit,omitempty"`
	// AllowedIPs open otherwise blocked address ranges for this endpoint.
	AllowedIPs []netip.Prefix `json:"allowed_ips,omitempty"`
	// L7 holds what requests must match (method, path, JSON-RPC calls);
	// nil means any request. Plain-HTTP requests are checked each; over
	// TLS only when the endpoint is inspected (Inspect).
	L7 *L7Rules `json:"l7,omitempty"`
	// Inspect: a TLS connection to the endpoint is terminated with the
	// container's CA and every request in it decided (MatchRequest), by
	// the inspection engine, instead of being spliced.
	Inspect bool `json:"inspect,omitempty"`
	// Unenforceable, when set, makes the endpoint deny everything over TLS
	// (request rules on an endpoint that opted out of inspection with
	// tls: skip).
	Unenforceable string `json:"unenforceable,omitempty"`
}

// L7Rules are per-request rules of an endpoint. A rule is the policy's
// own (policy.Rule): method ("*" for any), path glob ("*" within a
// segment, "**" across segments), and query parameters mapped to globs of
// their values ("*" only). On a JSON-RPC endpoint (RPC set), a rule's
// method is that of a call in the body and its tool that of an MCP
// tools/call.
type L7Rules struct {
	Allow []policy.Rule `json:"allow,omitempty"`
	Deny  []policy.Rule `json:"deny,omitempty"`
	// ReadOnly allows only GET, HEAD and OPTIONS, and no WebSocket
	// upgrade (its messages write) unless WebSocket says the endpoint is
	// for one.
	ReadOnly bool `json:"read_only,omitempty"`
	// ReadWrite allows only GET, HEAD, OPTIONS, POST, PUT and PATCH.
	ReadWrite bool `json:"read_write,omitempty"`
	// WebSocket: the endpoint says protocol: websocket.
	WebSocket bool `json:"websocket,omitempty"`
	// Path, when set, is a glob every request's path must match.
	Path string `json:"path,omitempty"`
	// RPC is "json-rpc" or "mcp" when the rules name the JSON-RPC calls
	// of the request body: requests are POSTs whose body is read (MCP also
	// opens its server's stream with a GET), which only inspection does.
	RPC string `json:"rpc,omitempty"`
}

// Policy is one named entry of network_policies.
type Policy struct {
	Name      string     `json:"name"`
	Endpoints []Endpoint `json:"endpoints"`
	// Binaries, when not empty, restrict the policy to connections made
	// by these executables (the process or an ancestor; globs allowed).
	Binaries []string `json:"binaries,omitempty"`
}

// Layer is one source policy's network_policies (the floor's, or the
// container's). A connection must be allowed by every layer.
type Layer struct {
	Source   string   `json:"source"`
	Policies []Policy `json:"policies"`
}

// Rules is the allow list of one network namespace, one generation.
type Rules struct {
	Generation int64   `json:"generation"`
	Layers     []Layer `json:"layers"`
}

// Decision is the outcome of matching one name (and port).
type Decision struct {
	Allow  bool   `json:"allow"`
	Audit  bool   `json:"audit,omitempty"` // allowed only because of audit mode
	Reason Reason `json:"reason"`
	// Rule names the network policy that decided ("" when none matched).
	Rule string `json:"rule,omitempty"`
	// Layer is the Source of the layer that denied (or, when allowed,
	// of the last layer, or of the first layer that audited).
	Layer string `json:"layer,omitempty"`
	// Inspect: some layer allows the connection only through endpoints
	// that are inspected, so its requests must be decided one by one
	// (MatchRequest) rather than the connection spliced.
	Inspect bool `json:"inspect,omitempty"`
	// DeniedCalls, when a JSON-RPC request is denied for some of its
	// calls, are their indices in Request.RPC.Calls.
	DeniedCalls []int `json:"-"`
	// Endpoint is the matched endpoint of the last layer (nil if none);
	// when denied, the endpoint of the denying layer that came closest.
	Endpoint *Endpoint `json:"-"`
	// AllowedIPs are the addresses every layer's matched endpoints open
	// (their allowed_ips, intersected across layers): pass them to
	// Permitted as endpointAllowed.
	AllowedIPs []netip.Prefix `json:"-"`
	// Binary is the executable to log: when binaries decided against the
	// connection (reason binary, denied or audited), that of the process
	// they refused; otherwise that of the first process holding it ("":
	// none known).
	Binary string `json:"binary,omitempty"`
}
