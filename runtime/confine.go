package runtime

import (
	"errors"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"slices"

	"github.com/opencontainers/runtime-spec/specs-go"

	"github.com/clawrun/clawrun/internal/jsonfile"
	"github.com/clawrun/clawrun/landlock"
	"github.com/clawrun/clawrun/runtime/confinespec"
	"github.com/clawrun/clawrun/runtime/policy"
)

// confinement is a compiled policy as applied to one container; it is kept
// in the container's state dir for exec and state.
type confinement struct {
	Plan        *policy.Plan       `json:"plan"`
	Launch      confinespec.Launch `json:"launch"`
	DroppedCaps []string           `json:"dropped_capabilities,omitempty"`
	// Command is the process's own command, before the launcher.
	Command []string `json:"command"`
	// Floor names the administrator's floor policy ("" if none).
	Floor string `json:"floor,omitempty"`
	// User is run_as_user/run_as_group resolved at create.
	User *specs.User `json:"user,omitempty"`
	// Egress is the filter of a plan with network policies.
	Egress *egressSetup `json:"egress,omitempty"`
	// SharedFilter is the container whose filter decides this container's
	// traffic when it joined a namespace that has one (a pod's sandbox for
	// an application container of a pod, InPod); it has none of its own.
	SharedFilter string `json:"shared_filter,omitempty"`
	InPod        bool   `json:"in_pod,omitempty"`
	// ReadOnlyMounts are the plan's read-only paths made read-only mounts.
	ReadOnlyMounts []string `json:"read_only_mounts,omitempty"`
	// Trust is how the container trusts the CA of a filter that inspects
	// its egress (nil: none does).
	Trust *trustFiles `json:"trust,omitempty"`
}

const (
	confinementFile = "clawrun.json"
	initReportFile  = "clawrun-init-report.json"
)

// confine resolves the policy of container id and rewrites its spec to
// enforce it. It returns nil (and leaves the spec alone) when no policy
// applies anywhere.
func (r *Runtime) confine(spec *specs.Spec, id string) (*confinement, error) {
	podRole := podRole(spec.Annotations, id)
	opts := policy.CompileOptions{Workdir: spec.Process.Cwd}
	if podRole == criSandbox {
		// The sandbox (pause) container carries the pod's network policy
		// and the floor; each application container has its own file and
		// seccomp policy.
		opts.PodSandbox, opts.SandboxCommand = true, sandboxCommand(spec)
	}
	res, err := r.Policy.resolvePlan(spec.Annotations, opts)
	if err != nil {
		return nil, err
	}
	plan, cfg := res.plan, res.cfg
	if plan == nil {
		return nil, nil
	}
	c := &confinement{Plan: plan, Floor: res.floor}
	if err := c.rewriteSpec(spec); err != nil {
		return nil, err
	}
	if len(plan.Network) > 0 {
		if err := checkEgressNetwork(spec); err != nil {
			return nil, err
		}
		setup, err := egressFor(plan, cfg, spec)
		if err != nil {
			return nil, err
		}
		inPod := podRole == criContainer
		owner, err := r.sharedFilter(spec, setup, inPod)
		switch {
		case err != nil:
			return nil, err
		case owner != "":
			c.SharedFilter, c.InPod = owner, inPod
		case inPod:
			// The pod's sandbox runs the filter of the pod's namespace.
			return nil, errors.New("network_policies: the pod has no egress filter: put the egress policy on the pod (its sandbox), not only on a container")
		default:
			c.Egress = setup
		}
		if err := c.inspectEgress(spec, r.Root, id); err != nil {
			return nil, err
		}
	}
	return c, nil
}

// rewriteSpec reads what enforcing the plan needs from outside the spec
// (the kernel's Landlock ABI, the policy's user in the image's
// /etc/passwd, the root filesystem's symlinks) and rewrites spec with it.
func (c *confinement) rewriteSpec(spec *specs.Spec) error {
	rootfs := rootfsPath(spec)
	user, err := resolveRunAsUser(c.Plan, spec.Process, rootfs)
	if err != nil {
		return err
	}
	in := confinespec.Inputs{LandlockABI: landlock.ABI(), User: user}
	if len(c.Plan.Layers) > 0 {
		resolve, done := rootfsResolver(rootfs, spec.Mounts)
		defer done()
		in.Resolve = resolve
	}
	out, err := confinespec.Spec(spec, c.Plan, in)
	if err != nil {
		return err
	}
	c.Launch, c.Command, c.DroppedCaps, c.User, c.ReadOnlyMounts = out.Launch, out.Command, out.DroppedCaps, user, out.ReadOnlyMounts
	return nil
}

