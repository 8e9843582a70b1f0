package runtime

import (
	"errors"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"github.com/moby/sys/user"
	"github.com/opencontainers/runc/libcontainer/configs"
	"github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/clawrun/clawrun/internal/jsonfile"
	"github.com/clawrun/clawrun/landlock"
	"github.com/clawrun/clawrun/landlock/launcher"
	"github.com/clawrun/clawrun/runtime/policy"
	"github.com/clawrun/clawrun/seccomp"
)

// Capabilities a confined container may not hold: each one is a way
// around Landlock, seccomp or the egress filter. They are refused, never
// silently removed, so that nobody believes a privileged agent is confined.
var refusedCaps = []string{
	"CAP_SYS_ADMIN", "CAP_SYS_PTRACE", "CAP_SYS_MODULE", "CAP_DAC_READ_SEARCH",
	"CAP_NET_ADMIN", "CAP_BPF", "CAP_PERFMON",
}

// droppedCaps are removed from every set: Docker grants NET_RAW by default,
// and raw sockets bypass any TCP-level filter.
var droppedCaps = []string{"CAP_NET_RAW"}

// confinement is a compiled policy as applied to one container; it is kept
// in the container's state dir for exec and state.
type confinement struct {
	Plan        *policy.Plan  `json:"plan"`
	Launch      launcher.Spec `json:"launch"`
	DroppedCaps []string      `json:"dropped_capabilities,omitempty"`
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
	if !hasProcMount(spec) {
		return nil, errors.New("policy: the container needs a /proc mount (clawrun's launcher runs from /proc/self/exe)")
	}
	c := &confinement{Plan: plan, Command: slices.Clone(spec.Process.Args), Floor: res.floor}
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
	}
	if c.Launch, err = launchSpec(plan); err != nil {
		return nil, err
	}
	if err := c.applyToProcess(spec.Process, rootfsPath(spec)); err != nil {
		return nil, err
	}
	c.ReadOnlyMounts = protectReadOnly(spec, plan)
	return c, nil
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

// applyToProcess makes p run under the confinement: through the launcher,
// with no_new_privs, without the dropped capabilities, as the policy's user.
func (c *confinement) applyToProcess(p *specs.Process, rootfs string) error {
	if caps := p.Capabilities; caps != nil {
		for _, set := range [][]string{caps.Bounding, caps.Effective, caps.Permitted, caps.Inheritable, caps.Ambient} {
			for _, name := range set {
				if slices.Contains(refusedCaps, normalizeCap(name)) {
					return fmt.Errorf("policy: the process holds %s, which would let it escape the policy; a confined container cannot be privileged", normalizeCap(name))
				}
			}
		}
		dropped := false
		for _, set := range []*[]string{&caps.Bounding, &caps.Effective, &caps.Permitted, &caps.Inheritable, &caps.Ambient} {
			before := len(*set)
			*set = slices.DeleteFunc(*set, func(n string) bool { return slices.Contains(droppedCaps, normalizeCap(n)) })
			dropped = dropped || len(*set) != before
		}
		if dropped && len(c.DroppedCaps) == 0 {
			c.DroppedCaps = slices.Clone(droppedCaps)
		}
	}
	p.NoNewPrivileges = true
	if c.User == nil && (c.Plan.RunAsUser != "" || c.Plan.RunAsGroup != "") {
		u, err := resolveUser(p, c.Plan.RunAsUser, c.Plan.RunAsGroup, rootfs)
		if err != nil {
			return err
		}
		c.User = u
	}
	if c.User != nil {
		// Resolved once, at create: an exec'd process gets the same ids
		// whatever the container has done to its /etc since.
		p.User = *c.User
	}
	p.Args = launcher.Command(p.Args)
	return nil
}

func normalizeCap(name string) string {
	name = strings.ToUpper(name)
	if !strings.HasPrefix(name, "CAP_") {
		name = "CAP_" + name
	}
	return name
}

