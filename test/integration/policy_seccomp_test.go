package integration

import (
	"testing"

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
			pc("landlock-still-on", "write /usr/x", "ERR EACCES", ""),
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
