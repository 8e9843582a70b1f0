// Package confinespec rewrites an OCI spec to run its process under a
// compiled policy (a policy.Plan): through clawrun's in-container
// launcher, with no_new_privs, without the capabilities that would let it
// escape, as the policy's user, with the plan's read-only paths made
// read-only mounts.
//
// It does no I/O: what the rewrite needs from outside the spec and the
// plan (the kernel's Landlock ABI, the user resolved in the image's
// /etc/passwd, how paths resolve in the root filesystem) the caller reads
// and passes in Inputs. Every error names the field at fault.
package confinespec

import (
	"errors"
	"fmt"
	"path"
	"slices"
	"strings"

	"github.com/opencontainers/runc/libcontainer/configs"
	"github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/clawrun/clawrun/landlock"
	"github.com/clawrun/clawrun/landlock/launcher"
	"github.com/clawrun/clawrun/runtime/policy"
	"github.com/clawrun/clawrun/seccomp"
)

// RefusedCaps are the capabilities a confined container may not hold:
// each one is a way around Landlock, seccomp or the egress filter. They
// are refused, never silently removed, so that nobody believes a
// privileged agent is confined.
var RefusedCaps = []string{
	"CAP_SYS_ADMIN", "CAP_SYS_PTRACE", "CAP_SYS_MODULE", "CAP_DAC_READ_SEARCH",
	"CAP_NET_ADMIN", "CAP_BPF", "CAP_PERFMON",
}

// DroppedCaps are removed from every set: Docker grants NET_RAW by
// default, and raw sockets bypass any TCP-level filter.
var DroppedCaps = []string{"CAP_NET_RAW"}

// Inputs are what the rewrite needs besides the spec and the plan, read
// by the caller.
type Inputs struct {
	// LandlockABI is the kernel's Landlock ABI version (0: no Landlock).
	LandlockABI int
	// User is the plan's run_as_user/run_as_group resolved in the image
	// (see RunAsUser); nil keeps the process's own user.
	User *specs.User
	// Resolve maps a path to the one it names in the container, symlinks
	// followed; nil takes every path as written.
	Resolve func(string) string
}

// Confined is what Spec did: what the launcher enforces, and what the
// container's state reports.
type Confined struct {
	Launch Launch
	// Command is the process's own command, before the launcher.
	Command []string
	// DroppedCaps are the capabilities taken from the process (nil: none
	// were there).
	DroppedCaps []string
	// ReadOnlyMounts are the plan's read-only paths made read-only mounts.
	ReadOnlyMounts []string
}

// Spec rewrites spec in place to run its process under plan. On error the
// spec must not be used.
func Spec(spec *specs.Spec, plan *policy.Plan, in Inputs) (*Confined, error) {
	if spec.Process == nil {
		return nil, errors.New("policy: process: the spec has no process to confine")
	}
	if len(spec.Process.Args) == 0 {
		return nil, errors.New("policy: process.args: the spec has no command to confine")
	}
	if !hasProcMount(spec) {
		return nil, errors.New("policy: mounts: the container needs a /proc mount (clawrun's launcher runs from /proc/self)")
	}
	launch, err := LaunchFor(plan, in.LandlockABI)
	if err != nil {
		return nil, err
	}
	c := &Confined{Launch: launch, Command: slices.Clone(spec.Process.Args)}
	if c.DroppedCaps, err = Process(spec.Process, in.User); err != nil {
		return nil, err
	}
	resolve := in.Resolve
	if resolve == nil {
		resolve = path.Clean
	}
	c.ReadOnlyMounts = readOnlyMounts(plan.Layers, spec, resolve)
	addReadonlyPaths(spec, c.ReadOnlyMounts)
	return c, nil
}

// Process rewrites p (a container's init, or a process exec'd into it)
// to run through the launcher, with no_new_privs, without DroppedCaps, as
// user when it is set. A process holding one of RefusedCaps is refused.
// It returns DroppedCaps if it took any of them away.
func Process(p *specs.Process, user *specs.User) (dropped []string, err error) {
	if err := refuseCaps(p.Capabilities); err != nil {
		return nil, err
	}
	if dropCaps(p.Capabilities) {
		dropped = slices.Clone(DroppedCaps)
	}
	p.NoNewPrivileges = true
	if user != nil {
		// Resolved once, at create: an exec'd process gets the same ids
		// whatever the container has done to its /etc since.
		p.User = *user
	}
	p.Args = launcher.Command(p.Args)
	return dropped, nil
}

