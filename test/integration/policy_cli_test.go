package integration

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/opencontainers/runtime-spec/specs-go"
)

// TestPolicyCheckCLI: `clawrun policy check` accepts good files, reports
// file:line: field: reason for bad ones and says so in its exit status.
func TestPolicyCheckCLI(t *testing.T) {
	r := newRuntime(t)
	if !r.isClawrun() {
		t.Skip("not clawrun: policy check is clawrun's own command")
	}
	dir := t.TempDir()
	good := filepath.Join(dir, "good.yaml")
	bad := filepath.Join(dir, "bad.yaml")
	if err := os.WriteFile(good, []byte("filesystem_policy:\n  read_only: [/usr]\n  read_write: [/sandbox]\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(bad, []byte("filesystem_policy:\n  read_only: [/usr]\n  read_write: [/]\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if res := r.run("policy", "check", good); res.Code != 0 || !strings.Contains(res.Stdout, good+": ok") {
		t.Fatalf("a good policy:\n%s", res)
	}
	res := r.run("policy", "check", good, bad)
	if res.Code != 1 {
		t.Fatalf("a bad policy must fail the check with exit 1:\n%s", res)
	}
	if !strings.Contains(res.Stderr, bad+":3: filesystem_policy.read_write[0]") {
		t.Errorf("the error does not name file, line and field:\n%s", res)
	}
	if res := r.run("policy", "check", filepath.Join(dir, "missing.yaml")); res.Code == 0 {
		t.Errorf("a missing file passed the check:\n%s", res)
	}
	if res := r.run("policy", "check"); res.Code == 0 {
		t.Errorf("no file given passed the check:\n%s", res)
	}
	// explain: plain words about what the agent can do; bad input fails.
	if res := r.run("policy", "explain", good); res.Code != 0 || !strings.Contains(res.Stdout, "/sandbox") {
		t.Errorf("explain of a good policy:\n%s", res)
	}
	if res := r.run("policy", "explain", bad); res.Code == 0 {
		t.Errorf("explain of a bad policy succeeded:\n%s", res)
	}
}

// TestPolicyAuditAndListCLI: audit says when a container has no decision
// log (its file denials are all it shows), and list shows a confined container's policy and enforcement.
func TestPolicyAuditAndListCLI(t *testing.T) {
	r := newRuntime(t)
	if !r.isClawrun() {
		t.Skip("not clawrun: audit and the list columns are clawrun's own")
	}
	assertFailure(t, r.run("audit", "no-such-container"), "does not exist")
	dir := r.bundle(func(s *specs.Spec) {
		s.Process.Args = []string{"sleep", "60"}
		s.Annotations = map[string]string{"run.clawrun.policy": "agent-default"}
	})
	id := newID(t)
	r.runDetached(id, dir)
	if res := r.ok("audit", id); !strings.Contains(res.Stderr, "no egress filter") {
		t.Fatalf("audit of a container without network_policies does not say it has no egress filter:\n%s", res.Stderr)
	}
	res := r.ok("list")
	lines := strings.Split(strings.TrimSpace(res.Stdout), "\n")
	if f := strings.Fields(lines[0]); len(f) != 8 || f[6] != "POLICY" || f[7] != "ENFORCED" {
		t.Fatalf("list header with a confined container: %q", lines[0])
	}
	if len(lines) != 2 || !strings.Contains(lines[1], "agent-default") || !strings.Contains(lines[1], "landlock:enforced") || !strings.Contains(lines[1], "seccomp:agent") {
		t.Fatalf("list row of a confined container:\n%s", res.Stdout)
	}
}
