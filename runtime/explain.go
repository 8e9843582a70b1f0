package runtime

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/clawrun/clawrun/egress/rules"
	"github.com/clawrun/clawrun/runtime/confinespec"
	"github.com/clawrun/clawrun/runtime/policy"
	"github.com/clawrun/clawrun/seccomp"
)

// seccompRules describes the rules of seccomp.AgentProfile that depend on
// a call's arguments (keep it in step with seccomp/agent.go).
var seccompRules = []string{
	"clone and unshare with CLONE_NEWUSER: denied (no user namespaces); clone3 reports ENOSYS, so that libc falls back to clone.",
	"execveat of a file descriptor (AT_EMPTY_PATH, e.g. a memfd): denied.",
	"socket and socketpair: AF_UNIX, AF_INET, AF_INET6 and AF_NETLINK with NETLINK_ROUTE only; every other family (AF_PACKET, AF_VSOCK, AF_ALG, AF_TIPC, ...) denied.",
	"personality: the execution domains Docker's default profile allows (PER_LINUX, PER_LINUX32, UNAME26, and reading the current one); READ_IMPLIES_EXEC and every other flag denied.",
}

// Explain loads the policy ref names and the floor the runtime would put
// under it (--policy, else the config's floor_policy), and explains them
// together. ref is a file when it contains a "/" or ends in .yaml, .yml
// or .json; otherwise a preset or a NAME.yaml of the policy directory, as
// run.clawrun.policy names it. An empty ref is the config's
// default_policy: what a container without a policy annotation gets.
func (o *PolicyOptions) Explain(ref string) (*policy.Explanation, error) {
	cfg, err := o.loadConfig()
	if err != nil {
		return nil, err
	}
	floor, floorRef, err := o.loadFloor(cfg)
	if err != nil {
		return nil, err
	}
	var floorFrom string
	if floor != nil {
		floorFrom = policyOrigin(floorRef, cfg)
	}

	var container *policy.Policy
	var containerFrom string
	switch {
	case ref == "" && cfg.DefaultPolicy == "":
	case ref == "":
		if container, err = loadPolicyRef(cfg.DefaultPolicy, cfg, true); err != nil {
			return nil, fmt.Errorf("config default_policy: %w", err)
		}
		containerFrom = "the config's default_policy, " + policyOrigin(cfg.DefaultPolicy, cfg)
	case isPolicyFile(ref):
		data, err := os.ReadFile(ref)
		if err != nil {
			return nil, err
		}
		if container, err = policy.Parse(ref, data); err != nil {
			return nil, err
		}
	default:
		if container, err = loadPolicyRef(ref, cfg, false); err != nil {
			return nil, err
		}
		containerFrom = policyOrigin(ref, cfg)
	}

	e, err := explainPolicies(floor, container, cfg.Egress.Credentials, cfg.Egress.Inference != nil)
	if err != nil {
		return nil, err
	}
	e.FloorFrom, e.ContainerFrom = floorFrom, containerFrom
	return e, nil
}

// explainPolicies explains floor and container (either may be nil)
// together, with the runtime's facts, the egress filter's reading of
// their network policies, the configured credentials (creds) and whether
// the config routes inference.local.
func explainPolicies(floor, container *policy.Policy, creds []policy.Credential, routesInference bool) (*policy.Explanation, error) {
	return policy.Explain(floor, container, policy.ExplainFacts{
		SeccompDenied:       seccomp.AgentDenied,
		SeccompRules:        seccompRules,
		RefusedCapabilities: confinespec.RefusedCaps,
		DroppedCapabilities: confinespec.DroppedCaps,
		Filter:              rules.ExplainFilter,
		Credentials:         creds,
		RoutesInference:     routesInference,
	})
}

// Credentials are the config's egress.credentials: names and sources,
// never values.
func (o *PolicyOptions) Credentials() ([]policy.Credential, error) {
	cfg, err := o.loadConfig()
	if err != nil {
		return nil, err
	}
	return cfg.Egress.Credentials, nil
}

func isPolicyFile(ref string) bool {
	if strings.Contains(ref, "/") {
		return true
	}
	switch filepath.Ext(ref) {
	case ".yaml", ".yml", ".json":
		return true
	}
	return false
}

// policyOrigin says where loadPolicyRef found ref.
func policyOrigin(ref string, cfg *policy.Config) string {
	if filepath.IsAbs(ref) {
		return "" // the name is the path
	}
	if _, ok := policy.Preset(ref); ok {
		return "built-in preset"
	}
	if file, err := cfg.PolicyFile(ref); err == nil {
		return file
	}
	return ""
}
