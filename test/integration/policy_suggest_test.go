package integration

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

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
