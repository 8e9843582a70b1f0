package policy

// Plan is what the runtime enforces on one container: the administrator's
// floor policy and the container's own policy compiled together. A Plan is
// never modified after Compile returns it.
type Plan struct {
	// Name says where the policies came from, e.g. "agent-default" or
	// "floor:site-floor + inline".
	Name string `json:"name"`
	// Digest is "sha256:" + hex of the canonical JSON of the source policies.
	Digest string `json:"digest"`
	// Compatibility is hard_requirement if any source policy asks for it.
	Compatibility Compatibility `json:"compatibility"`
	// Layers are applied in order, each as its own Landlock ruleset: the
	// kernel stacks Landlock domains, so an access is allowed only if every
	// layer allows it (the floor first, then the container's policy).
	Layers []Layer `json:"layers"`
	// Seccomp is the agent profile stacked on the spec's own profile.
	Seccomp SeccompPlan `json:"seccomp"`
	// RunAsUser and RunAsGroup (names or numbers, never root) replace the
	// spec's process user when set.
	RunAsUser  string `json:"run_as_user,omitempty"`
	RunAsGroup string `json:"run_as_group,omitempty"`
	// Network holds each source policy's network_policies: egress is
	// allowed only where every layer allows it.
	Network []NetworkLayer `json:"network,omitempty"`
	// TrustDir is set (to the package's TrustDir) when the egress filter
	// terminates TLS for the container: every layer reads it, where the
	// runtime mounts the trust bundle of the filter's CA.
	TrustDir string `json:"trust_dir,omitempty"`
	// Warnings from every source policy and from compilation.
	Warnings []Warning `json:"warnings,omitempty"`
}

// Layer is one source policy's filesystem and Landlock rules, with paths
// as seen inside the container.
type Layer struct {
	Source            string   `json:"source"`
	ReadOnly          []string `json:"read_only,omitempty"`  // read + execute
	ReadWrite         []string `json:"read_write,omitempty"` // every file right
	ScopeSignals      bool     `json:"scope_signals"`
	ScopeAbstractUnix bool     `json:"scope_abstract_unix"`
	// TCPBind and TCPConnect restrict TCP by port when non-nil.
	TCPBind    []uint16 `json:"tcp_bind,omitempty"`
	TCPConnect []uint16 `json:"tcp_connect,omitempty"`
}

// SeccompPlan is the seccomp profile clawrun adds to the spec's.
type SeccompPlan struct {
	// Profile is "agent" or "none".
	Profile string `json:"profile"`
	// Deny are extra syscalls denied with EPERM (sorted, unique).
	Deny []string `json:"deny,omitempty"`
}

// NetworkLayer is one source policy's network_policies.
type NetworkLayer struct {
	Source   string                   `json:"source"`
	Policies map[string]NetworkPolicy `json:"policies"`
}
