package integration

import (
	"os"
	"slices"
	"strings"
	"testing"

	"github.com/opencontainers/runtime-spec/specs-go"

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

// fsChecks are agent-default's filesystem rules, each with the result the
// policy must give and the result without a policy. With mounted, the
// read-only tree is a read-only mount as well (how clawrun runs
// agent-default): a change there fails with EROFS, and a rename across
// the mount with EXDEV, before Landlock is asked. Without, Landlock alone
// refuses (EACCES; EXDEV for a link that would move a file to a more
// permissive place).
func fsChecks(mounted bool) []pcheck {
	const landlock, ok = "ERR EACCES", "OK"
	deny, across := landlock, landlock
	if mounted {
		deny, across = "ERR EROFS", "ERR EXDEV"
	}
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
		pc("ro-rename-out", "rename /usr/share/out.txt /tmp/out.txt", across, ok),
		pc("ro-rename-in", "rename /tmp/in.txt /usr/share/in.txt", across, ok),
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
		pc("unlisted-read", "read /srv/secret.txt", landlock, ok),
		pc("unlisted-list", "read /srv", landlock, ok),
		pc("unlisted-exec", "exec /srv/tool true", landlock, ok),
		pc("unlisted-write", "write /srv/new.txt", landlock, ok),
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
		// and only the write fails, for want of CAP_NET_ADMIN. Landlock
		// alone guards /proc; /sys becomes a read-only mount.
		pc("procsys-write", "write /proc/sys/kernel/hostname probe", landlock+" open", ok),
		pc("sys-write", "write /sys/class/net/lo/mtu 65536", "ERR EROFS open", "ERR EPERM write"),
		pc("proc-read", "read /proc/self/status", ok, ok),
	}
}

// TestPolicyFilesystem: agent-default's filesystem rules, on the
// container's own process, against the same container without a policy;
// and Landlock on its own, where the read-only tree cannot be a read-only
// mount.
func TestPolicyFilesystem(t *testing.T) {
	t.Parallel()
	policyRuntime(t)
	// agent-default with a writable directory beneath /usr: /usr cannot
	// be a read-only mount, and Landlock alone keeps it read-only.
	island := strings.Replace(presetFile(t, "agent-default"), "  read_write:\n", "  read_write:\n    - /usr/share/island\n", 1)
	for _, tc := range []struct {
		name  string
		edit  func(*specs.Spec)
		check []pcheck
		want  func(pcheck) string
	}{
		{"agent-default", withPolicy("agent-default"), fsChecks(true), wantPolicy},
		{"landlock-alone", withInline(island), fsChecks(false), wantPolicy},
		{"no-policy", func(*specs.Spec) {}, fsChecks(true), wantBase},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			r := policyRuntime(t)
			b := r.probeBundle(tc.edit, writableKernelFS, bundle.Shell(checkScript(tc.check)))
			prepFS(t, b)
			mkdirRootfs(t, b, "/usr/share/island")
			res := r.runOnce(b)
			verifyChecks(t, tc.name, res.Stdout, tc.check, tc.want)
		})
	}
}

// metadataChecks change what Landlock does not govern (modes, owners,
// extended attributes, times) on agent-default's read-only paths, which
// the read-only mounts protect (EROFS), and on its writable ones, which
// stay the agent's. The process is root with CAP_CHOWN, CAP_FOWNER and
// CAP_DAC_OVERRIDE, as Docker runs it.
func metadataChecks() []pcheck {
	const rofs, ok = "ERR EROFS", "OK"
	return []pcheck{
		pc("chmod-ro", "chmod /usr/share/meta.txt 600", rofs+" chmod", ok),
		pc("chown-ro", "chown /usr/share/owned.txt 1 1", rofs+" chown", ok),
		pc("setxattr-ro", "setxattr /usr/share/meta.txt user.probe x", rofs+" setxattr", ok),
		pc("utimes-ro", "utimes /usr/share/meta.txt", rofs+" utimensat", ok),
		pc("chmod-ro-dir", "chmod /var/lib/meta 700", rofs+" chmod", ok),
		pc("chown-ro-dir", "chown /etc 1 1", rofs+" chown", ok),
		// A mount the spec puts beneath a read-only path.
		pc("chmod-ro-mount", "chmod /etc/site.conf 600", rofs+" chmod", ok),
		pc("setxattr-ro-mount", "setxattr /etc/site.conf user.probe x", rofs+" setxattr", ok),
		// A device node the policy lists read-only.
		pc("chmod-ro-device", "chmod /dev/zero 600", rofs+" chmod", ok),
		pc("chmod-rw", "chmod /tmp/meta.txt 600", ok, ok),
		pc("chown-rw", "chown /tmp/owned.txt 1 1", ok, ok),
		pc("setxattr-rw", "setxattr /tmp/meta.txt user.probe x", ok, ok),
		pc("utimes-rw", "utimes /tmp/meta.txt", ok, ok),
		pc("chmod-rw-sandbox", "chmod /sandbox/meta.txt 600", ok, ok),
		pc("write-rw", "write /tmp/meta.txt", ok, ok),
	}
}

