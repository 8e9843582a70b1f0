package integration

import (
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/opencontainers/runtime-spec/specs-go"

	"github.com/clawrun/clawrun/test/bundle"
)

// floorDoc is an administrator's floor: the system read-only, /tmp
// writable, nothing else.
const floorDoc = `version: 1
filesystem_policy:
  read_only: [/bin, /usr, /etc, /proc]
  read_write: [/tmp, /dev/null]
`

// wideDoc is a container policy that tries to widen the floor: /usr and
// /srv writable.
const wideDoc = `version: 1
filesystem_policy:
  read_only: [/bin, /etc, /proc]
  read_write: [/usr, /srv, /tmp, /dev/null]
`

// narrowDoc is a container policy that narrows the floor: /tmp, which
// the floor lets it write, only read.
const narrowDoc = `version: 1
filesystem_policy:
  read_only: [/bin, /usr, /etc, /proc, /tmp]
  read_write: [/dev/null]
`

// sourceChecks tell which of /usr, /srv and /tmp are writable. /usr/w is
// world-writable, so that only a policy can refuse the write there.
func sourceChecks(usr, srv, tmp string) []pcheck {
	return []pcheck{
		pc("write-usr", "write /usr/w/x", usr, ""),
		pc("write-srv", "write /srv/x", srv, ""),
		pc("write-tmp", "write /tmp/x", tmp, ""),
		pc("memfd", "memfd-exec", "ERR EPERM", ""), // the agent seccomp profile is the default
	}
}

// TestPolicySources: every way a policy reaches a container (annotation
// name, inline document, egress shortcut, a built-in preset with network
// presets or a policy that includes one, the --policy floor as a name or
// a file, the config file's floor_policy, policy_dir and default_policy),
// and that a container's policy can narrow the floor, never widen it.
func TestPolicySources(t *testing.T) {
	t.Parallel()
	_, fn := egressRuntime(t)
	// /usr is a read-only mount wherever the policy makes it read-only.
	const rofs, deny, ok = "ERR EROFS", "ERR EACCES", "OK"

	dir := t.TempDir()
	floorFile := filepath.Join(dir, "floor.yaml")
	policyDir := filepath.Join(dir, "policies")
	mkdirAll(t, policyDir)
	writeFile(t, floorFile, floorDoc)
	writeFile(t, filepath.Join(policyDir, "wide.yaml"), wideDoc)
	writeFile(t, filepath.Join(policyDir, "site-floor.yaml"), floorDoc)
	// Every config has the fake internet's egress section: where egress
	// is filtered, its decisions are checked.
	config := func(body string) string {
		return fn.configFile(t, body+"policy_dir: "+policyDir+"\n")
	}

	for _, tc := range []struct {
		name    string
		globals []string
		edits   []func(*specs.Spec)
		checks  []pcheck
		policy  string   // state's clawrun.policy
		layers  []string // state's landlock layer sources
		egress  string   // the name the plan's network_policies allow ("": none)
	}{
		{name: "annotation-preset", edits: []func(*specs.Spec){withPolicy("agent-default")},
			checks: sourceChecks(rofs, deny, ok), policy: "agent-default", layers: []string{"agent-default"}},
		{name: "annotation-inline", edits: []func(*specs.Spec){withInline(wideDoc)},
			checks: sourceChecks(ok, ok, ok), policy: "inline", layers: []string{"inline"}},
		// Egress only: no Landlock layer at all, but the seccomp profile.
		{name: "egress-shortcut", edits: []func(*specs.Spec){annotate(annEgress, "shortcut.wild.test,pypi.org:443")},
			checks: sourceChecks(ok, ok, ok), policy: "egress", layers: nil, egress: "shortcut.wild.test"},
		{name: "egress-with-preset", edits: []func(*specs.Spec){withPolicy("agent-default"), annotate(annEgress, "preset.wild.test")},
			checks: sourceChecks(rofs, deny, ok), policy: "agent-default", layers: []string{"agent-default"}, egress: "preset.wild.test"},
		// agent-coding: agent-default's files, and egress filtered to its
		// network presets.
		{name: "annotation-agent-coding", edits: []func(*specs.Spec){withPolicy("agent-coding")},
			checks: sourceChecks(rofs, deny, ok), policy: "agent-coding", layers: []string{"agent-coding"}, egress: "api.github.com"},
		// A network preset included by a policy of its own: egress only.
		{name: "inline-include-preset", edits: []func(*specs.Spec){withInline("version: 1\nclawrun: {include: [pypi]}\n")},
			checks: sourceChecks(ok, ok, ok), policy: "inline", layers: nil, egress: "files.pythonhosted.org"},
		{name: "floor-flag-preset", globals: []string{"--policy", "agent-default"},
			checks: sourceChecks(rofs, deny, ok), policy: "agent-default", layers: []string{"agent-default"}},
		// The container's policy asks for /usr and /srv: the floor wins.
		{name: "floor-flag-file-widened", globals: []string{"--policy", floorFile}, edits: []func(*specs.Spec){withInline(wideDoc)},
			checks: sourceChecks(rofs, deny, ok), policy: "floor:" + floorFile + " + inline", layers: []string{floorFile, "inline"}},
		// The container's policy takes /tmp away: narrowing is kept.
		{name: "floor-flag-file-narrowed", globals: []string{"--policy", floorFile}, edits: []func(*specs.Spec){withInline(narrowDoc)},
			checks: sourceChecks(rofs, deny, rofs), policy: "floor:" + floorFile + " + inline", layers: []string{floorFile, "inline"}},
		{name: "floor-config-file-widened", globals: []string{"--config", config("floor_policy: " + floorFile + "\n")},
			edits:  []func(*specs.Spec){withPolicy("wide")},
			checks: sourceChecks(rofs, deny, ok), policy: "floor:" + floorFile + " + wide", layers: []string{floorFile, "wide"}},
		{name: "floor-config-name", globals: []string{"--config", config("floor_policy: site-floor\n")},
			checks: sourceChecks(rofs, deny, ok), policy: "site-floor", layers: []string{"site-floor"}},
		// --policy overrides the config's floor_policy.
		{name: "floor-flag-over-config", globals: []string{"--config", config("floor_policy: site-floor\n"), "--policy", "wide"},
			checks: sourceChecks(ok, ok, ok), policy: "wide", layers: []string{"wide"}},
		{name: "config-default-policy", globals: []string{"--config", config("default_policy: agent-default\n")},
			checks: sourceChecks(rofs, deny, ok), policy: "agent-default", layers: []string{"agent-default"}},
		// The egress shortcut adds its allow list to the default policy, as
		// it does to a named one: an allow list never removes file rules.
		{name: "config-default-with-egress", globals: []string{"--config", config("default_policy: agent-default\n")},
			edits:  []func(*specs.Spec){annotate(annEgress, "default.wild.test")},
			checks: sourceChecks(rofs, deny, ok), policy: "agent-default", layers: []string{"agent-default"}, egress: "default.wild.test"},
		// An annotation replaces the default policy (the floor stays).
		{name: "config-default-replaced", globals: []string{"--config", config("default_policy: agent-default\n")},
			edits:  []func(*specs.Spec){withPolicy("wide")},
			checks: sourceChecks(ok, ok, ok), policy: "wide", layers: []string{"wide"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			r := policyRuntime(t)
			b := r.probeBundle(append(slices.Clone(tc.edits), bundle.Shell(sleeper))...)
			mkdirRootfs(t, b, "/srv", "/usr/w")
			chmodRootfs(t, b, "/usr/w", 0o777)
			id := newID(t)
			globals := tc.globals
			if !slices.Contains(globals, "--config") {
				globals = append(fn.globals(), globals...)
			}
			r.runDetachedOut(id, b, globals...)

			c := r.fullState(id).Clawrun
			var layers []string
			for _, l := range c.Landlock.Layers {
				layers = append(layers, l.Source)
			}
			wantStatus := "enforced"
			if len(tc.layers) == 0 {
				wantStatus = "none"
			}
			if c.Policy != tc.policy || !slices.Equal(layers, tc.layers) || c.Landlock.Status != wantStatus || !c.Seccomp.Loaded {
				t.Errorf("state: want policy %q, layers %q, landlock %s, seccomp loaded; got %s", tc.policy, tc.layers, wantStatus, c)
			}
			checkEgress(t, c, tc.egress != "")
			if tc.egress != "" {
				ec := &ectr{t: t, r: r, fn: fn, id: id, bundle: b, log: filepath.Join(fn.logDir, id+".egress.jsonl")}
				ec.decides(tc.egress, "", tc.name+".denied.test")
			}
			res := r.ok("exec", id, "sh", "-c", checkScript(tc.checks))
			verifyChecks(t, tc.name, res.Stdout, tc.checks, wantPolicy)
		})
	}
}

