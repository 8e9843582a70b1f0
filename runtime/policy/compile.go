package policy

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"path"
	"slices"
)

// CompileOptions are the facts about the container a Plan depends on.
type CompileOptions struct {
	// Workdir is the container's process.cwd, added read-write to the
	// layer of each policy that sets include_workdir.
	Workdir string
	// PodSandbox is set for a pod's sandbox (pause) container. It carries
	// the pod's network_policies (the pod's egress filter runs with it),
	// while the container policy's file, Landlock and seccomp rules are
	// each application container's: of that policy only its network
	// policies and process identity are compiled. The floor applies in
	// full.
	PodSandbox bool
	// SandboxCommand is a pod sandbox's command, resolved to an absolute
	// path: every layer lets it be read and executed, and nothing more, so
	// that the pause starts under any floor. Ignored without PodSandbox.
	SandboxCommand string
	// RoutesInference: the runtime's config routes inference.local, whose
	// TLS the egress filter terminates, so that a container with network
	// policies trusts the filter's CA even when no endpoint is inspected.
	RoutesInference bool
}

// TrustDir is where the runtime mounts the files through which a
// container trusts its egress filter's CA (the trust bundle and the CA
// certificate, never its key).
const TrustDir = "/etc/clawrun"

// Compile combines the administrator's floor policy and the container's
// own policy into the Plan enforced on the container. Either may be nil;
// both nil means no confinement and returns (nil, nil).
//
// The floor can only be narrowed: each policy with a filesystem_policy
// becomes its own Landlock layer (the kernel allows an access only if every
// layer does), each policy with network_policies its own network layer,
// seccomp denials add up, and hard_requirement wins over best_effort.
//
// Both policies are checked with Validate first, so a Policy built or
// modified in code cannot bypass the parser's rules.
func Compile(floor, container *Policy, opts CompileOptions) (*Plan, error) {
	if floor == nil && container == nil {
		return nil, nil
	}
	if opts.PodSandbox && container != nil {
		container = container.NetworkOnly()
	}
	var errs ErrorList
	sources := make([]*Policy, 0, 2)
	for _, p := range []*Policy{floor, container} {
		if p == nil {
			continue
		}
		if err := p.Validate(); err != nil {
			l, _ := AsErrorList(err)
			errs = append(errs, l...)
			continue
		}
		sources = append(sources, p)
	}
	if err := errs.asError(); err != nil {
		return nil, err
	}

	plan := &Plan{
		Name:          planName(floor, container),
		Digest:        digest(floor, container),
		Compatibility: BestEffort,
		Layers:        []Layer{},
		Seccomp:       SeccompPlan{Profile: ProfileNone},
	}
	var deny []string
	for _, p := range sources {
		if p.Landlock.Compatibility == HardRequirement {
			plan.Compatibility = HardRequirement
		}
		// "agent" is the default: the profile is dropped only when every
		// policy asks for none.
		if p.Clawrun.Seccomp.Profile != ProfileNone {
			plan.Seccomp.Profile = ProfileAgent
		}
		deny = append(deny, p.Clawrun.Seccomp.DenySyscalls...)
		if p.HasFilesystem {
			layer, err := compileLayer(p, opts.Workdir)
			if err != nil {
				errs = append(errs, *err)
			} else {
				plan.Layers = append(plan.Layers, layer)
			}
		}
		if p.HasNetwork {
			plan.Network = append(plan.Network, NetworkLayer{Source: p.Name, Policies: cloneNetwork(p.NetworkPolicies)})
		}
		plan.Warnings = append(plan.Warnings, p.Warnings...)
	}
	plan.Seccomp.Deny = sortedUnique(deny)
	if len(plan.Network) > 0 && (plan.Inspects() || opts.RoutesInference) {
		// TLS clients read the trust bundle whatever else of /etc the
		// policies grant: without it inspected HTTPS fails to verify.
		plan.TrustDir = TrustDir
		grantReadOnly(plan.Layers, TrustDir)
	}
	if opts.PodSandbox {
		if err := grantCommand(plan.Layers, opts.SandboxCommand); err != nil {
			errs = append(errs, *err)
		}
	}

	var err *Error
	plan.RunAsUser, err = identity("run_as_user", floor, container, func(p *Policy) string { return p.Process.RunAsUser })
	if err != nil {
		errs = append(errs, *err)
	}
	plan.RunAsGroup, err = identity("run_as_group", floor, container, func(p *Policy) string { return p.Process.RunAsGroup })
	if err != nil {
		errs = append(errs, *err)
	}
	if err := errs.asError(); err != nil {
		return nil, err
	}
	return plan, nil
}

