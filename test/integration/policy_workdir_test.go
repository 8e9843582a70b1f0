package integration

import (
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/opencontainers/runtime-spec/specs-go"

	"github.com/clawrun/clawrun/test/bundle"
)

// TestPolicyIncludeWorkdir: filesystem_policy.include_workdir adds the
// container's working directory (/work/project) read-write, and nothing
// beside it: its sibling /work/other and its parent /work stay without
// access. With include_workdir false the same policy leaves the working
// directory as unlisted as its sibling, so include_workdir is what grants
// it. The init and an exec'd process get the same rules.
func TestPolicyIncludeWorkdir(t *testing.T) {
	t.Parallel()
	policyRuntime(t)
	doc := func(include bool) string {
		return "version: 1\nfilesystem_policy:\n  include_workdir: " + strconv.FormatBool(include) +
			"\n  read_only: [/bin, /usr, /proc]\n  read_write: [/dev/null]\n"
	}
	checks := []pcheck{
		pc("write-workdir", "write /work/project/x", "OK", "ERR EACCES"),
		pc("mkdir-in-workdir", "mkdir /work/project/d$$", "OK", "ERR EACCES"),
		pc("write-workdir-relative", "write ./y", "OK", "ERR EACCES"),
		pc("write-sibling", "write /work/other/x", "ERR EACCES", "ERR EACCES"),
		pc("read-sibling", "read /work/other", "ERR EACCES", "ERR EACCES"),
		pc("write-parent", "write /work/x", "ERR EACCES", "ERR EACCES"),
		pc("control-read-only", "read /usr/bin", "OK", "OK"),
	}

	for _, tc := range []struct {
		name    string
		include bool
		pick    func(pcheck) string
	}{
		{"include_workdir-true", true, wantPolicy},
		{"include_workdir-false", false, wantBase},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			r := policyRuntime(t)
			script := checkScript(checks)
			b := r.probeBundle(withInline(doc(tc.include)), bundle.Shell(script+sleeper),
				func(s *specs.Spec) { s.Process.Cwd = "/work/project" })
			mkdirRootfs(t, b, "/work/project", "/work/other")
			id := newID(t)
			_, out := r.runDetachedOut(id, b)
			waitFor(t, 10*time.Second, "the init's checks", func() bool { return strings.Contains(readFile(out), "started") })
			verifyChecks(t, tc.name+" (init)", readFile(out), checks, tc.pick)
			res := r.ok("exec", id, "sh", "-c", script)
			verifyChecks(t, tc.name+" (exec)", res.Stdout, checks, tc.pick)
		})
	}
}