// capSet is one set of a process's capabilities and its name in the spec.
type capSet struct {
	field string
	names *[]string
}

func capSets(caps *specs.LinuxCapabilities) []capSet {
	return []capSet{
		{"process.capabilities.bounding", &caps.Bounding},
		{"process.capabilities.effective", &caps.Effective},
		{"process.capabilities.permitted", &caps.Permitted},
		{"process.capabilities.inheritable", &caps.Inheritable},
		{"process.capabilities.ambient", &caps.Ambient},
	}
}

// refuseCaps fails on the first of RefusedCaps that caps hold.
func refuseCaps(caps *specs.LinuxCapabilities) error {
	if caps == nil {
		return nil
	}
	for _, set := range capSets(caps) {
		for _, name := range *set.names {
			if c := normalizeCap(name); slices.Contains(RefusedCaps, c) {
				return fmt.Errorf("policy: %s holds %s, which would let it escape the policy; a confined container cannot be privileged", set.field, c)
			}
		}
	}
	return nil
}

// dropCaps removes DroppedCaps from every set, and says whether any was
// there.
func dropCaps(caps *specs.LinuxCapabilities) bool {
	if caps == nil {
		return false
	}
	dropped := false
	for _, set := range capSets(caps) {
		before := len(*set.names)
		*set.names = slices.DeleteFunc(*set.names, func(n string) bool { return slices.Contains(DroppedCaps, normalizeCap(n)) })
		dropped = dropped || len(*set.names) != before
	}
	return dropped
}

// normalizeCap spells a capability as the kernel's headers do
// ("net_raw" and "NET_RAW" are CAP_NET_RAW).
func normalizeCap(name string) string {
	name = strings.ToUpper(name)
	if !strings.HasPrefix(name, "CAP_") {
		name = "CAP_" + name
	}
	return name
}

// Launch is what the in-container launcher enforces, as the runtime keeps
// it in the container's state: the seccomp profile as a profile, compiled
// into the launcher's spec for each process started.
type Launch struct {
	Layers []launcher.Layer `json:"layers"`
	Strict bool             `json:"strict"`
	// Seccomp is stacked on the spec's own filter; nil for none.
	Seccomp *configs.Seccomp `json:"seccomp,omitempty"`
}

// LaunchFor turns a plan into what the in-container launcher enforces, on
// a kernel of Landlock ABI landlockABI.
func LaunchFor(plan *policy.Plan, landlockABI int) (Launch, error) {
	spec := Launch{Strict: plan.Compatibility == policy.HardRequirement}
	for _, l := range plan.Layers {
		spec.Layers = append(spec.Layers, launcher.Layer{Source: l.Source, Rules: landlock.Layer{
			ReadOnly: l.ReadOnly, ReadWrite: l.ReadWrite,
			ScopeSignals: l.ScopeSignals, ScopeAbstractUnix: l.ScopeAbstractUnix,
			TCPBind: l.TCPBind, TCPConnect: l.TCPConnect,
		}})
	}
	if spec.Strict && len(spec.Layers) > 0 && landlockABI == 0 {
		return spec, errors.New("policy: landlock.compatibility is hard_requirement but this kernel has no Landlock")
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

// denyOnly is a profile that refuses names (EPERM) and allows the rest.
func denyOnly(names []string) *configs.Seccomp {
	eperm := uint(unix.EPERM)
	s := &configs.Seccomp{DefaultAction: configs.Allow}
	for _, n := range names {
		s.Syscalls = append(s.Syscalls, &configs.Syscall{Name: n, Action: configs.Errno, ErrnoRet: &eperm})
	}
	return s
}

func hasProcMount(spec *specs.Spec) bool {
	for _, m := range spec.Mounts {
		if path.Clean(m.Destination) == "/proc" && m.Type == "proc" {
			return true
		}
	}
	return false
}
