package integration

import (
	"os"
	"strings"
	"testing"
	"time"

	"github.com/opencontainers/runtime-spec/specs-go"

	"github.com/clawrun/clawrun/test/bundle"
)

// TestPolicyRunAsUser: process.run_as_user/run_as_group pick the user the
// container (and everything exec'd in it) runs as, never root; under the
// policy's no_new_privs a setuid-root binary does not make it root.
func TestPolicyRunAsUser(t *testing.T) {
	t.Parallel()
	policyRuntime(t)
	runAs := presetFile(t, "agent-default") + "\nprocess:\n  run_as_user: agent\n  run_as_group: agent\n"
	const suprobe = "/usr/bin/suprobe" // a setuid-root copy of the probe
	init := "probe id; probe setuid-exec " + suprobe + "; " + sleeper
	checks := []pcheck{
		{name: "id-u", cmd: "id -u", policy: "1000", base: "1000"},
		pc("ids", "id", "OK uid=1000 euid=1000 gid=1000 egid=1000", "OK uid=1000 euid=1000 gid=1000 egid=1000"),
		pc("setuid-exec", "setuid-exec "+suprobe, "ERR NOPRIV", "OK euid=0"),
		{name: "no-new-privs", cmd: "grep NoNewPrivs /proc/self/status", policy: "NoNewPrivs:\t1", base: "NoNewPrivs:\t0"},
	}
	noNNP := func(s *specs.Spec) { s.Process.NoNewPrivileges = false }

	for _, tc := range []struct {
		name     string
		edit     func(*specs.Spec)
		pick     func(pcheck) string
		initOut  string // what the init's own probes print
		execRoot string // id -u of `exec -u 0`
	}{
		// The spec says root; the policy says agent.
		{"run-as-agent", withInline(runAs), wantPolicy, "OK uid=1000 euid=1000 gid=1000 egid=1000\nERR NOPRIV", "1000"},
		// The spec says uid 1000, and allows privilege gains.
		{"no-policy", asUser(1000, 1000), wantBase, "OK uid=1000 euid=1000 gid=1000 egid=1000\nOK euid=0", "0"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			r := policyRuntime(t)
			b := r.probeBundle(tc.edit, noNNP, bundle.Shell(init))
			installProbe(t, b, suprobe, os.ModeSetuid|0o755)
			id := newID(t)
			_, out := r.runDetachedOut(id, b)
			waitFor(t, 10*time.Second, "the init's output", func() bool { return strings.Contains(readFile(out), "started") })
			if got := readFile(out); !strings.HasPrefix(got, tc.initOut) {
				t.Errorf("the init printed %q, want it to start with %q", got, tc.initOut)
			}
			res := r.ok("exec", id, "sh", "-c", checkScript(checks))
			verifyChecks(t, tc.name, res.Stdout, checks, tc.pick)
			// exec -u 0 does not get around run_as_user.
			if res := r.ok("exec", "-u", "0", id, "id", "-u"); strings.TrimSpace(res.Stdout) != tc.execRoot {
				t.Errorf("exec -u 0: id -u says %q, want %s", res.Stdout, tc.execRoot)
			}
			if tc.name == "run-as-agent" {
				if c := r.fullState(id).Clawrun; c.Process.RunAs != "agent:agent" {
					t.Errorf("state process.run_as %q, want agent:agent", c.Process.RunAs)
				}
			}
		})
	}

	// Root, by name or by a name that resolves to uid 0, is refused at
	// create, and so is a user the image does not have.
	t.Run("refused", func(t *testing.T) {
		t.Parallel()
		r := policyRuntime(t)
		b := r.probeBundle(bundle.Args("probe", "true"))
		writeRootfs(t, b, "/etc/passwd", "root:x:0:0:root:/root:/bin/sh\ntoor:x:0:0:root:/root:/bin/sh\nagent:x:1000:1000:agent:/sandbox:/bin/sh\n", 0o644)
		for _, tc := range []struct{ process, cause string }{
			{"run_as_user: root", "process.run_as_user: root is not allowed"},
			{"run_as_user: 0", "process.run_as_user: root (0) is not allowed"},
			{"run_as_user: agent\n  run_as_group: root", "process.run_as_group: root is not allowed"},
			{"run_as_user: toor", `"toor" resolves to root, which is not allowed`},
			{"run_as_user: nosuchuser", `"nosuchuser"`},
		} {
			bundle.Edit(t, b, withInline("version: 1\nprocess:\n  "+tc.process+"\n"))
			id := newID(t)
			r.track(id)
			assertFailure(t, r.run("create", "--bundle", b, id), tc.cause)
			r.assertGone(id, b)
		}
	})

	// exec resolves run_as_user again in the container's /etc/passwd. A
	// container that may write its /etc must not be able to point that
	// lookup at a file of the host.
	t.Run("passwd-symlink-to-host", func(t *testing.T) {
		t.Parallel()
		r := policyRuntime(t)
		doc := "version: 1\nfilesystem_policy:\n  read_only: [/bin, /usr, /proc]\n  read_write: [/etc, /tmp, /dev/null]\nprocess:\n  run_as_user: agent\n"
		b := r.probeBundle(withInline(doc), bundle.Shell(sleeper))
		if err := os.Chown(inRootfs(b, "/etc"), 1000, 1000); err != nil {
			t.Fatal(err)
		}
		hostFile := writeTemp(t, "host-passwd", "agent:x:4242:4242::/:/bin/sh\n")
		id := newID(t)
		r.runDetachedOut(id, b)
		r.ok("exec", id, "sh", "-c", "rm /etc/passwd && ln -s "+shQuote(hostFile)+" /etc/passwd")
		res := r.ok("exec", id, "id", "-u")
		switch strings.TrimSpace(res.Stdout) {
		case "1000":
		case "4242":
			t.Errorf("exec read the host's %s through the container's /etc/passwd symlink (run_as_user resolved on the host path):\n%s", hostFile, res)
		default:
			t.Errorf("exec after /etc/passwd was replaced: id -u %q, want the create-time 1000", res.Stdout)
		}
	})
}
