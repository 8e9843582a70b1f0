package integration

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/clawrun/clawrun/landlock"
	"github.com/clawrun/clawrun/runtime/policy"
	"github.com/clawrun/clawrun/test/fakenet"
)

// learningPolicy is what an operator runs an agent under to learn its
// policy: the names it may need, audited. audit.test is listed and never
// used, so the suggestion must leave it out.
var learningPolicy = policyDoc(`  learn:
    endpoints:
      - {host: allowed.test, port: 443, enforcement: audit}
      - {host: other.test, port: 80, protocol: rest, enforcement: audit}
      - {host: audit.test, port: 443, enforcement: audit}
`)

// TestPolicySuggest: a run under an audit policy is learned into an
// enforcing policy (policy suggest), which policy check accepts; the same
// agent run under it does everything it did, and nothing else: a name it
// never used and a path it never asked for are denied and never reach
// the fake internet.
func TestPolicySuggest(t *testing.T) {
	r, fn := egressRuntime(t)
	agentRun := func(c *ectr, decision string) {
		t.Helper()
		c.checks(
			echeck{name: "TLS to allowed.test",
				args: []string{"tls", "allowed.test", "443", "allowed.test"},
				out:  "OK cn=allowed.test verify=ok",
				dec:  []want{connWant("tls", "allowed.test", 443, decision, "allowed")},
				saw:  []seen{sawTLS("allowed.test", fn.ip(hAllowed))}},
			echeck{name: "plain HTTP to other.test, a first path",
				args: []string{"http", "other.test", "80", "other.test", "-", "/docs/one"},
				out:  "OK 200 host=other.test local=" + fn.ip(hOther) + " path=/docs/one",
				dec:  []want{connWant("http", "other.test", 80, decision, "allowed")},
				saw:  []seen{sawHTTP("other.test", fn.ip(hOther))}},
			echeck{name: "plain HTTP to other.test, a second path",
				args: []string{"http", "other.test", "80", "other.test", "-", "/api/two"},
				out:  "OK 200 host=other.test local=" + fn.ip(hOther) + " path=/api/two",
				dec:  []want{connWant("http", "other.test", 80, decision, "allowed")},
				saw:  []seen{sawHTTP("other.test", fn.ip(hOther))}},
		)
	}

	learning := fn.startPolicy(r, learningPolicy)
	agentRun(learning, "allow")
	learned := filepath.Join(t.TempDir(), "learned.yaml")
	r.ok(append(fn.globals(), "policy", "suggest", "-o", learned, learning.id)...)
	r.ok(append(fn.globals(), "policy", "check", learned)...)
	data, err := os.ReadFile(learned)
	if err != nil {
		t.Fatal(err)
	}
	suggested := string(data)
	for _, want := range []string{"host: allowed.test", "host: other.test", "path: /docs/one", "path: /api/two", "enforcement: enforce"} {
		if !strings.Contains(suggested, want) {
			t.Errorf("the suggestion lacks %q:\n%s", want, suggested)
		}
	}
	for _, never := range []string{"audit.test", "enforcement: audit"} {
		if strings.Contains(suggested, never) {
			t.Errorf("the suggestion has %q, which the run never needed:\n%s", never, suggested)
		}
	}

	// Nothing to learn from: an error, and no file.
	for _, args := range [][]string{
		{"policy", "suggest", "-o", learned + ".none", "no-such-container"},
		{"policy", "suggest", "-o", learned + ".none", "--from-log", learning.log, learning.id},
		{"policy", "suggest", "-o", learned + ".none", "--from-log", learning.log + ".missing"},
	} {
		if res := r.run(append(fn.globals(), args...)...); res.Code == 0 {
			t.Errorf("%v succeeded:\n%s", args, res)
		}
		if _, err := os.Stat(learned + ".none"); err == nil {
			t.Errorf("%v wrote a file", args)
		}
	}

	enforced := fn.startPolicy(r, suggested)
	agentRun(enforced, "allow") // positive control: everything the run did
	enforced.checks(
		fn.deniedSNI("a name the run never used", fn.ip(hAudit), "audit.test"),
		echeck{name: "a path the run never asked for",
			args:  []string{"http", "other.test", "80", "other.test", "-", "/admin"},
			out:   "OK 403 clawrun: egress to other.test:80 denied (request)",
			dec:   []want{connWant("http", "other.test", 80, "deny", "request")},
			never: []seen{{"an HTTP request", fakenet.OfKind("http")}}},
	)
	enforced.decides("", "", "audit.test")
	for _, d := range enforced.decisions() {
		if d.Decision == "audit" {
			t.Errorf("the suggested policy audits instead of enforcing: %s", d)
		}
	}
}

