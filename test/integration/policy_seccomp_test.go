package integration

import (
	"errors"
	"os"
	"strconv"
	"strings"
	"testing"

	"github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/clawrun/clawrun/test/bundle"
)

// bgSleep starts a sibling process for the probe and leaves its pid in $p;
// its output goes to /dev/null, or the $(...) of checkScript would wait
// for it.
const bgSleep = "sleep 30 </dev/null >/dev/null 2>&1 & p=$!; "

// seccompChecks are the agent seccomp profile's rules (EPERM; ENOSYS for
// clone3) and the dropped CAP_NET_RAW, with the results without a policy.
// The spec grants CAP_NET_RAW, so that the baseline can open raw and
// packet sockets. mount, fsopen and bpf need CAP_SYS_ADMIN, which no
// confined container may hold: sysAdminChecks has their baseline.
func seccompChecks() []pcheck {
	const eperm, ok = "ERR EPERM", "OK"
	return []pcheck{
		{name: "ptrace-sibling", cmd: bgSleep + "probe ptrace $p; kill $p", policy: eperm + " ptrace", base: ok},
		{name: "pidfd-open", cmd: "probe pidfd-open $$", policy: eperm + " pidfd_open", base: ok},
		pc("memfd-exec", "memfd-exec", eperm+" memfd_create", "OK ran from a memfd"),
		pc("execveat-empty-path", "execveat "+probePath, eperm+" execveat", "OK ran through execveat"),
		pc("unshare-user", "unshare-user", eperm+" clone(CLONE_NEWUSER)", "OK in a new user namespace"),
		pc("io-uring", "io-uring", eperm+" io_uring_setup", ok),
		pc("userfaultfd", "userfaultfd", eperm+" userfaultfd", ok),
		pc("keyctl", "keyctl", eperm+" keyctl", "OK session keyring"),
		pc("clone3", "clone3", "ERR ENOSYS clone3", "OK clone3 is available"),
		pc("socket-packet", "socket packet", eperm, ok),
		// The baselines depend on the host's kernel modules.
		pc("socket-vsock", "socket vsock", eperm, "OK|ERR EAFNOSUPPORT"),
		pc("socket-netlink-audit", "socket netlink-audit", eperm, "OK|ERR EPROTONOSUPPORT"),
		pc("socket-netlink-route", "socket netlink-route", ok, ok),
		pc("socket-inet", "socket inet", ok, ok),
		// Not seccomp: CAP_NET_RAW is dropped.
		pc("socket-raw", "socket raw", eperm, ok),
		pc("mount", "mount", eperm+" mount", ""),
		pc("fsopen", "fsopen", eperm+" fsopen", ""),
		pc("bpf", "bpf", eperm+" bpf", ""),
	}
}

// yamaPtraceScope is Yama's ptrace restriction: 0 lets a process trace
// any process it may signal, 1 only its descendants, 2 needs
// CAP_SYS_PTRACE, 3 forbids ptrace until reboot. Without the file the
// kernel has no Yama, and only the usual permission checks apply.
const yamaPtraceScope = "/proc/sys/kernel/yama/ptrace_scope"

// allowPtraceOfNonDescendants sets ptrace_scope to 0 for the test and puts
// the host's value back afterwards: a baseline that ptraces a sibling
// measures the container, not the host's Yama setting.
func allowPtraceOfNonDescendants(t *testing.T) {
	t.Helper()
	data, err := os.ReadFile(yamaPtraceScope)
	if errors.Is(err, os.ErrNotExist) {
		t.Log("the kernel has no Yama: ptrace needs only the usual permissions")
		return
	}
	if err != nil {
		t.Fatal(err)
	}
	old := strings.TrimSpace(string(data))
	switch old {
	case "0":
		return
	case "3":
		t.Fatalf("%s is 3: ptrace is off until reboot, and this test's baseline needs it (boot with kernel.yama.ptrace_scope below 3)", yamaPtraceScope)
	}
	if err := os.WriteFile(yamaPtraceScope, []byte("0"), 0o644); err != nil {
		t.Fatalf("%s is %s and this test's baseline needs 0: %v", yamaPtraceScope, old, err)
	}
	t.Logf("%s was %s: 0 for this test", yamaPtraceScope, old)
	t.Cleanup(func() {
		if err := os.WriteFile(yamaPtraceScope, []byte(old), 0o644); err != nil {
			t.Errorf("restoring %s to %s: %v", yamaPtraceScope, old, err)
		}
	})
}