// launchSpec turns a plan into what the in-container launcher enforces.
func launchSpec(plan *policy.Plan) (launcher.Spec, error) {
	spec := launcher.Spec{Strict: plan.Compatibility == policy.HardRequirement, ReportFD: -1}
	for _, l := range plan.Layers {
		spec.Layers = append(spec.Layers, launcher.Layer{Source: l.Source, Rules: landlock.Layer{
			ReadOnly: l.ReadOnly, ReadWrite: l.ReadWrite,
			ScopeSignals: l.ScopeSignals, ScopeAbstractUnix: l.ScopeAbstractUnix,
			TCPBind: l.TCPBind, TCPConnect: l.TCPConnect,
		}})
	}
	if spec.Strict && len(spec.Layers) > 0 {
		if abi := landlock.ABI(); abi == 0 {
			return spec, errors.New("policy: landlock.compatibility is hard_requirement but this kernel has no Landlock")
		}
	}
	if err := seccomp.CheckNames(plan.Seccomp.Deny); err != nil {
		return spec, fmt.Errorf("policy: %w", err)
	}
	switch {
	case plan.Seccomp.Profile == seccomp.ProfileAgent:
		spec.Seccomp = seccomp.AgentProfile(plan.Seccomp.Deny)
	case len(plan.Seccomp.Deny) > 0:
		spec.Seccomp = denyOnly(plan.Seccomp.Deny)
	}
	if hasTCPRules(plan) {
		spec.Seccomp = seccomp.WithoutMPTCP(spec.Seccomp)
	}
	return spec, nil
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

// hasTCPRules tells whether a layer restricts TCP ports (tcp_bind or
// tcp_connect).
func hasTCPRules(plan *policy.Plan) bool {
	for _, l := range plan.Layers {
		if l.TCPBind != nil || l.TCPConnect != nil {
			return true
		}
	}
	return false
}

func denyOnly(names []string) *configs.Seccomp {
	eperm := uint(unix.EPERM)
	s := &configs.Seccomp{DefaultAction: configs.Allow}
	for _, n := range names {
		s.Syscalls = append(s.Syscalls, &configs.Syscall{Name: n, Action: configs.Errno, ErrnoRet: &eperm})
	}
	return s
}

// resolveUser resolves run_as_user/run_as_group in the image's own
// /etc/passwd and /etc/group, read inside the rootfs (symlinks cannot
// point the lookup at host files) and only if they are regular files (a
// FIFO cannot hang clawrun). Root is refused.
func resolveUser(p *specs.Process, userName, groupName, rootfs string) (*specs.User, error) {
	spec := userName
	if spec == "" {
		spec = strconv.Itoa(int(p.User.UID))
	}
	if groupName != "" {
		spec += ":" + groupName
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
	defaults := &user.ExecUser{Uid: int(p.User.UID), Gid: int(p.User.GID)}
	eu, err := user.GetExecUser(spec, defaults, passwd, group)
	if err != nil {
		return nil, fmt.Errorf("policy: process.run_as_user/run_as_group %q: %w", spec, err)
	}
	if eu.Uid == 0 || eu.Gid == 0 {
		return nil, fmt.Errorf("policy: process.run_as_user/run_as_group %q resolves to root, which is not allowed", spec)
	}
	u := &specs.User{UID: uint32(eu.Uid), GID: uint32(eu.Gid)}
	for _, g := range eu.Sgids {
		if g != 0 {
			u.AdditionalGids = append(u.AdditionalGids, uint32(g))
		}
	}
	return u, nil
}

// openInRootfs opens rel inside rootfs (RESOLVE_IN_ROOT) if it is a regular
// file; a missing file reads as empty (numeric ids still work).
func openInRootfs(rootfs, rel string) (*os.File, error) {
	root, err := os.Open(rootfs)
	if err != nil {
		return nil, err
	}
	defer root.Close()
	fd, err := unix.Openat2(int(root.Fd()), rel, &unix.OpenHow{
		Flags:   unix.O_RDONLY | unix.O_CLOEXEC | unix.O_NONBLOCK | unix.O_NOCTTY,
		Resolve: unix.RESOLVE_IN_ROOT | unix.RESOLVE_NO_MAGICLINKS,
	})
	if errors.Is(err, unix.ENOENT) {
		return os.Open(os.DevNull)
	}
	if err != nil {
		return nil, fmt.Errorf("/%s: %w", rel, err)
	}
	f := os.NewFile(uintptr(fd), "/"+rel)
	st, err := f.Stat()
	if err != nil || !st.Mode().IsRegular() {
		f.Close()
		return nil, fmt.Errorf("/%s is not a regular file", rel)
	}
	return f, nil
}

func hasProcMount(spec *specs.Spec) bool {
	for _, m := range spec.Mounts {
		if path.Clean(m.Destination) == "/proc" && m.Type == "proc" {
			return true
		}
	}
	return false
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