// TestPolicyCompatibility: a policy path that does not exist in the
// container fails creation under hard_requirement (with nothing left), and
// is skipped, and reported, under best_effort.
func TestPolicyCompatibility(t *testing.T) {
	t.Parallel()
	policyRuntime(t)
	doc := func(compat string) string {
		return fmt.Sprintf(`version: 1
filesystem_policy:
  read_only: [/bin, /usr, /no-such-dir]
  read_write: [/tmp, /dev/null]
landlock:
  compatibility: %s
`, compat)
	}

	t.Run("hard_requirement", func(t *testing.T) {
		t.Parallel()
		r := policyRuntime(t)
		b := r.probeBundle(withInline(doc("hard_requirement")), bundle.Shell(sleeper))
		for _, cmd := range []string{"create", "run"} {
			id := newID(t)
			r.track(id)
			res := r.run(cmd, "--bundle", b, id)
			assertFailure(t, res, "/no-such-dir")
			if !strings.Contains(res.Stderr, "hard_requirement") {
				t.Errorf("the error does not name hard_requirement:\n%s", res)
			}
			r.assertGone(id, b)
		}
		// Once the path exists the same policy runs.
		mkdirRootfs(t, b, "/no-such-dir")
		id := newID(t)
		r.runDetachedOut(id, b)
		if c := r.fullState(id).Clawrun; c.Landlock.Status != "enforced" || c.Landlock.Compatibility != "hard_requirement" || len(c.Landlock.Skipped) > 0 {
			t.Errorf("with the path there: %s", c)
		}
	})

	t.Run("best_effort", func(t *testing.T) {
		t.Parallel()
		r := policyRuntime(t)
		b := r.probeBundle(withInline(doc("best_effort")), bundle.Shell(sleeper))
		id := newID(t)
		r.runDetachedOut(id, b)
		c := r.fullState(id).Clawrun
		// A path that does not exist weakens nothing: still "enforced".
		if c.Landlock.Status != "enforced" || c.Landlock.Compatibility != "best_effort" ||
			len(c.Landlock.Skipped) != 1 || c.Landlock.Skipped[0].Path != "/no-such-dir" || c.Landlock.Skipped[0].Reason != "does not exist" {
			t.Errorf("want enforced, best_effort, /no-such-dir skipped as missing; got %s", c)
		}
		checks := []pcheck{pc("write-usr", "write /usr/x", "ERR EROFS", ""), pc("write-tmp", "write /tmp/x", "OK", "")}
		res := r.ok("exec", id, "sh", "-c", checkScript(checks))
		verifyChecks(t, "best_effort", res.Stdout, checks, wantPolicy)
	})
}