// TestPolicySuggestInspected: the requests of an inspected HTTPS endpoint
// audited in the learning run become its rules: the enforced run may
// send them again, and a request it never sent is refused (403) and never
// reaches the upstream.
func TestPolicySuggestInspected(t *testing.T) {
	r, fn := egressRuntime(t)
	const args = "https allowed.test 8443 allowed.test h1 allowed.test GET:/learn/a POST:/learn/b"
	learning := fn.startInspected(t, r, policyDoc(`  learn:
    endpoints:
      - {host: allowed.test, port: 8443, tls: terminate, enforcement: audit}
`))
	line := learning.check(echeck{name: "the learning run", args: strings.Fields(args),
		out: `OK issuer="clawrun egress CA `,
		saw: []seen{sawHTTPS("GET", "allowed.test", "/learn/a"), sawHTTPS("POST", "allowed.test", "/learn/b")}})
	wantParts(t, line, "200 GET /learn/a conn=1", "200 POST /learn/b conn=1")
	learning.waitRequest("POST", "/learn/b")

	learned := filepath.Join(t.TempDir(), "learned.yaml")
	r.ok("--config", fn.inspectConfig(t), "policy", "suggest", "-o", learned, learning.id)
	r.ok(append(fn.globals(), "policy", "check", learned)...)
	data, err := os.ReadFile(learned)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"allow: {method: GET, path: /learn/a}", "allow: {method: POST, path: /learn/b}"} {
		if !strings.Contains(string(data), want) {
			t.Errorf("the suggestion lacks %q:\n%s", want, data)
		}
	}

	enforced := fn.startInspected(t, r, string(data))
	line = enforced.check(echeck{name: "the same requests, and one never sent",
		args:  append(strings.Fields(args), "GET:/admin"),
		out:   `OK issuer="clawrun egress CA `,
		saw:   []seen{sawHTTPS("GET", "allowed.test", "/learn/a"), sawHTTPS("POST", "allowed.test", "/learn/b")},
		never: []seen{sawHTTPS("GET", "allowed.test", "/admin")}})
	wantParts(t, line, "200 GET /learn/a conn=1", "200 POST /learn/b conn=1", "403 GET /admin conn=1")
	if rec := enforced.waitRequest("GET", "/admin"); rec.Decision != "deny" || rec.Reason != "request" {
		t.Errorf("the request never sent: %+v, want denied (request)", rec)
	}
	if rec := enforced.waitRequest("POST", "/learn/b"); rec.Decision != "allow" {
		t.Errorf("a learned request: %+v, want allowed", rec)
	}
}

