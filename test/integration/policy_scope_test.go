package integration

import (
	"strings"
	"testing"

	"github.com/opencontainers/runtime-spec/specs-go"

	"github.com/clawrun/clawrun/test/bundle"
)

// TestPolicyScopes: Landlock's signal and abstract unix socket scopes.
//
// Each process the launcher starts gets a Landlock domain of its own: the
// container's init one, every exec'd process another, beside it (not
// nested). So the meaningful "outside" a confined process can reach is a
// sibling domain: an exec'd process trying the init, which listens on an
// abstract socket (the container has its own network namespace, so no
// host process shares its abstract names). Within its own domain (its
// children) a process may signal and connect. The same container under
// the same policy with both scopes off, and without a policy, show that
// the scopes are what refuses.
func TestPolicyScopes(t *testing.T) {
	t.Parallel()
	policyRuntime(t)
	init := `probe abstract-listen initsock 120 & ` + sleeper
	checks := []pcheck{
		pc("signal-init", "kill 1 0", "ERR EPERM kill", "OK"),
		pc("connect-init", "abstract-connect initsock", "ERR EPERM", "OK got hello"),
		{name: "signal-own-child", cmd: bgSleep + "probe kill $p TERM", policy: "OK", base: "OK"},
		{name: "connect-own-child", cmd: `probe abstract-listen own 10 >/dev/null 2>&1 & p=$!
for i in $(seq 100); do out=$(probe abstract-connect own); case $out in *ECONNREFUSED*) sleep 0.05 ;; *) break ;; esac; done
kill $p; echo "$out"`, policy: "OK got hello", base: "OK got hello"},
	}
	noScopes := strings.NewReplacer("scope_signals: true", "scope_signals: false",
		"scope_abstract_unix: true", "scope_abstract_unix: false").Replace(presetFile(t, "agent-default"))
	if !strings.Contains(noScopes, "scope_signals: false") || !strings.Contains(noScopes, "scope_abstract_unix: false") {
		t.Fatalf("agent-default no longer sets the scopes as this test expects:\n%s", noScopes)
	}

	for _, tc := range []struct {
		name  string
		edits []func(*specs.Spec)
		pick  func(pcheck) string
	}{
		{"agent-default", []func(*specs.Spec){withPolicy("agent-default")}, wantPolicy},
		{"scopes-off", []func(*specs.Spec){withInline(noScopes)}, wantBase},
		{"no-policy", nil, wantBase},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			r := policyRuntime(t)
			b := r.probeBundle(append(tc.edits, bundle.Shell(init))...)
			id := newID(t)
			r.runReady(id, b, "OK listening on @initsock")
			res := r.ok("exec", id, "sh", "-c", checkScript(checks))
			verifyChecks(t, tc.name, res.Stdout, checks, tc.pick)
			if tc.name == "agent-default" {
				// The runtime itself is outside every domain.
				r.ok("kill", id, "TERM")
				r.waitStatus(id, "stopped")
			}
		})
	}
}
