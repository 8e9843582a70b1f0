package integration

import (
	"os"
	"strings"
	"testing"
	"time"

	"github.com/opencontainers/runtime-spec/specs-go"

	"github.com/clawrun/clawrun/test/bundle"
)

// symlinkRootfs replaces path (as the container sees it) in the rootfs
// with a symlink to target, as an image can.
func symlinkRootfs(t *testing.T, bundleDir, path, target string) {
	t.Helper()
	p := inRootfs(bundleDir, path)
	if err := os.RemoveAll(p); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(target, p); err != nil {
		t.Fatal(err)
	}
}

// skipOf returns the landlock.skipped entry of path.
func skipOf(c *confState, path string) (skippedPath, bool) {
	for _, s := range c.Landlock.Skipped {
		if s.Path == path {
			return s, true
		}
	}
	return skippedPath{}, false
}

// escapeChecks are what a symlinked policy path must not open up: the
// system's programs stay read-only, and /run (where secrets are mounted)
// stays unreadable.
func escapeChecks() []pcheck {
	return []pcheck{
		// /usr is a read-only mount too (EROFS); the paths below have no
		// rule in the policy: only Landlock refuses them.
		pc("write-usr-bin", "write /usr/bin/planted", "ERR EACCES|ERR EROFS", "OK"),
		pc("write-secret", "write /run/secrets/planted", "ERR EACCES", "OK"),
		pc("read-secret", "read /run/secrets/token", "ERR EACCES", "OK"),
	}
}

// startChecked runs script, then the sleeper, in a detached container and
// returns what script printed once the sleeper has started.
func (r *rtest) startChecked(id, b string, globals ...string) string {
	r.t.Helper()
	_, out := r.runDetachedOut(id, b, globals...)
	waitFor(r.t, 10*time.Second, "the init's checks", func() bool { return strings.Contains(readFile(out), "started") })
	return readFile(out)
}