// sysAdminChecks are the calls whose baseline needs CAP_SYS_ADMIN.
func sysAdminChecks() []pcheck {
	return []pcheck{
		pc("mount", "mount", "", "OK"),
		pc("fsopen", "fsopen", "", "OK"),
		pc("bpf", "bpf", "", "OK"),
	}
}

// TestPolicySeccomp: the agent seccomp profile on the container's process,
// against the same container without a policy.
func TestPolicySeccomp(t *testing.T) {
	t.Parallel()
	policyRuntime(t)
	checks := seccompChecks()

	t.Run("agent-default", func(t *testing.T) {
		t.Parallel()
		r := policyRuntime(t)
		b := r.probeBundle(withPolicy("agent-default"), addCaps("CAP_NET_RAW"), bundle.Shell(checkScript(checks)))
		verifyChecks(t, "agent-default", r.runOnce(b).Stdout, checks, wantPolicy)
	})

	t.Run("no-policy", func(t *testing.T) {
		t.Parallel()
		r := policyRuntime(t)
		allowPtraceOfNonDescendants(t) // ptrace-sibling's baseline
		b := r.probeBundle(addCaps("CAP_NET_RAW"), bundle.Shell(checkScript(checks)))
		verifyChecks(t, "no policy", r.runOnce(b).Stdout, checks, wantBase)
	})

	t.Run("no-policy-sys-admin", func(t *testing.T) {
		t.Parallel()
		r := policyRuntime(t)
		checks := sysAdminChecks()
		b := r.probeBundle(addCaps("CAP_SYS_ADMIN"), bundle.Shell(checkScript(checks)))
		verifyChecks(t, "no policy, CAP_SYS_ADMIN", r.runOnce(b).Stdout, checks, wantBase)
	})

	// clawrun.seccomp: profile none drops the agent profile, and
	// deny_syscalls denies more; the Landlock layer is unaffected.
	t.Run("profile-none-deny-syscalls", func(t *testing.T) {
		t.Parallel()
		r := policyRuntime(t)
		checks := []pcheck{
			pc("memfd-exec", "memfd-exec", "OK ran from a memfd", ""),
			pc("io-uring", "io-uring", "OK", ""),
			pc("denied-mkdir", "mkdir /tmp/d", "ERR EPERM mkdir", ""),
			pc("landlock-still-on", "write /sandbox/x", "ERR EACCES", ""),
		}
		doc := `version: 1
filesystem_policy:
  read_only: [/bin, /usr, /proc]
  read_write: [/tmp, /dev/null]
clawrun:
  seccomp:
    profile: none
    deny_syscalls: [mkdir, mkdirat]
`
		b := r.probeBundle(withInline(doc), bundle.Shell(checkScript(checks)))
		verifyChecks(t, "profile none + deny_syscalls", r.runOnce(b).Stdout, checks, wantPolicy)
	})
}

// agentOnlyDoc is the agent seccomp profile with no file or network rules:
// nothing but the profile can refuse a call.
const agentOnlyDoc = `version: 1
clawrun:
  seccomp: {profile: agent}
`

// deniedFamilies is what socket-sweep prints under the agent profile:
// every family from 0 to 63 but AF_UNIX (1), AF_INET (2), AF_INET6 (10)
// and AF_NETLINK (16; protocol 0 is NETLINK_ROUTE).
func deniedFamilies() string {
	var s []string
	for f := 0; f <= 63; f++ {
		if f != 1 && f != 2 && f != 10 && f != 16 {
			s = append(s, strconv.Itoa(f))
		}
	}
	return "OK eperm=" + strings.Join(s, ",")
}

