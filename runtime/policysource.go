package runtime

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/clawrun/clawrun/runtime/policy"
)

// Annotations through which a container asks for a policy.
const (
	AnnotationPolicy       = AnnotationPrefix + "policy"        // a preset or a file NAME.yaml in the policy dir
	AnnotationPolicyInline = AnnotationPrefix + "policy.inline" // a whole policy document
	AnnotationEgress       = AnnotationPrefix + "egress"        // host[:port],... shortcut
)

// DefaultConfigFile is read when --config is not given (and may be absent).
const DefaultConfigFile = policy.DefaultConfigFile

// PolicyOptions are the administrator's settings: the floor policy every
// container gets, and the config file.
type PolicyOptions struct {
	// Floor is --policy: a preset or policy name, or an absolute file path.
	Floor string
	// ConfigFile is --config; ConfigExplicit makes a missing file an error.
	ConfigFile     string
	ConfigExplicit bool
}

// loadConfig reads the runtime's config file; a default file that does not
// exist means an empty config.
func (o *PolicyOptions) loadConfig() (*policy.Config, error) {
	path := o.ConfigFile
	if path == "" {
		path = DefaultConfigFile
	}
	data, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) && !o.ConfigExplicit {
		return &policy.Config{PolicyDir: policy.DefaultPolicyDir}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	cfg, err := policy.ParseConfig(path, data)
	if err != nil {
		return nil, err
	}
	if cfg.PolicyDir == "" {
		cfg.PolicyDir = policy.DefaultPolicyDir
	}
	return cfg, nil
}

// resolvePlan compiles the floor and the container's own policy (from its
// annotations, else the config's default policy). No policy anywhere: nil,
// and the container runs as runc would run it.
// resolved is a compiled plan and what produced it.
type resolved struct {
	plan  *policy.Plan
	cfg   *policy.Config
	floor string // the floor policy's name ("" without a floor)
}

func (o *PolicyOptions) resolvePlan(annotations map[string]string, opts policy.CompileOptions) (*resolved, error) {
	cfg, err := o.loadConfig()
	if err != nil {
		return nil, err
	}
	floor, _, err := o.loadFloor(cfg)
	if err != nil {
		return nil, err
	}
	container, err := containerPolicy(annotations, cfg)
	if err != nil {
		return nil, err
	}
	opts.RoutesInference = cfg.Egress.Inference != nil
	plan, err := policy.Compile(floor, container, opts)
	if err != nil {
		return nil, err
	}
	res := &resolved{plan: plan, cfg: cfg}
	if floor != nil {
		res.floor = floor.Name
	}
	return res, nil
}

// loadFloor loads the floor policy (--policy, else the config's
// floor_policy) and returns it with its reference; nil and "" without one.
func (o *PolicyOptions) loadFloor(cfg *policy.Config) (*policy.Policy, string, error) {
	ref := o.Floor
	if ref == "" {
		ref = cfg.FloorPolicy
	}
	if ref == "" {
		return nil, "", nil
	}
	floor, err := loadPolicyRef(ref, cfg, true)
	if err != nil {
		return nil, "", fmt.Errorf("floor policy: %w", err)
	}
	return floor, ref, nil
}

// containerPolicy reads the policy a container asks for through its
// annotations. Unknown run.clawrun.* keys are refused: a typo must not
// silently run the container unconfined.
func containerPolicy(annotations map[string]string, cfg *policy.Config) (*policy.Policy, error) {
	var unknown []string
	for key := range annotations {
		switch key {
		case AnnotationPolicy, AnnotationPolicyInline, AnnotationEgress:
		default:
			if strings.HasPrefix(key, AnnotationPrefix) {
				unknown = append(unknown, key)
			}
		}
	}
	if len(unknown) > 0 {
		sort.Strings(unknown)
		return nil, fmt.Errorf("annotation %q: unknown (clawrun knows %s, %s and %s)",
			unknown[0], AnnotationPolicy, AnnotationPolicyInline, AnnotationEgress)
	}
	name, hasName := annotations[AnnotationPolicy]
	inline, hasInline := annotations[AnnotationPolicyInline]
	egress, hasEgress := annotations[AnnotationEgress]
	if hasName && hasInline {
		return nil, fmt.Errorf("annotations %s and %s: give one policy, not both", AnnotationPolicy, AnnotationPolicyInline)
	}
	var p *policy.Policy
	var err error
	switch {
	case hasName:
		if p, err = loadPolicyRef(name, cfg, false); err != nil {
			return nil, fmt.Errorf("annotation %s: %w", AnnotationPolicy, err)
		}
	case hasInline:
		if p, err = policy.Parse("inline", []byte(inline)); err != nil {
			return nil, fmt.Errorf("annotation %s: %w", AnnotationPolicyInline, err)
		}
	case cfg.DefaultPolicy != "":
		// The egress shortcut below adds to the default policy as it adds
		// to a named one: an allow list meant to narrow egress must not
		// take the file rules away.
		if p, err = loadPolicyRef(cfg.DefaultPolicy, cfg, true); err != nil {
			return nil, fmt.Errorf("config default_policy: %w", err)
		}
	}
	if hasEgress {
		short, err := policy.ParseShortcut(egress)
		if err != nil {
			return nil, fmt.Errorf("annotation %s: %w", AnnotationEgress, err)
		}
		if p == nil {
			return short, nil
		}
		p = p.WithNetworkPolicies(short.NetworkPolicies)
	}
	return p, nil
}

// loadPolicyRef loads a preset or a NAME.yaml from the policy directory
// (presets win, so a preset name means the same on every host), or, only
// when allowFile (flags and the config file, never annotations), an
// absolute file path.
func loadPolicyRef(ref string, cfg *policy.Config, allowFile bool) (*policy.Policy, error) {
	if filepath.IsAbs(ref) {
		if !allowFile {
			return nil, fmt.Errorf("%q: a policy name, not a path, is expected here", ref)
		}
		data, err := os.ReadFile(ref)
		if err != nil {
			return nil, err
		}
		return policy.Parse(ref, data)
	}
	return cfg.LoadNamed(ref, os.ReadFile)
}