// TestPolicySuggestAfterApply: suggest starts from the network policy in
// force. After policy apply that is the applied one (its name, its keys,
// none of the endpoints it dropped), not the one the container was
// created with; when the policy in force is not on record, suggest says
// so and learns only with --base.
func TestPolicySuggestAfterApply(t *testing.T) {
	r, fn := egressRuntime(t)
	learning := fn.startPolicy(r, policyDoc(`  created:
    endpoints:
      - {host: dropped.test, port: 443}
      - {host: allowed.test, port: 443, enforcement: audit}
`))
	applied := writeTemp(t, "applied.yaml", policyDoc(`  applied:
    endpoints:
      - {host: allowed.test, port: 443, enforcement: audit}
      - {host: other.test, port: 80, protocol: rest, enforcement: audit}
`))
	r.ok(append(fn.globals(), "policy", "apply", learning.id, applied)...)
	learning.checks(
		echeck{name: "TLS to allowed.test",
			args: []string{"tls", "allowed.test", "443", "allowed.test"},
			out:  "OK cn=allowed.test verify=ok",
			dec:  []want{connWant("tls", "allowed.test", 443, "allow", "allowed")},
			saw:  []seen{sawTLS("allowed.test", fn.ip(hAllowed))}},
		echeck{name: "plain HTTP to other.test, which only the applied policy lists",
			args: []string{"http", "other.test", "80", "other.test", "-", "/docs"},
			out:  "OK 200 host=other.test local=" + fn.ip(hOther) + " path=/docs",
			dec:  []want{connWant("http", "other.test", 80, "allow", "allowed")},
			saw:  []seen{sawHTTP("other.test", fn.ip(hOther))}},
	)

	suggest := func(args ...string) (string, result) {
		out := filepath.Join(t.TempDir(), "learned.yaml")
		res := r.run(append(fn.globals(), append([]string{"policy", "suggest", "-o", out}, args...)...)...)
		data, _ := os.ReadFile(out)
		return string(data), res
	}
	suggested, res := suggest(learning.id)
	if res.Code != 0 {
		t.Fatalf("policy suggest after apply: %s", res)
	}
	for _, want := range []string{"Starting from the policy " + applied, "  applied:", "host: allowed.test", "host: other.test", "path: /docs"} {
		if !strings.Contains(suggested, want) {
			t.Errorf("the suggestion lacks %q:\n%s", want, suggested)
		}
	}
	for _, never := range []string{"dropped.test", "created:", "learned:"} {
		if strings.Contains(suggested, never) {
			t.Errorf("the suggestion has %q, from the policy the apply replaced:\n%s", never, suggested)
		}
	}

	// The policy in force not on record (a record lost, or an apply by a
	// clawrun that kept none): no guess from the created one.
	if err := os.Remove(filepath.Join(r.root, learning.id, "egress-applied.json")); err != nil {
		t.Fatal(err)
	}
	if text, res := suggest(learning.id); res.Code == 0 || !strings.Contains(res.Stderr, "--base") || text != "" {
		t.Errorf("policy suggest without the applied policy's record: want an error naming --base, and no file: %s\n%s", res, text)
	}
	if text, res := suggest("--base", applied, learning.id); res.Code != 0 || !strings.Contains(text, "host: other.test") || strings.Contains(text, "dropped.test") {
		t.Errorf("policy suggest --base with the applied policy: %s\n%s", res, text)
	}
}