// profileChecks are the agent profile's argument rules: the execution
// domains Docker's default profile allows, and the socket families agents
// use. The kernel here may lack a family (EAFNOSUPPORT without a policy);
// the profile answers EPERM before the kernel looks.
func profileChecks() []pcheck {
	const eperm, ok = "ERR EPERM", "OK"
	const maybe = "OK|ERR EAFNOSUPPORT"
	return []pcheck{
		pc("read-implies-exec", "personality 0x400000", eperm+" personality", ok),
		pc("addr-no-randomize", "personality 0x40000", eperm+" personality", ok),
		// The kernel reads an int: the upper half of the register must not
		// smuggle PER_LINUX past the filter, or anything else.
		pc("persona-high-bits", "personality 0x100000000", eperm+" personality", ok),
		pc("persona-linux", "personality 0", ok, ok),
		pc("persona-linux32", "personality 0x8", ok, ok),
		pc("persona-uname26", "personality 0x20000", ok, ok),
		pc("persona-linux32-uname26", "personality 0x20008", ok, ok),
		pc("persona-query", "personality 0xffffffff", ok, ok),
		pc("socket-alg", "socket alg", eperm, maybe),
		pc("socket-tipc", "socket tipc", eperm, maybe),
		pc("socket-rds", "socket rds", eperm, maybe),
		pc("socket-can", "socket can", eperm, maybe),
		pc("socketpair-tipc", "socketpair tipc", eperm, "OK|ERR EAFNOSUPPORT|ERR EOPNOTSUPP"),
		pc("socket-unix", "socket unix", ok, ok),
		pc("socketpair-unix", "socketpair unix", ok, ok),
		pc("socket-inet", "socket inet", ok, ok),
		pc("socket-inet6", "socket inet6", maybe, maybe),
		pc("socket-netlink-route", "socket netlink-route", ok, ok),
		pc("socket-netlink-audit", "socket netlink-audit", eperm, "OK|ERR EPROTONOSUPPORT"),
		pc("socket-families", "socket-sweep socket", deniedFamilies(), "OK eperm=none"),
		pc("socketpair-families", "socket-sweep socketpair", deniedFamilies(), "OK eperm=none"),
	}
}

// TestPolicySeccompProfileAlone: the agent profile's argument rules, with
// no Landlock layer and a spec that keeps its capabilities, against the
// same container without a policy (where the raw and packet families
// CAP_NET_RAW and CAP_NET_ADMIN gate are open, so that every EPERM of the
// sweep is the profile's).
func TestPolicySeccompProfileAlone(t *testing.T) {
	t.Parallel()
	policyRuntime(t)
	checks := profileChecks()

	t.Run("agent-profile", func(t *testing.T) {
		t.Parallel()
		r := policyRuntime(t)
		b := r.probeBundle(withInline(agentOnlyDoc), addCaps("CAP_NET_RAW"), bundle.Shell(checkScript(checks)))
		verifyChecks(t, "agent profile", r.runOnce(b).Stdout, checks, wantPolicy)
	})

	t.Run("no-policy", func(t *testing.T) {
		t.Parallel()
		r := policyRuntime(t)
		b := r.probeBundle(addCaps("CAP_NET_RAW", "CAP_NET_ADMIN"), bundle.Shell(checkScript(checks)))
		verifyChecks(t, "no policy", r.runOnce(b).Stdout, checks, wantBase)
	})
}