// TestPolicyReadOnlyMetadata: under agent-default a root agent cannot
// change the metadata of a read-only path, and can on a writable one;
// without the policy it can everywhere.
func TestPolicyReadOnlyMetadata(t *testing.T) {
	t.Parallel()
	policyRuntime(t)
	checks := metadataChecks()
	for _, tc := range []struct {
		name  string
		edits []func(*specs.Spec)
		want  func(pcheck) string
	}{
		{"agent-default", []func(*specs.Spec){withPolicy("agent-default")}, wantPolicy},
		{"no-policy", nil, wantBase},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			r := policyRuntime(t)
			site := writeTemp(t, "site.conf", "site\n")
			mount := func(s *specs.Spec) {
				s.Mounts = append(s.Mounts, specs.Mount{Destination: "/etc/site.conf", Type: "bind", Source: site, Options: []string{"rbind", "rw"}})
			}
			edits := append(slices.Clone(tc.edits), addCaps("CAP_CHOWN", "CAP_FOWNER", "CAP_DAC_OVERRIDE"), mount, bundle.Shell(checkScript(checks)))
			b := r.probeBundle(edits...)
			for _, f := range []string{"/usr/share/meta.txt", "/usr/share/owned.txt", "/tmp/meta.txt", "/tmp/owned.txt"} {
				writeRootfs(t, b, f, "metadata\n", 0o644)
			}
			writeRootfs(t, b, "/sandbox/meta.txt", "writable\n", 0o644)
			mkdirRootfs(t, b, "/var/lib/meta")
			verifyChecks(t, tc.name, r.runOnce(b).Stdout, checks, tc.want)
		})
	}
}

// TestPolicyReadOnlyMountLimits: where a read-only mount would break the
// container, the path is left to Landlock alone, as README.md says: a
// read-only directory with a writable one beneath it, or with a writable
// path that is a symlink into it, and /proc. The rest is still a read-only
// mount, and state lists the mounts.
func TestPolicyReadOnlyMountLimits(t *testing.T) {
	t.Parallel()
	r := policyRuntime(t)
	doc := `version: 1
filesystem_policy:
  read_only: [/bin, /usr, /etc, /opt, /proc]
  read_write: [/tmp, /dev/null, /usr/w, /sandbox]
`
	b := r.probeBundle(withInline(doc), addCaps("CAP_CHOWN", "CAP_FOWNER", "CAP_DAC_OVERRIDE"), bundle.Shell(sleeper))
	mkdirRootfs(t, b, "/usr/w", "/opt/work")
	if err := os.Remove(inRootfs(b, "/sandbox")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("/opt/work", inRootfs(b, "/sandbox")); err != nil {
		t.Fatal(err)
	}
	id := newID(t)
	r.runDetachedOut(id, b)
	// /sandbox is a symlink: Landlock gives it no rule (it is not
	// followed), so it keeps nothing writable and /opt is mounted too.
	if got, want := r.fullState(id).Clawrun.ReadOnlyMounts, []string{"/bin", "/etc", "/opt"}; !slices.Equal(got, want) {
		t.Errorf("state: read_only_mounts %q, want %q", got, want)
	}
	checks := []pcheck{
		pc("write-beneath", "write /usr/w/x", "OK", ""),
		pc("write-through-symlink", "write /sandbox/x", "ERR EROFS", ""),
		pc("write-usr", "write /usr/x", "ERR EACCES", ""),
		pc("write-opt", "write /opt/x", "ERR EROFS", ""),
		pc("chown-etc", "chown /etc 1 1", "ERR EROFS", ""),
		// Landlock alone: the metadata is not protected.
		pc("chmod-usr", "chmod "+probePath+" 755", "OK", ""),
	}
	res := r.ok("exec", id, "sh", "-c", checkScript(checks))
	verifyChecks(t, "limits", res.Stdout, checks, wantPolicy)
}
