package integration

import (
	"os"
	"slices"
	"testing"

	"github.com/opencontainers/runtime-spec/specs-go"

	"github.com/clawrun/clawrun/test/bundle"
)

// TestPolicyExecPinnedPaths: each exec'd process gets its rules on the
// files the policy's paths were when the container was created. An agent
// that may write the parent of a listed path (here the working directory
// /sandbox/work, added by include_workdir, inside the read-write /sandbox)
// cannot swap it for a symlink to / or another directory and so widen
// every later exec.
func TestPolicyExecPinnedPaths(t *testing.T) {
	t.Parallel()
	policyRuntime(t)
	// /sandbox read-write (the agent can rename what is in it) or
	// read-only.
	doc := func(sandbox, compat string) string {
		ro, rw := "/bin, /usr, /proc, /etc", "/dev/null"
		if sandbox == "read_write" {
			rw += ", /sandbox"
		} else {
			ro += ", /sandbox"
		}
		return "version: 1\nfilesystem_policy:\n  include_workdir: true\n  read_only: [" + ro + "]\n  read_write: [" + rw +
			"]\nlandlock:\n  compatibility: " + compat + "\n"
	}
	start := func(t *testing.T, r *rtest, policy string) (string, string) {
		b := r.probeBundle(withInline(policy), bundle.Shell(sleeper), func(s *specs.Spec) { s.Process.Cwd = "/sandbox/work" })
		mkdirRootfs(t, b, "/sandbox/work", "/sandbox/other", "/data")
		id := newID(t)
		r.runDetachedOut(id, b)
		return id, b
	}
	toRoot := "mv /sandbox/work /sandbox/work.old && ln -s / /sandbox/work"
	toDir := "mv /sandbox/work /sandbox/work.old && mv /sandbox/other /sandbox/work"
	// /usr is a read-only mount as well (EROFS); /data has no rule in the
	// policy: only Landlock refuses it.
	noUsrBin := []pcheck{
		pc("write-usr-bin", "write /usr/bin/planted", "ERR EACCES|ERR EROFS", ""),
		pc("write-unlisted", "write /data/planted", "ERR EACCES", ""),
	}

	for _, tc := range []struct{ name, swap string }{{"symlink-to-root", toRoot}, {"other-directory", toDir}} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			r := policyRuntime(t)
			id, _ := start(t, r, doc("read_write", "best_effort"))
			// The positive control: before the swap, exec writes its
			// working directory, and not /usr/bin.
			before := append(slices.Clone(noUsrBin), pc("write-workdir", "write /sandbox/work/x", "OK", ""))
			verifyChecks(t, "before the swap", r.ok("exec", id, "sh", "-c", checkScript(before)).Stdout, before, wantPolicy)
			r.ok("exec", id, "sh", "-c", tc.swap)
			verifyChecks(t, "after the swap", r.ok("exec", id, "sh", "-c", checkScript(noUsrBin)).Stdout, noUsrBin, wantPolicy)
		})
	}

	// Under hard_requirement the exec after a swap fails, naming the path.
	t.Run("hard_requirement", func(t *testing.T) {
		t.Parallel()
		r := policyRuntime(t)
		id, _ := start(t, r, doc("read_write", "hard_requirement"))
		r.ok("exec", id, "probe", "write", "/sandbox/work/x")
		r.ok("exec", id, "sh", "-c", toDir)
		assertFailure(t, r.run("exec", id, "probe", "true"), "/sandbox/work")
	})

	// A directory moved into the working directory's place by someone
	// else (a neighbour sharing the volume; here the host) is not the one
	// the policy was given: with /sandbox read-only, exec cannot write it.
	t.Run("replaced-by-neighbour", func(t *testing.T) {
		t.Parallel()
		r := policyRuntime(t)
		id, b := start(t, r, doc("read_only", "best_effort"))
		r.ok("exec", id, "probe", "write", "/sandbox/work/x")
		if err := os.Rename(inRootfs(b, "/sandbox/work"), inRootfs(b, "/sandbox/work.old")); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(inRootfs(b, "/sandbox/other"), inRootfs(b, "/sandbox/work")); err != nil {
			t.Fatal(err)
		}
		checks := []pcheck{pc("write-swapped-in", "write /sandbox/work/y", "ERR EACCES", "")}
		verifyChecks(t, "after the swap", r.ok("exec", id, "sh", "-c", checkScript(checks)).Stdout, checks, wantPolicy)
	})
}
