package integration

import (
	"strings"
	"testing"

	"github.com/opencontainers/runtime-spec/specs-go"

	"github.com/clawrun/clawrun/test/bundle"
)

// TestPolicyMagicLinks: /proc magic links (and the /dev aliases of
// /proc/self/fd) name whatever they point to, the container's whole root
// for /proc/self/root: a policy that lists one, or a working directory
// that is one under include_workdir, is refused at create.
func TestPolicyMagicLinks(t *testing.T) {
	t.Parallel()
	r := policyRuntime(t)
	checks := []pcheck{pc("write-usr-bin", "write /usr/bin/planted", "ERR EACCES", "")}
	b := r.probeBundle(bundle.Shell(checkScript(checks)))
	orig := bundle.Load(t, b)
	for _, tc := range []struct {
		name, doc, cwd, cause string
	}{
		{"read-write-proc-self-root", "version: 1\nfilesystem_policy:\n  read_only: [/bin, /usr]\n  read_write: [/proc/self/root]\n", "",
			`filesystem_policy.read_write[0]: "/proc/self/root"`},
		{"read-only-proc-1-cwd", "version: 1\nfilesystem_policy:\n  read_only: [/bin, /usr, /proc/1/cwd]\n", "",
			`filesystem_policy.read_only[2]: "/proc/1/cwd"`},
		{"workdir-proc-self-root", "version: 1\nfilesystem_policy:\n  include_workdir: true\n  read_only: [/bin, /usr]\n", "/proc/self/root",
			"filesystem_policy.include_workdir: the container's working directory"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			bundle.Save(t, b, orig)
			bundle.Edit(t, b, withInline(tc.doc))
			if tc.cwd != "" {
				bundle.Edit(t, b, func(s *specs.Spec) { s.Process.Cwd = tc.cwd })
			}
			id := newID(t)
			r.track(id)
			res := r.run("run", "--bundle", b, id)
			if strings.Contains(res.Stdout, "write-usr-bin\tOK") {
				t.Errorf("the container wrote /usr/bin:\n%s", res)
			}
			assertFailure(t, res, tc.cause)
			if !strings.Contains(res.Stderr, "magic link") {
				t.Errorf("the error does not say why:\n%s", res)
			}
			r.assertGone(id, b)
		})
	}
}
