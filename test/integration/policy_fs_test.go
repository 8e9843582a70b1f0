package integration

import (
	"testing"

	"github.com/clawrun/clawrun/test/bundle"
)

// prepFS lays out the files fsChecks work on: a read-only tree under
// /usr/share (agent-default lists /usr read-only), an unlisted /srv with a
// secret and a program, and files in the writable /tmp. Every check that
// changes something has a file of its own, so that the baseline (where
// they all succeed) runs them in any order.
func prepFS(t *testing.T, b string) {
	t.Helper()
	for _, f := range []string{"ro.txt", "rm.txt", "mv.txt", "out.txt", "trunc.txt"} {
		writeRootfs(t, b, "/usr/share/"+f, "read-only\n", 0o644)
	}
	mkdirRootfs(t, b, "/usr/share/rodir", "/sandbox")
	writeRootfs(t, b, "/srv/secret.txt", "secret\n", 0o600)
	installProbe(t, b, "/srv/tool", 0o755)
	for _, f := range []string{"rw.txt", "in.txt", "rwrm.txt", "rwmv.txt"} {
		writeRootfs(t, b, "/tmp/"+f, "writable\n", 0o644)
	}
}

// fsChecks are agent-default's filesystem rules, each with the result
// Landlock must give (EACCES; EXDEV for a link that would move a file to
// a more permissive place) and the result without a policy.
func fsChecks() []pcheck {
	const deny, ok = "ERR EACCES", "OK"
	return []pcheck{
		// Nothing under a read_only path may change.
		pc("ro-overwrite", "write /usr/share/ro.txt", deny+" open", ok),
		pc("ro-create-by-open", "write /usr/share/new.txt", deny+" open", ok),
		pc("ro-create-excl", "create /usr/share/new2.txt", deny, ok),
		pc("ro-mkdir", "mkdir /usr/share/newdir", deny, ok),
		pc("ro-mkfifo", "mkfifo /usr/share/fifo", deny, ok),
		pc("ro-unlink", "remove /usr/share/rm.txt", deny, ok),
		pc("ro-rmdir", "remove /usr/share/rodir", deny, ok),
		pc("ro-rename", "rename /usr/share/mv.txt /usr/share/mv2.txt", deny, ok),
		pc("ro-rename-out", "rename /usr/share/out.txt /tmp/out.txt", deny, ok),
		pc("ro-rename-in", "rename /tmp/in.txt /usr/share/in.txt", deny, ok),
		pc("ro-truncate", "truncate /usr/share/trunc.txt", deny, ok),
		pc("ro-hardlink-into", "link /tmp/rw.txt /usr/share/hardlink", deny, ok),
		pc("ro-symlink-into", "symlink /tmp/rw.txt /usr/share/symlink", deny, ok),
		// A second name in a writable directory would make a read-only
		// file writable: Landlock refuses the reparenting.
		pc("ro-hardlink-out", "link /usr/share/ro.txt /tmp/ro-alias", "ERR EXDEV", ok),
		// ... but it can be read, listed and executed.
		pc("ro-read", "read /usr/share/ro.txt", ok, ok),
		pc("ro-list", "read /usr/share", ok, ok),
		pc("ro-exec", "exec "+probePath+" true", ok, ok),
		// An unlisted path cannot be used at all.
		pc("unlisted-read", "read /srv/secret.txt", deny, ok),
		pc("unlisted-list", "read /srv", deny, ok),
		pc("unlisted-exec", "exec /srv/tool true", deny, ok),
		pc("unlisted-write", "write /srv/new.txt", deny, ok),
		// A read_write path allows everything.
		pc("rw-overwrite", "write /tmp/rw.txt", ok, ok),
		pc("rw-create", "create /tmp/new.txt", ok, ok),
		pc("rw-sandbox", "write /sandbox/new.txt", ok, ok),
		pc("rw-mkdir", "mkdir /tmp/newdir", ok, ok),
		pc("rw-mkfifo", "mkfifo /tmp/fifo", ok, ok),
		pc("rw-rename", "rename /tmp/rwmv.txt /tmp/rwmv2.txt", ok, ok),
		pc("rw-unlink", "remove /tmp/rwrm.txt", ok, ok),
		pc("rw-truncate", "truncate /tmp/rw.txt", ok, ok),
		pc("rw-hardlink", "link /tmp/rw.txt /tmp/rw-hardlink", ok, ok),
		pc("rw-symlink", "symlink /tmp/rw.txt /tmp/rw-symlink", ok, ok),
		pc("rw-devnull", "write /dev/null", ok, ok),
		// /proc and /sys are read_only in agent-default. The mounts are
		// writable here (writableKernelFS), so that the policy is what
		// refuses: without it, /proc/sys/kernel/hostname (the container's
		// own UTS namespace) is written, and /sys/class/net/lo/mtu opens
		// and only the write fails, for want of CAP_NET_ADMIN.
		pc("procsys-write", "write /proc/sys/kernel/hostname probe", deny+" open", ok),
		pc("sys-write", "write /sys/class/net/lo/mtu 65536", deny+" open", "ERR EPERM write"),
		pc("proc-read", "read /proc/self/status", ok, ok),
	}
}

// TestPolicyFilesystem: agent-default's Landlock rules, on the container's
// own process, against the same container without a policy.
func TestPolicyFilesystem(t *testing.T) {
	t.Parallel()
	policyRuntime(t)
	checks := fsChecks()
	script := checkScript(checks)

	t.Run("agent-default", func(t *testing.T) {
		t.Parallel()
		r := policyRuntime(t)
		b := r.probeBundle(withPolicy("agent-default"), writableKernelFS, bundle.Shell(script))
		prepFS(t, b)
		res := r.runOnce(b)
		verifyChecks(t, "agent-default", res.Stdout, checks, wantPolicy)
	})

	t.Run("no-policy", func(t *testing.T) {
		t.Parallel()
		r := policyRuntime(t)
		b := r.probeBundle(writableKernelFS, bundle.Shell(script))
		prepFS(t, b)
		res := r.runOnce(b)
		verifyChecks(t, "no policy", res.Stdout, checks, wantBase)
	})
}
