package integration

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/opencontainers/runtime-spec/specs-go"

	"github.com/clawrun/clawrun/test/bundle"
)

// TestErrors: failures exit non-zero, say why on stderr and in the JSON
// log, and leave no state, cgroup or process behind. Not parallel: the
// leftover checks look at the whole machine.
func TestErrors(t *testing.T) {
	requireReady(t)
	t.Run("missing-bundle", func(t *testing.T) {
		r := newRuntime(t)
		for _, cmd := range []string{"create", "run"} {
			id := newID(t)
			r.track(id)
			missing := filepath.Join(t.TempDir(), "no-such-bundle")
			res := r.run(cmd, "--bundle", missing, id)
			assertFailure(t, res, missing)
			r.assertGone(id, "")
		}
	})

	t.Run("bad-config-json", func(t *testing.T) {
		r := newRuntime(t)
		b := r.bundle()
		if err := os.WriteFile(filepath.Join(b, "config.json"), []byte(`{not json`), 0o644); err != nil {
			t.Fatal(err)
		}
		id := newID(t)
		r.track(id)
		assertFailure(t, r.run("create", "--bundle", b, id), "invalid character", "config.json")
		r.assertGone(id, b)
	})

	t.Run("empty-args", func(t *testing.T) {
		r := newRuntime(t)
		b := r.bundle(func(s *specs.Spec) { s.Process.Args = nil })
		id := newID(t)
		r.track(id)
		assertFailure(t, r.run("create", "--bundle", b, id), "args")
		r.assertGone(id, b)
	})

	// This one fails late, in the container's init, after namespaces and
	// cgroups were made: all of it must be undone.
	t.Run("missing-executable", func(t *testing.T) {
		r := newRuntime(t)
		b := r.bundle(bundle.Args("/no-such-binary"))
		for _, cmd := range []string{"create", "run"} {
			id := newID(t)
			r.track(id)
			assertFailure(t, r.run(cmd, "--bundle", b, id), "/no-such-binary")
			r.assertGone(id, b)
		}
	})

	t.Run("invalid-id", func(t *testing.T) {
		r := newRuntime(t)
		b := r.bundle()
		res := r.run("create", "--bundle", b, "../escape")
		assertFailure(t, res, "invalid")
		if _, err := os.Lstat(filepath.Join(filepath.Dir(r.root), "escape")); err == nil {
			t.Fatalf("an id with .. created a state dir outside --root")
		}
		if ents, _ := os.ReadDir(r.root); len(ents) != 0 {
			t.Fatalf("--root not empty: %v", ents)
		}
	})

	t.Run("duplicate-id", func(t *testing.T) {
		r := newRuntime(t)
		b1 := r.bundle(bundle.Shell(sleeper))
		b2 := r.bundle(bundle.Shell(sleeper))
		id := newID(t)
		r.create(id, b1)
		st := r.state(id)
		for _, cmd := range []string{"create", "run"} {
			assertFailure(t, r.run(cmd, "--bundle", b2, id), "already exists")
			if pids := procsInRootfs(t, b2); len(pids) > 0 {
				t.Errorf("%s of a duplicate id left processes: %v", cmd, pids)
			}
			// The original container is untouched.
			if st2 := r.state(id); st2.Status != "created" || st2.Pid != st.Pid || st2.Bundle != b1 {
				t.Fatalf("after a duplicate %s the original is %+v, was %+v", cmd, st2, st)
			}
		}
	})

	t.Run("unknown-id", func(t *testing.T) {
		r := newRuntime(t)
		id := newID(t)
		for _, args := range [][]string{
			{"state", id},
			{"start", id},
			{"kill", id},
			{"kill", id, "KILL"},
			{"kill", id, "0"},
			{"kill", "KILL", id},
			{"delete", id},
			{"pause", id},
			{"resume", id},
			{"ps", id},
			{"events", "--stats", id},
			{"update", "--pids-limit", "10", id},
			{"update", id, "--pids-limit", "10"},
			{"exec", id, "true"},
		} {
			t.Run(strings.ReplaceAll(strings.Join(args, " "), id, "ID"), func(t *testing.T) {
				res := r.run(args...)
				// runc's words, which containerd's shim matches.
				assertFailure(t, res, "container does not exist")
				// runc's exec reports its own failures as 255, apart from the process's codes.
				if args[0] == "exec" && res.Code != 255 {
					t.Errorf("exec failure exit code %d, want 255", res.Code)
				}
			})
		}
		// Forced delete of what is not there is not an error (idempotent cleanup).
		if res := r.run("delete", "-f", id); res.Code != 0 {
			t.Errorf("delete -f of an unknown id should succeed:\n%s", res)
		}
		r.assertGone(id, "")
	})

	// A stopped container: each command says so in runc's words.
	t.Run("stopped", func(t *testing.T) {
		r := newRuntime(t)
		b := r.bundle(bundle.Shell(sleeper))
		id := newID(t)
		r.runDetached(id, b)
		r.ok("kill", id, "KILL")
		r.waitStatus(id, "stopped")
		for _, c := range []struct {
			args  []string
			cause string
		}{
			{[]string{"kill", id}, "container not running"},
			{[]string{"kill", id, "0"}, "container not running"},
			{[]string{"pause", id}, "container not running"},
			{[]string{"update", "--pids-limit", "10", id}, "container not running"},
			{[]string{"events", "--stats", id}, "container with id " + id + " is not running"},
			{[]string{"start", id}, "cannot start a container that has stopped"},
			{[]string{"exec", id, "true"}, "cannot exec in a stopped container"},
		} {
			t.Run(strings.ReplaceAll(strings.Join(c.args, " "), id, "ID"), func(t *testing.T) {
				assertFailure(t, r.run(c.args...), c.cause)
			})
		}
	})
}