func compileLayer(p *Policy, workdir string) (Layer, *Error) {
	fs := p.FilesystemPolicy
	l := Layer{
		Source:            p.Name,
		ReadOnly:          slices.Clone(fs.ReadOnly),
		ReadWrite:         slices.Clone(fs.ReadWrite),
		ScopeSignals:      p.Clawrun.Landlock.ScopeSignals,
		ScopeAbstractUnix: p.Clawrun.Landlock.ScopeAbstractUnix,
		TCPBind:           slices.Clone(p.Clawrun.Landlock.TCPBind),
		TCPConnect:        slices.Clone(p.Clawrun.Landlock.TCPConnect),
	}
	if !fs.IncludeWorkdir {
		return l, nil
	}
	fail := func(format string, args ...any) (Layer, *Error) {
		return Layer{}, &Error{File: p.Name, Field: "filesystem_policy.include_workdir", Reason: fmt.Sprintf(format, args...)}
	}
	// Docker's default working directory is "/", and a read-write "/"
	// would undo the whole filesystem policy.
	if workdir == "" || path.Clean(workdir) == "/" {
		return fail("the container's working directory is /; a read-write / is not allowed")
	}
	wd, reason := cleanFSPath(workdir)
	if reason != "" {
		return fail("the container's working directory %s", reason)
	}
	if !slices.Contains(l.ReadWrite, wd) {
		l.ReadWrite = append(l.ReadWrite, wd)
	}
	return l, nil
}

// grantCommand lets every layer read and execute cmd (a pod sandbox's
// own command), a single file: rules on a file carry no directory rights.
func grantCommand(layers []Layer, cmd string) *Error {
	if cmd == "" {
		return nil // unresolved: the launcher's exec is refused, and says so
	}
	clean, reason := cleanPath(cmd)
	if reason == "" && clean == "/" {
		reason = "not a file"
	}
	if reason != "" {
		return &Error{Field: "process.args[0]", Reason: fmt.Sprintf("the pod sandbox's command %s", reason)}
	}
	grantReadOnly(layers, clean)
	return nil
}

// grantReadOnly lets every layer read (and execute) path, a clean
// absolute path.
func grantReadOnly(layers []Layer, path string) {
	for i := range layers {
		if !slices.Contains(layers[i].ReadOnly, path) {
			layers[i].ReadOnly = append(layers[i].ReadOnly, path)
		}
	}
}

// Inspects reports a plan with an endpoint whose TLS the egress filter
// terminates (Endpoint.Inspected).
func (p *Plan) Inspects() bool {
	for _, l := range p.Network {
		for _, np := range l.Policies {
			if slices.ContainsFunc(np.Endpoints, Endpoint.Inspected) {
				return true
			}
		}
	}
	return false
}

// identity picks run_as_user or run_as_group: the container's if set, else
// the floor's; two different values are a conflict, not an override.
func identity(field string, floor, container *Policy, get func(*Policy) string) (string, *Error) {
	var f, c string
	if floor != nil {
		f = get(floor)
	}
	if container != nil {
		c = get(container)
	}
	switch {
	case c == "":
		return f, nil
	case f == "" || f == c:
		return c, nil
	}
	return "", &Error{File: container.Name, Field: "process." + field,
		Reason: fmt.Sprintf("%q conflicts with %q set by the floor policy %s", c, f, floor.Name)}
}

func planName(floor, container *Policy) string {
	switch {
	case floor == nil:
		return container.Name
	case container == nil:
		return floor.Name
	}
	return "floor:" + floor.Name + " + " + container.Name
}

// digest identifies the source policies: sha256 of their JSON, in which
// encoding/json sorts map keys and Warnings are left out, so the same
// policies always give the same digest.
func digest(floor, container *Policy) string {
	b, err := json.Marshal(struct {
		Floor     *Policy `json:"floor"`
		Container *Policy `json:"container"`
	}{floor, container})
	if err != nil { // cannot happen: every field is a plain value
		panic("policy: digest: " + err.Error())
	}
	sum := sha256.Sum256(b)
	return "sha256:" + hex.EncodeToString(sum[:])
}