// TestPolicySymlinkedPaths: a policy path that is, or passes through, a
// symlink of the image gets no rule of its own; the administrator's floor
// cannot be widened by an image that points /tmp or /sandbox at /. Such a
// path is reported and makes the status partial (best_effort) or fails
// the start (hard_requirement), unless other rules of the same layer
// already grant its target, as for the /bin -> usr/bin of merged-/usr
// images.
func TestPolicySymlinkedPaths(t *testing.T) {
	t.Parallel()
	policyRuntime(t)
	floor := []string{"--policy", "agent-default"}

	for _, tc := range []struct {
		name  string
		links [][2]string // path, target
		// skipped: paths the state must list as weakening the policy,
		// each with a reason naming the symlink.
		skipped map[string]string
	}{
		{"to-root", [][2]string{{"/tmp", "/"}, {"/sandbox", "/"}},
			map[string]string{"/tmp": "/tmp", "/sandbox": "/sandbox"}},
		// The target's ".." is resolved, not read: "/usr/.." is not
		// beneath /usr, so /lib is no read-only alias of it.
		{"through-dotdot", [][2]string{{"/sandbox", "/usr/.."}, {"/tmp", "usr/../"}, {"/lib", "usr/.."}},
			map[string]string{"/sandbox": "/sandbox", "/tmp": "/tmp", "/lib": "/lib"}},
		// /var/tmp passes through the symlink /var; its last component
		// is a symlink too.
		{"intermediate", [][2]string{{"/var", "/srv"}, {"/srv/tmp", "/"}},
			map[string]string{"/var/tmp": "/var"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			r := policyRuntime(t)
			checks := escapeChecks()
			b := r.probeBundle(bundle.Shell(checkScript(checks) + sleeper))
			writeRootfs(t, b, "/run/secrets/token", "secret\n", 0o644)
			mkdirRootfs(t, b, "/srv")
			for _, l := range tc.links {
				symlinkRootfs(t, b, l[0], l[1])
			}
			id := newID(t)
			verifyChecks(t, tc.name, r.startChecked(id, b, floor...), checks, wantPolicy)
			c := r.fullState(id).Clawrun
			if c.Landlock.Status != "partial" {
				t.Errorf("landlock status %q, want partial: %s", c.Landlock.Status, c)
			}
			for path, link := range tc.skipped {
				s, ok := skipOf(c, path)
				switch {
				case !ok:
					t.Errorf("%s is not in landlock.skipped: %s", path, c)
				case s.Covered || !strings.Contains(s.Reason, "symlink "+link+" ->"):
					t.Errorf("%s skipped as %+v, want a reason naming the symlink %s, not covered", path, s, link)
				}
			}
			// The symlinks' writes did not land anywhere on the image either.
			if _, err := os.Lstat(inRootfs(b, "/usr/bin/planted")); err == nil {
				t.Errorf("/usr/bin/planted was written")
			}
		})
	}

	// The positive control: the same checks on an unchanged image, where
	// /tmp and /sandbox are directories and can be written.
	t.Run("directories", func(t *testing.T) {
		t.Parallel()
		r := policyRuntime(t)
		checks := append(escapeChecks(),
			pc("write-tmp", "write /tmp/x", "OK", "OK"),
			pc("write-sandbox", "write /sandbox/x", "OK", "OK"))
		b := r.probeBundle(bundle.Shell(checkScript(checks) + sleeper))
		writeRootfs(t, b, "/run/secrets/token", "secret\n", 0o644)
		id := newID(t)
		verifyChecks(t, "directories", r.startChecked(id, b, floor...), checks, wantPolicy)
		if c := r.fullState(id).Clawrun; c.Landlock.Status != "enforced" {
			t.Errorf("landlock status %q, want enforced: %s", c.Landlock.Status, c)
		}
	})

	// Merged /usr: /bin, /sbin and /lib are symlinks into /usr, which
	// agent-default lists read-only as well. Nothing is lost: enforced, and
	// the shell runs through /bin.
	t.Run("merged-usr", func(t *testing.T) {
		t.Parallel()
		r := policyRuntime(t)
		b := r.probeBundle(bundle.Args("/bin/sh", "-c", "/bin/echo ran; "+sleeper))
		mergeUsr(t, b)
		mkdirRootfs(t, b, "/usr/sbin", "/usr/lib")
		symlinkRootfs(t, b, "/sbin", "usr/sbin")
		symlinkRootfs(t, b, "/lib", "/usr/lib")
		id := newID(t)
		if out := r.startChecked(id, b, floor...); !strings.HasPrefix(out, "ran\n") {
			t.Errorf("the init printed %q, want ran", out)
		}
		c := r.fullState(id).Clawrun
		if c.Landlock.Status != "enforced" {
			t.Errorf("landlock status %q, want enforced: %s", c.Landlock.Status, c)
		}
		for _, p := range []string{"/bin", "/sbin", "/lib"} {
			if s, ok := skipOf(c, p); !ok || !s.Covered || !strings.Contains(s.Reason, "/usr") {
				t.Errorf("%s: want it listed as covered by /usr; got %+v (%s)", p, s, c)
			}
		}
		if res := r.ok("exec", id, "/bin/sh", "-c", "echo exec-ran"); res.Stdout != "exec-ran\n" {
			t.Errorf("exec /bin/sh: %s", res)
		}
	})

	// hard_requirement: a symlinked path fails create (and run), naming
	// the path; a covered one does not.
	t.Run("hard_requirement", func(t *testing.T) {
		t.Parallel()
		r := policyRuntime(t)
		doc := "version: 1\nfilesystem_policy:\n  read_only: [/bin, /usr, /proc, /etc]\n  read_write: [/tmp, /dev/null]\nlandlock:\n  compatibility: hard_requirement\n"
		b := r.probeBundle(withInline(doc), bundle.Shell(sleeper))
		symlinkRootfs(t, b, "/tmp", "/")
		for _, cmd := range []string{"create", "run"} {
			id := newID(t)
			r.track(id)
			assertFailure(t, r.run(cmd, "--bundle", b, id), "filesystem_policy path /tmp")
			r.assertGone(id, b)
		}
		// /bin -> usr/bin is covered by /usr: the same policy runs.
		mergeUsr(t, b)
		if err := os.Remove(inRootfs(b, "/tmp")); err != nil {
			t.Fatal(err)
		}
		mkdirRootfs(t, b, "/tmp")
		id := newID(t)
		r.runDetachedOut(id, b)
		if c := r.fullState(id).Clawrun; c.Landlock.Status != "enforced" {
			t.Errorf("merged /usr under hard_requirement: landlock status %q, want enforced: %s", c.Landlock.Status, c)
		}
		// /tmp (read-write) -> /usr (read-only) is not covered: the next
		// exec fails.
		symlinkRootfs(t, b, "/tmp", "/usr")
		assertFailure(t, r.run("exec", id, "true"), "path /tmp: symlink /tmp -> /usr")
	})
}

// TestPolicyDebianMergedUsr: agent-default on Debian 12 (merged /usr:
// /bin, /sbin, /lib and /lib64 are symlinks into /usr) is fully enforced,
// and /bin/sh runs.
func TestPolicyDebianMergedUsr(t *testing.T) {
	rootfs := os.Getenv("CLAWRUN_DEBIAN_ROOTFS")
	if rootfs == "" {
		t.Fatal("CLAWRUN_DEBIAN_ROOTFS is not set: make integration builds it with test/mkdebian.sh")
	}
	r := policyRuntime(t)
	b := r.bundle(withPolicy("agent-default"), func(s *specs.Spec) {
		s.Root = &specs.Root{Path: rootfs, Readonly: true}
		s.Process.Args = []string{"/bin/sh", "-c", "echo ran; " + sleeper}
		s.Process.Env = []string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"}
	})
	id := newID(t)
	r.create(id, b)
	r.ok("start", id)
	c := r.fullState(id).Clawrun
	if c.Landlock.Status != "enforced" {
		t.Errorf("landlock status %q, want enforced: %s", c.Landlock.Status, c)
	}
	for _, p := range []string{"/bin", "/sbin", "/lib", "/lib64"} {
		if s, ok := skipOf(c, p); !ok || !s.Covered {
			t.Errorf("%s: want it listed as covered; got %+v (%s)", p, s, c)
		}
	}
	if res := r.ok("exec", id, "/bin/sh", "-c", "echo exec-ran"); res.Stdout != "exec-ran\n" {
		t.Errorf("exec /bin/sh: %s", res)
	}
}
