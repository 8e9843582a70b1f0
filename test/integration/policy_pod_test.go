package integration

import (
	"slices"
	"testing"

	"github.com/opencontainers/runtime-spec/specs-go"

	"github.com/clawrun/clawrun/test/bundle"
)

// The annotations the CRI sets on a pod's sandbox (pause) container.
const (
	annCRIType      = "io.kubernetes.cri.container-type"
	annCRISandboxID = "io.kubernetes.cri.sandbox-id"
	annCRIOType     = "io.kubernetes.cri-o.ContainerType"
	annCRIOSandbox  = "io.kubernetes.cri-o.SandboxID"
)

// containerdSandbox annotates a spec as containerd's CRI annotates the
// sandbox it creates with container id id.
func containerdSandbox(id string) func(*specs.Spec) {
	return annotate(annCRIType, "sandbox", annCRISandboxID, id,
		"io.kubernetes.cri.sandbox-name", "agent-pod", "io.kubernetes.cri.sandbox-namespace", "default")
}

// containerdContainer annotates a spec as an application container of the
// pod whose sandbox is sandboxID.
func containerdContainer(sandboxID string) func(*specs.Spec) {
	return annotate(annCRIType, "container", annCRISandboxID, sandboxID,
		"io.kubernetes.cri.container-name", "agent")
}

// floorChecks say whether agent-default, as the runtime's floor, confines
// a container: its files (Landlock, and the read-only mounts of its
// read_only paths) and the agent seccomp profile.
func floorChecks() []pcheck {
	return []pcheck{
		pc("write-usr-bin", "write /usr/bin/x", "ERR EROFS", ""),
		pc("read-unlisted", "read /srv/secret", "ERR EACCES", ""),
		pc("memfd", "memfd-exec", "ERR EPERM memfd_create", ""),
		{name: "seccomp", cmd: "grep Seccomp: /proc/self/status", policy: "Seccomp:\t2"},
		pc("write-tmp", "write /tmp/x", "OK", ""),
	}
}

// TestPolicyFloorSandboxClaim: the runtime's floor (--policy agent-default)
// confines a container whatever CRI annotations it carries. Any front-end
// that passes user annotations (docker --annotation, nerdctl, ctr) can
// make a container claim to be a pod's sandbox; such a container keeps
// the floor, with or without a sandbox id that matches its own.
func TestPolicyFloorSandboxClaim(t *testing.T) {
	t.Parallel()
	policyRuntime(t)
	checks := floorChecks()
	for _, tc := range []struct {
		name        string
		annotations func(id string) []string
	}{
		{"containerd type only", func(string) []string { return []string{annCRIType, "sandbox"} }},
		{"containerd with its own id", func(id string) []string { return []string{annCRIType, "sandbox", annCRISandboxID, id} }},
		{"containerd with another id", func(string) []string { return []string{annCRIType, "sandbox", annCRISandboxID, "another"} }},
		{"cri-o with its own id", func(id string) []string { return []string{annCRIOType, "sandbox", annCRIOSandbox, id} }},
		// The container's own policy is dropped for a sandbox; the floor
		// is not.
		{"containerd with its own id and a wide policy", func(id string) []string {
			return []string{annCRIType, "sandbox", annCRISandboxID, id, annInline, wideDoc}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			r := policyRuntime(t)
			id := newID(t)
			b := r.probeBundle(annotate(tc.annotations(id)...), bundle.Shell(checkScript(checks)))
			writeRootfs(t, b, "/srv/secret", "secret\n", 0o600)
			res := r.runOnceAs(id, b, "--policy", "agent-default")
			verifyChecks(t, tc.name, res.Stdout, checks, wantPolicy)
		})
	}
}

// TestPolicyFloorPodSandbox: a pod's sandbox, annotated as containerd
// annotates it, under a runtime whose floor is agent-default. Its command
// (/pause, a path the floor does not list) starts; it carries the pod's
// network policy, whose filter decides the pod's traffic; the floor's
// file rules and seccomp profile apply to it; of the pod's policy it
// keeps only the network policy (its file rules are each application
// container's).
func TestPolicyFloorPodSandbox(t *testing.T) {
	r, fn := egressRuntime(t)
	globals := append(fn.globals(), "--policy", "agent-default")
	// The pod's policy: its network policy, and file rules that leave out
	// /sandbox, which the floor lets a container write.
	podDoc := `version: 1
filesystem_policy:
  read_only: [/bin, /usr, /etc, /proc]
  read_write: [/tmp, /dev/null]
network_policies:
  web:
    endpoints:
      - {host: allowed.test, port: 443}
`
	rn := fn.routedNet(t)
	pause := func(s *specs.Spec) { s.Process.Args = []string{"/pause", "pause"} }
	sandboxID := newID(t)
	sb := fn.egressBundle(r, withInline(podDoc), containerdSandbox(sandboxID), rn.inNet, pause)
	installProbe(t, sb, "/pause", 0o755)
	installProbe(t, sb, "/pause-sibling", 0o755)
	sandbox := fn.startAs(r, sandboxID, sb, globals...)

	c := r.fullState(sandboxID).Clawrun
	var layers []string
	for _, l := range c.Landlock.Layers {
		layers = append(layers, l.Source)
	}
	if !slices.Equal(layers, []string{"agent-default"}) || !c.Seccomp.Loaded {
		t.Errorf("the sandbox: want the floor's Landlock layer only and its seccomp profile; got %s", c)
	}
	sandbox.checkAll([]pcheck{
		pc("write-usr-bin", "write /usr/bin/x", "ERR EROFS", ""),
		pc("memfd", "memfd-exec", "ERR EPERM memfd_create", ""),
		{name: "seccomp", cmd: "grep Seccomp: /proc/self/status", policy: "Seccomp:\t2"},
		// The floor allows /sandbox; the pod's own file rules, which do
		// not, are not the sandbox's.
		pc("write-sandbox", "write /sandbox/x", "OK", ""),
		// Its command may run; nothing else the floor does not list may.
		pc("exec-pause", "exec /pause true", "OK", ""),
		pc("exec-sibling", "exec /pause-sibling true", "ERR EACCES", ""),
	})

	// An application container of the pod: the pod's filter decides its
	// traffic; its own file rules and the floor's apply.
	app := fn.startAs(r, newID(t), fn.egressBundle(r, withInline(podDoc), containerdContainer(sandboxID), rn.inNet), globals...)
	app.log, app.filteredBy = sandbox.log, sandbox.id
	app.checks(
		fn.allowedTLS("allowed TLS from the pod's container"),
		fn.deniedSNI("denied SNI from the pod's container", fn.ip(hAllowed), "denied.test"),
	)
	app.checkAll([]pcheck{
		pc("write-sandbox", "write /sandbox/x", "ERR EACCES", ""),
		pc("write-usr-bin", "write /usr/bin/x", "ERR EROFS", ""),
	})
}

// checkAll runs checks in the container with exec and verifies them.
func (c *ectr) checkAll(checks []pcheck) {
	c.t.Helper()
	res := c.r.ok(append(c.fn.globals(), "exec", c.id, "sh", "-c", checkScript(checks))...)
	verifyChecks(c.t, c.id, res.Stdout, checks, wantPolicy)
}