// sandboxCommand is a pod sandbox's command as its exec will find it: an
// absolute path as it is, anything else looked up in the root filesystem
// through the process's PATH; "" when it is not found (the floor then
// keeps the sandbox from running it, and the launcher says so).
func sandboxCommand(spec *specs.Spec) string {
	name := spec.Process.Args[0]
	if path.IsAbs(name) {
		return path.Clean(name)
	}
	root, err := openRoot(rootfsPath(spec))
	if err != nil {
		return ""
	}
	defer root.Close()
	cmd, err := root.resolveCommand(name, spec.Process.Env, spec.Process.Cwd)
	if err != nil {
		return ""
	}
	return cmd
}

// applyToExec makes p, a process exec'd into the container, run under
// the confinement as the container's init does, as the user resolved at
// create.
func (c *confinement) applyToExec(p *specs.Process, rootfs string) error {
	if c.User == nil {
		// Recorded without a resolved user: resolve it now.
		u, err := resolveRunAsUser(c.Plan, p, rootfs)
		if err != nil {
			return err
		}
		c.User = u
	}
	c.Command = slices.Clone(p.Args)
	if c.Trust != nil {
		p.Env = confinespec.TrustEnv(p.Env)
	}
	_, err := confinespec.Process(p, c.User)
	return err
}

// pinPaths records in each layer the file every policy path is at create,
// seen from root (a directory fd of the container's root): an exec'd
// process's launcher gives a rule only to a path that is still that file,
// so that an agent that may write the parent of a listed path cannot swap
// it for a symlink or another directory and widen every later exec.
func (c *confinement) pinPaths(root int) error {
	for i, l := range c.Launch.Layers {
		rules, err := landlock.Pin(root, l.Rules, c.Launch.Strict)
		if err != nil {
			return fmt.Errorf("policy %s: filesystem_policy %v (landlock.compatibility is hard_requirement)", l.Source, err)
		}
		c.Launch.Layers[i].Rules = rules
	}
	return nil
}

// resolveRunAsUser resolves the plan's run_as_user/run_as_group for
// process p in the image's own /etc/passwd and /etc/group, read inside
// the rootfs (symlinks cannot point the lookup at host files) and only if
// they are regular files (a FIFO cannot hang clawrun). Nil when the plan
// sets neither.
func resolveRunAsUser(plan *policy.Plan, p *specs.Process, rootfs string) (*specs.User, error) {
	if !confinespec.SetsUser(plan) {
		return nil, nil
	}
	passwd, err := openInRootfs(rootfs, "etc/passwd")
	if err != nil {
		return nil, fmt.Errorf("policy: process.run_as_user: %w", err)
	}
	defer passwd.Close()
	group, err := openInRootfs(rootfs, "etc/group")
	if err != nil {
		return nil, fmt.Errorf("policy: process.run_as_group: %w", err)
	}
	defer group.Close()
	return confinespec.RunAsUser(plan, p.User, passwd, group)
}

func rootfsPath(spec *specs.Spec) string {
	if spec.Root == nil {
		return ""
	}
	p := spec.Root.Path
	if !filepath.IsAbs(p) {
		wd, _ := os.Getwd() // create runs in the bundle directory
		p = filepath.Join(wd, p)
	}
	return p
}

// save writes the confinement into the container's state dir, whole: it
// is rewritten once the paths are pinned, while start or state may read it.
func (c *confinement) save(stateDir string) error {
	return jsonfile.Write(filepath.Join(stateDir, confinementFile), c, 0o600)
}

// loadConfinement reads it back; nil when the container has no policy.
func loadConfinement(stateDir string) (*confinement, error) {
	var c confinement
	switch err := jsonfile.Read(filepath.Join(stateDir, confinementFile), &c); {
	case errors.Is(err, os.ErrNotExist):
		return nil, nil
	case err != nil:
		return nil, err
	}
	return &c, nil
}