// TestPolicySeccompFloor: the floor's and the container's seccomp settings
// add up. The floor (--policy FILE) keeps the agent profile and denies
// mkdir; the container's policy asks for no profile and denies symlink.
// Each alone denies what it lists and nothing the other lists; together
// both are denied, and the container's "profile: none" does not take the
// floor's profile away. mkfifo, which neither denies, works throughout.
func TestPolicySeccompFloor(t *testing.T) {
	t.Parallel()
	policyRuntime(t)
	floor := writeTemp(t, "floor.yaml", `version: 1
clawrun:
  seccomp:
    profile: agent
    deny_syscalls: [mkdir, mkdirat]
`)
	const container = `version: 1
clawrun:
  seccomp:
    profile: none
    deny_syscalls: [symlink, symlinkat]
`
	const eperm, ok = "ERR EPERM", "OK"
	checks := func(mkdir, symlink, memfd string) []pcheck {
		return []pcheck{
			pc("mkdir", "mkdir /tmp/d", mkdir, ""),
			pc("symlink", "symlink /tmp /tmp/l", symlink, ""),
			pc("agent-profile", "memfd-exec", memfd, ""),
			pc("neither-denies", "mkfifo /tmp/f", ok, ""),
		}
	}

	for _, tc := range []struct {
		name    string
		globals []string
		edits   []func(*specs.Spec)
		checks  []pcheck
	}{
		{"floor-only", []string{"--policy", floor}, nil, checks(eperm+" mkdir", ok, eperm+" memfd_create")},
		{"container-only", nil, []func(*specs.Spec){withInline(container)}, checks(ok, eperm+" symlink", "OK ran from a memfd")},
		{"floor-and-container", []string{"--policy", floor}, []func(*specs.Spec){withInline(container)},
			checks(eperm+" mkdir", eperm+" symlink", eperm+" memfd_create")},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			r := policyRuntime(t)
			b := r.probeBundle(append(tc.edits, bundle.Shell(checkScript(tc.checks)))...)
			verifyChecks(t, tc.name, r.runOnce(b, tc.globals...).Stdout, tc.checks, wantPolicy)
		})
	}
}

// specSeccomp is a container's own seccomp profile (linux.seccomp), as an
// image or an orchestrator sets it: everything allowed but mkdir, refused
// with EDOM, an errno nothing else in the container returns for it.
func specSeccomp(s *specs.Spec) {
	edom := uint(unix.EDOM)
	s.Linux.Seccomp = &specs.LinuxSeccomp{
		DefaultAction: specs.ActAllow,
		Syscalls: []specs.LinuxSyscall{{
			Names:    []string{"mkdir", "mkdirat"},
			Action:   specs.ActErrno,
			ErrnoRet: &edom,
		}},
	}
}

// TestPolicySeccompStacked: the agent profile is stacked on the spec's own
// profile, not put in its place. With both, a call only the spec's profile
// denies (mkdir) keeps the spec's errno, a call only the agent profile
// denies (memfd_create) is refused with EPERM, and a call both allow
// works. Each profile alone shows which one refuses what.
func TestPolicySeccompStacked(t *testing.T) {
	t.Parallel()
	policyRuntime(t)
	checks := func(mkdir, memfd string) []pcheck {
		return []pcheck{
			pc("spec-profile-denies", "mkdir /tmp/d$$", mkdir, ""),
			pc("agent-profile-denies", "memfd-exec", memfd, ""),
			pc("both-allow-write", "write /tmp/x", "OK", ""),
			pc("both-allow-socket", "socket inet", "OK", ""),
		}
	}
	const edom, memfdDenied, memfdOK = "ERR EDOM mkdir", "ERR EPERM memfd_create", "OK ran from a memfd"

	for _, tc := range []struct {
		name   string
		edits  []func(*specs.Spec)
		checks []pcheck
	}{
		{"spec-and-agent-profile", []func(*specs.Spec){specSeccomp, withInline(agentOnlyDoc)}, checks(edom, memfdDenied)},
		{"spec-profile-only", []func(*specs.Spec){specSeccomp}, checks(edom, memfdOK)},
		{"agent-profile-only", []func(*specs.Spec){withInline(agentOnlyDoc)}, checks("OK", memfdDenied)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			r := policyRuntime(t)
			b := r.probeBundle(append(tc.edits, bundle.Shell(checkScript(tc.checks)+sleeper))...)
			id := newID(t)
			out := r.runReady(id, b, "started")
			verifyChecks(t, tc.name+" (init)", readFile(out), tc.checks, wantPolicy)
			res := r.ok("exec", id, "sh", "-c", checkScript(tc.checks))
			verifyChecks(t, tc.name+" (exec)", res.Stdout, tc.checks, wantPolicy)
		})
	}
}
