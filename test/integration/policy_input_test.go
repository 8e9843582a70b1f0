package integration

import (
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/opencontainers/runtime-spec/specs-go"

	"github.com/clawrun/clawrun/test/bundle"
)

// wantComment is the "# want: LINE: TEXT" header of a testdata/bad policy:
// parsing it fails with NAME:LINE: TEXT... (NAME: TEXT for line 0).
var wantComment = regexp.MustCompile(`(?m)^# want: (\d+): (.*)$`)

// TestPolicyBadInput: a malformed policy, or a policy asked for the wrong
// way, fails create with an error that names the field (on stderr and as
// a JSON error line in the log) and creates nothing.
func TestPolicyBadInput(t *testing.T) {
	t.Parallel()
	policyRuntime(t)

	// Every malformed policy of the parser's tests, as an inline
	// annotation: the runtime reports the parser's error unchanged.
	t.Run("testdata-bad", func(t *testing.T) {
		t.Parallel()
		r := policyRuntime(t)
		b := r.probeBundle(bundle.Args("probe", "true"))
		files, err := filepath.Glob(filepath.Join(bundle.RepoRoot(t), "runtime", "policy", "testdata", "bad", "*.yaml"))
		if err != nil || len(files) == 0 {
			t.Fatalf("no testdata/bad policies (%v)", err)
		}
		// One bundle, edited per case: sequential.
		for _, f := range files {
			t.Run(strings.TrimSuffix(filepath.Base(f), ".yaml"), func(t *testing.T) {
				data, err := os.ReadFile(f)
				if err != nil {
					t.Fatal(err)
				}
				m := wantComment.FindStringSubmatch(string(data))
				if m == nil {
					t.Fatalf("%s has no # want: line", f)
				}
				cause := "inline:" + m[1] + ": " + m[2]
				if m[1] == "0" {
					cause = "inline: " + m[2]
				}
				bundle.Edit(t, b, func(s *specs.Spec) { s.Annotations = map[string]string{annInline: string(data)} })
				id := newID(t)
				r.track(id)
				assertFailure(t, r.run("create", "--bundle", b, id), cause)
				r.assertGone(id, b)
			})
		}
	})

	t.Run("sources", func(t *testing.T) {
		t.Parallel()
		r := policyRuntime(t)
		b := r.probeBundle(bundle.Args("probe", "true"))
		orig := bundle.Load(t, b)

		dir := t.TempDir()
		mkdirAll(t, filepath.Join(dir, "policies"))
		floorFile := filepath.Join(dir, "floor.yaml")
		writeFile(t, floorFile, floorDoc)
		// A relative path that exists from the runtime's working
		// directory: refused all the same.
		writeFile(t, filepath.Join(dir, "policies", "floor.yaml"), floorDoc)
		badRel := readRepoFile(t, "runtime/policy/testdata/bad/relative-path.yaml")
		badFile := filepath.Join(dir, "bad.yaml")
		writeFile(t, badFile, badRel)
		writeFile(t, filepath.Join(dir, "policies", "broken.yaml"), readRepoFile(t, "runtime/policy/testdata/bad/unknown-top-key.yaml"))
		runAsFloor := filepath.Join(dir, "runas-floor.yaml")
		writeFile(t, runAsFloor, "version: 1\nprocess:\n  run_as_user: nobody\n")
		config := func(body string) string {
			return writeTemp(t, "config.yaml", body)
		}
		missing := filepath.Join(dir, "missing.yaml")

		for _, tc := range []struct {
			name    string
			globals []string
			ann     map[string]string
			edit    func(*specs.Spec)
			cause   string
		}{
			{name: "unknown-annotation", ann: map[string]string{"run.clawrun.polcy": "agent-default"},
				cause: `annotation "run.clawrun.polcy": unknown`},
			{name: "unknown-annotation-beside-policy", ann: map[string]string{annPolicy: "agent-default", "run.clawrun.egres": "example.com"},
				cause: `annotation "run.clawrun.egres": unknown`},
			{name: "policy-and-inline", ann: map[string]string{annPolicy: "agent-default", annInline: wideDoc},
				cause: "give one policy, not both"},
			{name: "name-with-slash", ann: map[string]string{annPolicy: "policies/agent-default"},
				cause: `annotation run.clawrun.policy: invalid policy name "policies/agent-default"`},
			{name: "name-dotdot", ann: map[string]string{annPolicy: "../agent-default"},
				cause: `invalid policy name "../agent-default"`},
			{name: "name-is-a-path", ann: map[string]string{annPolicy: floorFile},
				cause: "a policy name, not a path, is expected here"},
			{name: "name-unknown", ann: map[string]string{annPolicy: "no-such-policy"},
				cause: `policy "no-such-policy": open /etc/clawrun/policies/no-such-policy.yaml: no such file`},
			{name: "inline-empty", ann: map[string]string{annInline: ""},
				cause: "annotation run.clawrun.policy.inline: inline: the document is empty"},
			{name: "egress-bad-port", ann: map[string]string{annEgress: "api.example.com:99999"},
				cause: `run.clawrun.egress[0]: "api.example.com:99999": port "99999"`},
			{name: "egress-empty", ann: map[string]string{annEgress: ""},
				cause: "run.clawrun.egress: no hosts"},
			{name: "deny-unknown-syscall", ann: map[string]string{annInline: "version: 1\nclawrun:\n  seccomp:\n    deny_syscalls: [nosuchcall]\n"},
				cause: `clawrun.seccomp.deny_syscalls: unknown system call "nosuchcall"`},
			{name: "include-workdir-root", ann: map[string]string{annInline: "version: 1\nfilesystem_policy:\n  include_workdir: true\n"},
				cause: "filesystem_policy.include_workdir: the container's working directory is /"},
			{name: "no-proc-mount", ann: map[string]string{annPolicy: "agent-default"},
				edit: func(s *specs.Spec) {
					s.Mounts = slices.DeleteFunc(s.Mounts, func(m specs.Mount) bool { return m.Destination == "/proc" })
				},
				cause: "needs a /proc mount"},
			{name: "floor-relative-path", globals: []string{"--policy", "policies/floor.yaml"},
				cause: `floor policy: invalid policy name "policies/floor.yaml"`},
			{name: "floor-dot-relative-path", globals: []string{"--policy", "./floor.yaml"},
				cause: `floor policy: invalid policy name "./floor.yaml"`},
			{name: "floor-missing-file", globals: []string{"--policy", missing},
				cause: "floor policy: open " + missing + ": no such file"},
			{name: "floor-bad-file", globals: []string{"--policy", badFile},
				cause: "floor policy: " + badFile + `:6: filesystem_policy.read_only[1]: "usr/lib": must be an absolute path`},
			{name: "floor-unknown-name", globals: []string{"--policy", "no-such-floor"},
				cause: `floor policy: policy "no-such-floor"`},
			{name: "floor-run-as-conflict", globals: []string{"--policy", runAsFloor}, ann: map[string]string{annInline: "version: 1\nprocess:\n  run_as_user: agent\n"},
				cause: `process.run_as_user: "agent" conflicts with "nobody" set by the floor policy ` + runAsFloor},
			{name: "config-missing", globals: []string{"--config", missing},
				cause: "config: open " + missing},
			{name: "config-unknown-key", globals: []string{"--config", config("floor_polcy: agent-default\n")},
				cause: `:1: floor_polcy: unknown key "floor_polcy"`},
			{name: "config-floor-relative-path", globals: []string{"--config", config("floor_policy: policies/floor.yaml\n")},
				cause: `:1: floor_policy: invalid policy name "policies/floor.yaml"`},
			{name: "config-default-policy-path", globals: []string{"--config", config("default_policy: " + floorFile + "\n")},
				cause: `:1: default_policy: invalid policy name`},
			{name: "config-policy-dir-bad-policy", globals: []string{"--config", config("policy_dir: " + filepath.Join(dir, "policies") + "\n")},
				ann:   map[string]string{annPolicy: "broken"},
				cause: `broken:3: filesystem: unknown key "filesystem"`},
		} {
			t.Run(tc.name, func(t *testing.T) {
				bundle.Save(t, b, orig)
				bundle.Edit(t, b, func(s *specs.Spec) {
					s.Annotations = tc.ann
					if tc.edit != nil {
						tc.edit(s)
					}
				})
				id := newID(t)
				r.track(id)
				args := append(slices.Clone(tc.globals), "create", "--bundle", b, id)
				assertFailure(t, r.runWith(runOpts{Dir: dir}, args...), tc.cause)
				r.assertGone(id, b)
			})
		}
	})
}