// TestPolicySuggestFiles: the file accesses Landlock refused a learning
// run (the kernel's audit reports them) are learned into
// filesystem_policy: a refused write of /work/out makes /work
// read_write, a refused read of /data/in makes /data read_only, and the
// same commands then succeed under the suggested policy, while a write
// elsewhere (/opt/x) is still refused. With the host's audit off, suggest
// says in one line that nothing is learned for files, and still writes the
// network part.
func TestPolicySuggestFiles(t *testing.T) {
	if abi := landlock.ABI(); abi < 7 {
		t.Skipf("kernel lacks Landlock ABI 7 (it has %d): denials are logged from ABI 7 (Linux 6.15) on", abi)
	}
	r, fn := egressRuntime(t)
	setSysctl(t, "/proc/sys/kernel/printk_ratelimit_burst", "10000")
	const learningDoc = `version: 1
filesystem_policy:
  read_only: [/bin, /usr, /lib, /etc, /proc]
  read_write: [/tmp, /dev/null]
network_policies:
  learn:
    endpoints:
      - {host: allowed.test, port: 443, enforcement: audit}
`
	// Both accesses are tried, whichever fails.
	const agentWork = "{ echo out > /work/out; w=$?; cat /data/in && [ $w = 0 ]; }"
	start := func(doc string) *ectr {
		b := fn.egressBundle(r, withInline(doc))
		writeRootfs(t, b, "/data/in", "input-data\n", 0o644)
		mkdirRootfs(t, b, "/work", "/opt")
		return fn.start(r, b)
	}
	// shell runs cmd in c and says whether it succeeded.
	shell := func(c *ectr, cmd string) string {
		return c.exec("sh", "-c", cmd+" 2>&1 && echo SUCCEEDED || echo FAILED")
	}
	suggest := func(c *ectr) (string, result) {
		out := filepath.Join(t.TempDir(), "learned.yaml")
		res := r.run(append(fn.globals(), "policy", "suggest", "-o", out, c.id)...)
		data, _ := os.ReadFile(out)
		return string(data), res
	}

	learning := start(learningDoc)
	learning.checks(echeck{name: "TLS to allowed.test",
		args: []string{"tls", "allowed.test", "443", "allowed.test"},
		out:  "OK cn=allowed.test verify=ok",
		dec:  []want{connWant("tls", "allowed.test", 443, "allow", "allowed")},
		saw:  []seen{sawTLS("allowed.test", fn.ip(hAllowed))}})

	// Audit off: the kernel reports no denial; the network part is still
	// learned.
	setAudit(t, 0)
	if out := shell(learning, agentWork); out != "FAILED" {
		t.Fatalf("the learning run's file accesses were not refused: %q", out)
	}
	text, res := suggest(learning)
	if res.Code != 0 || !strings.Contains(text, "host: allowed.test") {
		t.Fatalf("policy suggest with audit off: %s\n%s", res, text)
	}
	if lines := strings.Split(strings.TrimSpace(res.Stderr), "\n"); len(lines) != 1 || !strings.Contains(lines[0], "file denials: not reported: the host's audit is off") {
		t.Errorf("policy suggest with audit off does not say so in one line:\n%s", res.Stderr)
	}
	if p := parsePolicy(t, text); slices.Contains(p.FilesystemPolicy.ReadWrite, "/work") || slices.Contains(p.FilesystemPolicy.ReadOnly, "/data") {
		t.Errorf("files learned with audit off:\n%s", text)
	}

	// Audit on: the refused accesses are learned.
	setAudit(t, 1)
	if out := shell(learning, agentWork); out != "FAILED" {
		t.Fatalf("the learning run's file accesses were not refused: %q", out)
	}
	suggested, res := suggest(learning)
	if res.Code != 0 {
		t.Fatalf("policy suggest: %s", res)
	}
	t.Logf("suggested:\n%s", suggested)
	r.ok(append(fn.globals(), "policy", "check", writeTemp(t, "learned.yaml", suggested))...)
	fs := parsePolicy(t, suggested).FilesystemPolicy
	if !slices.Contains(fs.ReadWrite, "/work") || !slices.Contains(fs.ReadOnly, "/data") {
		t.Errorf("the suggestion lacks read_write /work and read_only /data: %+v", fs)
	}
	for _, p := range append(slices.Clone(fs.ReadWrite), fs.ReadOnly...) {
		if p == "/" || p == "/opt" || p == "/data/in" || p == "/work/out" {
			t.Errorf("the suggestion grants %s: %+v", p, fs)
		}
	}
	for _, want := range []string{"filesystem_policy: learned from Landlock denials:", "read_write /work, for fs.", "read_only /data, for fs.read_file /data/in", "host: allowed.test"} {
		if !strings.Contains(suggested, want) {
			t.Errorf("the suggestion lacks %q:\n%s", want, suggested)
		}
	}

	enforced := start(suggested)
	if out := shell(enforced, agentWork); out != "SUCCEEDED" {
		t.Errorf("the learned accesses under the suggested policy: %q, want them to succeed", out)
	}
	if got := readFile(inRootfs(enforced.bundle, "/work/out")); got != "out\n" {
		t.Errorf("/work/out under the suggested policy: %q", got)
	}
	if out := shell(enforced, "echo no > /opt/x"); out != "FAILED" {
		t.Errorf("a write the run never needed (/opt/x): %q, want it refused", out)
	}
	if _, err := os.Stat(inRootfs(enforced.bundle, "/opt/x")); err == nil {
		t.Errorf("/opt/x was written under the suggested policy")
	}
}

// parsePolicy parses a policy document, failing the test if it does not.
func parsePolicy(t *testing.T, text string) *policy.Policy {
	t.Helper()
	p, err := policy.Parse("suggested.yaml", []byte(text))
	if err != nil {
		t.Fatalf("%v\n%s", err, text)
	}
	return p
}