func readRepoFile(t *testing.T, rel string) string {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(bundle.RepoRoot(t), filepath.FromSlash(rel)))
	if err != nil {
		t.Fatal(err)
	}
	return string(data)
}

// A filesystem_policy key (YAML or JSON), not a mention in a comment; a
// seccomp profile of none.
var (
	hasFilesystemKey = regexp.MustCompile(`(?m)^\s*"?filesystem_policy"?\s*:`)
	seccompNone      = regexp.MustCompile(`"?profile"?\s*:\s*"?none\b`)
)

// TestPolicyOpenShellPolicies: OpenShell-shaped policies (the parser's
// testdata/good) confine a container unchanged. The image is made to fit
// them: /usr merged (they list /usr, not /bin), the "sandbox" user they
// run as, their /sandbox working directory and /opt/tools.
func TestPolicyOpenShellPolicies(t *testing.T) {
	t.Parallel()
	policyRuntime(t)
	dir := filepath.Join(bundle.RepoRoot(t), "runtime", "policy", "testdata", "good")
	files, err := filepath.Glob(filepath.Join(dir, "*"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no testdata/good policies (%v)", err)
	}
	// The uid each policy runs as (run_as_user); 0 when it sets none.
	uids := map[string]int{"coding-agent.yaml": 1001, "quickstart.yaml": 1001, "full-network.yaml": 1000}
	// A name each policy allows, and the executable its endpoint is
	// restricted to ("" for any): the filter must let it be resolved.
	allows := map[string]struct{ name, binary string }{
		"anchors.yaml":         {"example.com", ""},
		"coding-agent.yaml":    {"telemetry.example.net", "/usr/bin/node"},
		"deny-all-egress.yaml": {}, // nothing
		"full-network.yaml":    {"ws.example.com", ""},
		"network-only.yaml":    {"api.anthropic.com", ""},
		"policy.json":          {"pypi.org", "/usr/bin/pip"},
		"quickstart.yaml":      {"api.github.com", "/usr/bin/curl"},
	}
	for _, f := range files {
		name := filepath.Base(f)
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			r, fn := egressRuntime(t)
			allowed, ok := allows[name]
			if !ok {
				t.Fatalf("no name this test may resolve under %s: add one to allows", name)
			}
			doc := readFile(f)
			hasFS := hasFilesystemKey.MatchString(doc)
			seccompOn := !seccompNone.MatchString(doc)
			// sleep as the init: busybox sh opens /dev/null for background
			// jobs, which not every one of these policies allows.
			b := r.probeBundle(withInline(doc), bundle.Args("sleep", "1000"), func(s *specs.Spec) { s.Process.Cwd = "/sandbox" })
			mergeUsr(t, b)
			mkdirRootfs(t, b, "/sandbox", "/opt/tools", "/usr/w")
			chmodRootfs(t, b, "/usr/w", 0o777)
			writeRootfs(t, b, "/etc/passwd", "root:x:0:0:root:/root:/bin/sh\nagent:x:1000:1000:agent:/sandbox:/bin/sh\nsandbox:x:1001:1001:sandbox:/sandbox:/bin/sh\n", 0o644)
			writeRootfs(t, b, "/etc/group", "root:x:0:\nagent:x:1000:\nsandbox:x:1001:\n", 0o644)
			if allowed.binary != "" {
				installProbe(t, b, allowed.binary, 0o755)
			}

			id := newID(t)
			r.track(id)
			r.ok(append(fn.globals(), "create", "--bundle", b, id)...)
			if c := r.fullState(id).Clawrun; c.Policy != "inline" || (hasFS && c.Landlock.Status != "pending") {
				t.Errorf("after create: %s", c)
			}
			r.ok(append(fn.globals(), "start", id)...)
			st := r.fullState(id)
			c := st.Clawrun
			wantLandlock := "enforced"
			if !hasFS {
				wantLandlock = "none"
			}
			if st.Status != "running" || c.Landlock.Status != wantLandlock || c.Seccomp.Loaded != seccompOn {
				t.Errorf("after start: want running, landlock %s, seccomp loaded %v; got %s %s", wantLandlock, seccompOn, st.Status, c)
			}
			checkEgress(t, c, true) // every one of them has network_policies
			t.Logf("%s: %s", name, c)
			ec := &ectr{t: t, r: r, fn: fn, id: id, bundle: b, log: filepath.Join(fn.logDir, id+".egress.jsonl")}
			ec.decides(allowed.name, allowed.binary, strings.NewReplacer(".", "-").Replace(name)+".denied.test")
			// Fields clawrun does not enforce: the same warnings, naming
			// the field, in state as from policy check.
			if got, want := stateWarnings(c), checkWarnings(t, r, f); !slices.Equal(got, want) {
				t.Errorf("state's warnings %q, want policy check's %q", got, want)
			}

			want := "OK"
			if hasFS { // /usr is read-only: a read-only mount too
				want = "ERR EROFS"
			}
			checks := []pcheck{
				pc("write-usr", "write /usr/w/x", want, ""),
				{name: "uid", cmd: "id -u", policy: strconv.Itoa(uids[name]), base: ""},
			}
			res := r.ok(append(fn.globals(), "exec", id, "sh", "-c", checkScript(checks))...)
			verifyChecks(t, name, res.Stdout, checks, wantPolicy)
		})
	}
}

// checkWarnings are the warnings `policy check FILE` prints, without the
// file name: [":LINE"] ": FIELD: REASON", sorted.
func checkWarnings(t *testing.T, r *rtest, file string) []string {
	t.Helper()
	res := r.ok("policy", "check", file)
	var out []string
	for line := range strings.SplitSeq(res.Stdout+res.Stderr, "\n") {
		if rest, ok := strings.CutPrefix(line, "warning: "+file); ok {
			out = append(out, rest)
		}
	}
	slices.Sort(out)
	return out
}

// stateWarnings are state's warnings of an inline policy, in the form of
// checkWarnings.
func stateWarnings(c *confState) []string {
	var out []string
	for _, w := range c.Warnings {
		out = append(out, strings.TrimPrefix(w, "inline"))
	}
	slices.Sort(out)
	return out
}
