package rules

import (
	"net/netip"
	"slices"
	"strings"
	"testing"

	"github.com/clawrun/clawrun/runtime/policy"
)

func polLayer(source string, pols map[string]policy.NetworkPolicy) policy.NetworkLayer {
	return policy.NetworkLayer{Source: source, Policies: pols}
}

func polEP(host string, ports ...int) policy.Endpoint {
	return policy.Endpoint{Host: host, Ports: ports}
}

func mustRules(t *testing.T, layers ...policy.NetworkLayer) *Rules {
	t.Helper()
	r, _ := FromPlan(layers, 1)
	return r
}

// testContainer is a typical testContainer policy.
var testContainer = polLayer("inline", map[string]policy.NetworkPolicy{
	"github": {Endpoints: []policy.Endpoint{
		polEP("github.com", 443),
		polEP("*.githubusercontent.com", 443),
	}},
	"pypi": {Endpoints: []policy.Endpoint{polEP("pypi.org", 443, 80)}},
	"db":   {Endpoints: []policy.Endpoint{{Host: "db.internal.example", Ports: []int{5432}, Protocol: "tcp", AllowedIPs: []string{"10.0.0.0/8"}}}},
	"audited": {Endpoints: []policy.Endpoint{
		{Host: "audit.example.com", Ports: []int{443}, Enforcement: "audit", Protocol: "rest", Access: "read-only"},
		{Host: "audit-skip.example", Ports: []int{443}, Enforcement: "audit", Protocol: "rest", Access: "read-only", TLS: "skip"},
	}},
	"curl-only": {
		Endpoints: []policy.Endpoint{polEP("api.curl.example", 443)},
		Binaries:  []policy.Binary{{Path: "/usr/bin/curl"}, {Path: "/opt/tools/**/agent"}},
	},
	"l7-tls": {Endpoints: []policy.Endpoint{
		{Host: "api.tls.example", Ports: []int{443}, Protocol: "rest", Rules: []policy.Rule{{Method: "GET", Path: "/repos/**"}}},
		{Host: "skip.example", Ports: []int{443}, Protocol: "rest", Access: "read-only", TLS: "skip"},
	}},
	"l7-http": {Endpoints: []policy.Endpoint{
		{Host: "plain.example", Ports: []int{80}, Protocol: "rest",
			Rules:     []policy.Rule{{Method: "GET", Path: "/repos/**"}, {Method: "POST", Path: "/repos/*/issues", Query: map[string]string{"state": "open*"}}},
			DenyRules: []policy.Rule{{Method: "GET", Path: "/repos/secret/**"}}},
		{Host: "ro.example", Ports: []int{80}, Protocol: "rest", Access: "read-only"},
		{Host: "rw.example", Ports: []int{8080}, Protocol: "rest", Access: "read-write"},
		{Host: "full.example", Ports: []int{80}, Protocol: "rest", Access: "full", DenyRules: []policy.Rule{{Path: "/admin/**"}}},
		{Host: "mcp.example", Ports: []int{80}, Protocol: "mcp", Path: "/mcp", Rules: []policy.Rule{{Method: "tools/list"}}},
	}},
	"pathonly": {Endpoints: []policy.Endpoint{{Host: "path.example", Ports: []int{80}, Protocol: "rest", Path: "/v1/**"}}},
})

func TestMatch(t *testing.T) {
	r := mustRules(t, testContainer)
	for _, tc := range []struct {
		host   string
		port   int
		allow  bool
		audit  bool
		reason Reason
		rule   string
	}{
		{"github.com", 443, true, false, ReasonAllowed, "github"},
		{"GitHub.COM", 443, true, false, ReasonAllowed, "github"},
		{"github.com.", 443, true, false, ReasonAllowed, "github"},
		{"github.com..", 443, false, false, ReasonNotAllowed, ""},
		{"github.com", 22, false, false, ReasonPort, "github"},
		{"api.github.com", 443, false, false, ReasonNotAllowed, ""},
		{"xgithub.com", 443, false, false, ReasonNotAllowed, ""},
		{"github.com.evil.com", 443, false, false, ReasonNotAllowed, ""},
		{"raw.githubusercontent.com", 443, true, false, ReasonAllowed, "github"},
		{"RAW.GitHubUserContent.com.", 443, true, false, ReasonAllowed, "github"},
		{"githubusercontent.com", 443, false, false, ReasonNotAllowed, ""},       // wildcard: not the bare name
		{"a.b.githubusercontent.com", 443, false, false, ReasonNotAllowed, ""},   // nor deeper
		{".githubusercontent.com", 443, false, false, ReasonNotAllowed, ""},      // empty label
		{"evil-githubusercontent.com", 443, false, false, ReasonNotAllowed, ""},  // not a label boundary
		{"raw.githubusercontent.com", 80, false, false, ReasonPort, "github"},    // port
		{"a b.githubusercontent.com", 443, false, false, ReasonNotAllowed, ""},   // not a host name
		{"a\x00.githubusercontent.com", 443, false, false, ReasonNotAllowed, ""}, // NUL
		{"1.2.3.4", 443, false, false, ReasonIPLiteral, ""},                      // IP literal
		{"[::1]", 443, false, false, ReasonIPLiteral, ""},                        // IP literal
		{"pypi.org", 80, true, false, ReasonAllowed, "pypi"},                     // several ports
		{"db.internal.example", 5432, true, false, ReasonAllowed, "db"},          // tcp
		{"audit.example.com", 443, true, false, ReasonAllowed, "audited"},        // inspected: its requests are audited
		{"audit-skip.example", 443, true, true, ReasonUnenforceable, "audited"},  // audit waives unenforceable
		{"audit.example.com", 80, false, false, ReasonPort, "audited"},           // never the port
		{"other.example.com", 443, false, false, ReasonNotAllowed, ""},           // nor other names
		{"api.curl.example", 443, false, false, ReasonBinary, "curl-only"},       // unknown process
		{"api.tls.example", 443, true, false, ReasonAllowed, "l7-tls"},           // L7 over TLS: inspected
		{"plain.example", 80, true, false, ReasonAllowed, "l7-http"},             // TLS on an L7 port-80 endpoint: inspected
		{"skip.example", 443, false, false, ReasonUnenforceable, "l7-tls"},       // L7 over TLS with tls: skip
		{"", 443, false, false, ReasonNotAllowed, ""},                            // empty
		{strings.Repeat("a", 64) + ".githubusercontent.com", 443, false, false, ReasonNotAllowed, ""},
	} {
		d := r.Match(tc.host, tc.port)
		if d.Allow != tc.allow || d.Audit != tc.audit || d.Reason != tc.reason || d.Rule != tc.rule {
			t.Errorf("Match(%q, %d) = %+v, want allow=%v audit=%v reason=%s rule=%q", tc.host, tc.port, d, tc.allow, tc.audit, tc.reason, tc.rule)
		}
		if d.Allow && d.Endpoint == nil {
			t.Errorf("Match(%q, %d): allowed without an endpoint", tc.host, tc.port)
		}
	}
}

func TestMatchIDN(t *testing.T) {
	r := mustRules(t, polLayer("inline", map[string]policy.NetworkPolicy{
		"idn": {Endpoints: []policy.Endpoint{polEP("xn--bcher-kva.example", 443), polEP("*.xn--mnchen-3ya.de", 443)}},
	}))
	for _, tc := range []struct {
		host  string
		allow bool
	}{
		{"xn--bcher-kva.example", true},
		{"bücher.example", true},
		{"bücher.example.", true},
		{"www.münchen.de", true},
		{"www.xn--mnchen-3ya.de", true},
		{"bucher.example", false},
		{"b\u00fccher\u0000.example", false},
		{"bu\u0308cher.example", false},     // not NFC: refused, not mapped
		{"BÜCHER.example", false},           // a U-label in upper case: refused, not mapped
		{"xn--zz.xn--mnchen-3ya.de", false}, // not an A-label, even under a wildcard
		{"\xff.example", false},
	} {
		if d := r.Match(tc.host, 443); d.Allow != tc.allow {
			t.Errorf("Match(%q) = %+v, want allow=%v", tc.host, d, tc.allow)
		}
	}
}

func TestLayersAND(t *testing.T) {
	floor := polLayer("floor", map[string]policy.NetworkPolicy{
		"corp": {Endpoints: []policy.Endpoint{polEP("*.corp.example", 443), polEP("github.com", 443), {Host: "db.corp.example", Ports: []int{5432}, AllowedIPs: []string{"10.1.0.0/16"}}}},
	})
	cont := polLayer("inline", map[string]policy.NetworkPolicy{
		"mine": {Endpoints: []policy.Endpoint{
			polEP("api.corp.example", 443, 8443),
			polEP("github.com", 443, 22),
			polEP("evil.example", 443),
			{Host: "db.corp.example", Ports: []int{5432}, AllowedIPs: []string{"10.0.0.0/8", "192.168.1.0/24"}},
		}},
	})
	r := mustRules(t, floor, cont)
	for _, tc := range []struct {
		host   string
		port   int
		allow  bool
		reason Reason
		layer  string
	}{
		{"api.corp.example", 443, true, ReasonAllowed, "inline"},
		{"api.corp.example", 8443, false, ReasonPort, "floor"},       // the testContainer cannot widen the floor's ports
		{"github.com", 22, false, ReasonPort, "floor"},               // nor ports
		{"evil.example", 443, false, ReasonNotAllowed, "floor"},      // nor names
		{"www.corp.example", 443, false, ReasonNotAllowed, "inline"}, // and narrows it
	} {
		d := r.Match(tc.host, tc.port)
		if d.Allow != tc.allow || d.Reason != tc.reason || d.Layer != tc.layer {
			t.Errorf("Match(%q, %d) = %+v, want allow=%v reason=%s layer=%s", tc.host, tc.port, d, tc.allow, tc.reason, tc.layer)
		}
	}
	// allowed_ips intersect across layers.
	d := r.Match("db.corp.example", 5432)
	if !d.Allow || !slices.Equal(d.AllowedIPs, []netip.Prefix{netip.MustParsePrefix("10.1.0.0/16")}) {
		t.Errorf("db: %+v, want AllowedIPs [10.1.0.0/16]", d)
	}
	for ip, want := range map[string]bool{"10.1.2.3": true, "10.2.0.1": false, "192.168.1.5": false, "8.8.8.8": true} {
		if ok, _ := Permitted(netip.MustParseAddr(ip), d.AllowedIPs, nil); ok != want {
			t.Errorf("Permitted(%s) = %v, want %v", ip, ok, want)
		}
	}
	if d := r.NameAllowed("db.corp.example"); !d.Allow || !slices.Equal(d.AllowedIPs, []netip.Prefix{netip.MustParsePrefix("10.1.0.0/16")}) {
		t.Errorf("NameAllowed(db): %+v, want AllowedIPs [10.1.0.0/16]", d)
	}
	// DNS: the name must be in every layer.
	for name, want := range map[string]bool{"api.corp.example": true, "evil.example": false, "www.corp.example": false, "GITHUB.com.": true} {
		if d := r.NameAllowed(name); d.Allow != want {
			t.Errorf("NameAllowed(%q) = %+v, want %v", name, d, want)
		}
	}
	// No layers: nothing allowed.
	if d := (&Rules{}).Match("github.com", 443); d.Allow {
		t.Errorf("empty rules allowed: %+v", d)
	}
	var nilRules *Rules
	if d := nilRules.NameAllowed("github.com"); d.Allow {
		t.Errorf("nil rules allowed: %+v", d)
	}
	// A layer with no policies denies everything.
	r = mustRules(t, floor, polLayer("inline", map[string]policy.NetworkPolicy{}))
	if d := r.Match("github.com", 443); d.Allow || d.Layer != "inline" {
		t.Errorf("empty testContainer layer: %+v", d)
	}
}

func TestMatchBinary(t *testing.T) {
	r := mustRules(t, testContainer)
	for _, tc := range []struct {
		exes   []string
		allow  bool
		reason Reason
	}{
		{nil, false, ReasonBinary},
		{[]string{"/usr/bin/wget"}, false, ReasonBinary},
		{[]string{"/usr/bin/curl"}, true, ReasonAllowed},
		{[]string{"/usr/bin/python3", "/usr/bin/bash", "/usr/bin/curl"}, true, ReasonAllowed}, // an ancestor
		{[]string{"/usr/bin/../bin/curl"}, true, ReasonAllowed},                               // cleaned
		{[]string{"usr/bin/curl"}, false, ReasonBinary},                                       // relative
		{[]string{"/usr/bin/curl2"}, false, ReasonBinary},
		{[]string{"/opt/tools/agent"}, true, ReasonAllowed}, // ** is zero or more segments
		{[]string{"/opt/tools/a/b/agent"}, true, ReasonAllowed},
		{[]string{"/opt/tools/a/b/agent2"}, false, ReasonBinary},
	} {
		exes := slices.Clone(tc.exes)
		d := r.MatchBinary("api.curl.example", 443, exes)
		if d.Allow != tc.allow || d.Reason != tc.reason {
			t.Errorf("MatchBinary(%v) = %+v, want allow=%v reason=%s", tc.exes, d, tc.allow, tc.reason)
		}
		if !slices.Equal(exes, tc.exes) {
			t.Errorf("MatchBinary modified its argument: %v", exes)
		}
	}
	// Endpoints without binaries match any process; DNS ignores binaries.
	if d := r.MatchBinary("github.com", 443, []string{"/usr/bin/wget"}); !d.Allow {
		t.Errorf("github.com for wget: %+v", d)
	}
	if d := r.NameAllowed("api.curl.example"); !d.Allow {
		t.Errorf("NameAllowed(api.curl.example) = %+v", d)
	}
	// Wrong port beats binary? No: binary is further down the checks.
	if d := r.MatchBinary("api.curl.example", 80, []string{"/usr/bin/curl"}); d.Reason != ReasonPort {
		t.Errorf("wrong port: %+v", d)
	}
	// Glob semantics.
	for _, tc := range []struct {
		pat, name string
		want      bool
	}{
		{"/usr/bin/*", "/usr/bin/curl", true},
		{"/usr/bin/*", "/usr/bin/x/curl", false},
		{"/usr/**", "/usr/bin/x/curl", true},
		{"/usr/**/curl", "/usr/curl", true},
		{"/**", "/anything/at/all", true},
		{"/usr/bin/python3.*", "/usr/bin/python3.12", true},
		{"/usr/bin/[", "/usr/bin/[", false}, // bad pattern matches nothing
	} {
		if got := globMatch(tc.pat, tc.name); got != tc.want {
			t.Errorf("globMatch(%q, %q) = %v, want %v", tc.pat, tc.name, got, tc.want)
		}
	}
}

// Several processes hold one connection: a binary-restricted policy must
// allow every one of them, and the decision names one it refused.
func TestMatchBinarySeveralProcesses(t *testing.T) {
	r := mustRules(t, testContainer)
	curl := []string{"/usr/bin/curl", "/usr/bin/bash"}
	agent := []string{"/opt/tools/x/agent"}
	wget := []string{"/usr/bin/wget", "/usr/bin/bash"}
	for _, tc := range []struct {
		name   string
		exes   []string
		allow  bool
		binary string
	}{
		{"one allowed process", JoinChains(curl), true, "/usr/bin/curl"},
		{"two allowed processes", JoinChains(curl, agent), true, "/usr/bin/curl"},
		{"an allowed and a refused process", JoinChains(curl, wget), false, "/usr/bin/wget"},
		{"a refused and an allowed process", JoinChains(wget, curl), false, "/usr/bin/wget"},
		{"a process of unknown executable", JoinChains(curl, nil), false, ""},
		// The chain end is never taken for an executable of a chain.
		{"only chain ends", []string{chainEnd, chainEnd}, false, ""},
	} {
		d := r.MatchBinary("api.curl.example", 443, tc.exes)
		if d.Allow != tc.allow || d.Binary != tc.binary {
			t.Errorf("%s: MatchBinary(%q) = allow %v binary %q, want %v %q", tc.name, tc.exes, d.Allow, d.Binary, tc.allow, tc.binary)
		}
		if !tc.allow && d.Reason != ReasonBinary {
			t.Errorf("%s: reason %s, want binary", tc.name, d.Reason)
		}
	}
	// Endpoints without binaries do not care how many processes hold it.
	if d := r.MatchBinary("github.com", 443, JoinChains(curl, wget)); !d.Allow || d.Binary != "/usr/bin/curl" {
		t.Errorf("github.com for curl and wget: %+v", d)
	}
}

// DNS answers a binary-restricted name only to its processes.
func TestNameAllowedFor(t *testing.T) {
	r := mustRules(t, testContainer, polLayer("floor", map[string]policy.NetworkPolicy{
		"any":    {Endpoints: []policy.Endpoint{polEP("api.curl.example", 443), polEP("github.com", 443), polEP("x.example", 443)}},
		"git":    {Endpoints: []policy.Endpoint{polEP("*.githubusercontent.com", 443)}, Binaries: []policy.Binary{{Path: "/usr/bin/git"}}},
		"audits": {Endpoints: []policy.Endpoint{{Host: "audit.example.com", Ports: []int{443}, Enforcement: "audit"}}, Binaries: []policy.Binary{{Path: "/usr/bin/git"}}},
	}))
	for _, tc := range []struct {
		name         string
		exes         []string
		allow, audit bool
		reason       Reason
	}{
		{"github.com", nil, true, false, ReasonAllowed},
		{"api.curl.example", nil, false, false, ReasonBinary},
		{"api.curl.example", []string{"/usr/bin/wget"}, false, false, ReasonBinary},
		{"api.curl.example", []string{"/usr/bin/curl"}, true, false, ReasonAllowed},
		// Any port of the name: the container's 443 only, the floor's any.
		{"raw.githubusercontent.com", []string{"/usr/bin/curl"}, false, false, ReasonBinary}, // the floor's git only
		{"raw.githubusercontent.com", JoinChains([]string{"/usr/bin/git"}), true, false, ReasonAllowed},
		{"raw.githubusercontent.com", JoinChains([]string{"/usr/bin/git"}, []string{"/usr/bin/sh"}), false, false, ReasonBinary},
		{"audit.example.com", nil, true, true, ReasonBinary},
		{"audit.example.com", []string{"/usr/bin/git"}, true, false, ReasonAllowed},
		{"x.example", []string{"/usr/bin/curl"}, false, false, ReasonNotAllowed}, // not in the container's policy
	} {
		d := r.NameAllowedFor(tc.name, tc.exes)
		if d.Allow != tc.allow || d.Audit != tc.audit || d.Reason != tc.reason {
			t.Errorf("NameAllowedFor(%s, %q) = %+v, want allow=%v audit=%v reason=%s", tc.name, tc.exes, d, tc.allow, tc.audit, tc.reason)
		}
	}
	// NameAllowed: for some process, whichever.
	if d := r.NameAllowed("api.curl.example"); !d.Allow {
		t.Errorf("NameAllowed(api.curl.example) = %+v", d)
	}
}

func TestAuditBinary(t *testing.T) {
	r := mustRules(t, polLayer("inline", map[string]policy.NetworkPolicy{
		"a": {Endpoints: []policy.Endpoint{{Host: "x.example", Ports: []int{443}, Enforcement: "audit"}}, Binaries: []policy.Binary{{Path: "/usr/bin/git"}}},
		"b": {Endpoints: []policy.Endpoint{{Host: "y.example", Ports: []int{443}}}},
	}))
	d := r.MatchBinary("x.example", 443, []string{"/usr/bin/curl"})
	if !d.Allow || !d.Audit || d.Reason != ReasonBinary || d.Rule != "a" {
		t.Errorf("audit binary: %+v", d)
	}
	d = r.MatchBinary("x.example", 443, []string{"/usr/bin/git"})
	if !d.Allow || d.Audit || d.Reason != ReasonAllowed {
		t.Errorf("audit endpoint, matching binary: %+v", d)
	}
	// An audit-only layer does not open other names.
	if d := r.Match("z.example", 443); d.Allow {
		t.Errorf("audit opened another name: %+v", d)
	}
	// Enforced endpoints win over audited ones for the same name.
	r = mustRules(t, polLayer("inline", map[string]policy.NetworkPolicy{
		"a": {Endpoints: []policy.Endpoint{{Host: "x.example", Ports: []int{443}, Enforcement: "audit", Protocol: "rest", Access: "read-only", TLS: "skip"}}},
		"b": {Endpoints: []policy.Endpoint{{Host: "x.example", Ports: []int{443}}}},
	}))
	if d := r.Match("x.example", 443); !d.Allow || d.Audit || d.Rule != "b" {
		t.Errorf("enforced over audit: %+v", d)
	}
}

func TestFromPlanWarnings(t *testing.T) {
	r, warns := FromPlan([]policy.NetworkLayer{testContainer, polLayer("floor", map[string]policy.NetworkPolicy{
		"t": {Endpoints: []policy.Endpoint{
			{Host: "term.example", Ports: []int{443}, TLS: "terminate"},
			{Host: "skip.example", Ports: []int{8443}, TLS: "skip", Protocol: "rest", DenyRules: []policy.Rule{{Method: "DELETE"}}, Access: "full"},
			{Host: "bad..example", Ports: []int{443}},
			{Host: "ips.example", Ports: []int{443}, AllowedIPs: []string{"10.0.0.1", "nope", "fd00::/8"}},
		}},
	})}, 7)
	if r.Generation != 7 || len(r.Layers) != 2 {
		t.Fatalf("rules: %+v", r)
	}
	got := map[string]string{}
	for _, w := range warns {
		got[w.File+":"+w.Field] = w.Reason
	}
	for _, want := range []string{
		"inline:network_policies.l7-tls.endpoints[1].access", // tls: skip
		"inline:network_policies.audited.endpoints[1].access",
		"floor:network_policies.t.endpoints[1].deny_rules",
		"floor:network_policies.t.endpoints[2].host",
		"floor:network_policies.t.endpoints[3].allowed_ips[1]",
	} {
		if _, ok := got[want]; !ok {
			t.Errorf("no warning %s; got %v", want, got)
		}
	}
	// Inspected endpoints (request fields, or tls: terminate) and
	// plain-HTTP endpoints with rules are not warned about.
	for k := range got {
		for _, quiet := range []string{"l7-http.", "l7-tls.endpoints[0]", "audited.endpoints[0]", "t.endpoints[0]"} {
			if strings.Contains(k, quiet) {
				t.Errorf("unexpected warning %s: %s", k, got[k])
			}
		}
	}
	eps := r.Layers[1].Policies[0].Endpoints
	if len(eps) != 3 {
		t.Fatalf("floor endpoints: %+v", eps)
	}
	if eps[1].Unenforceable == "" || eps[1].Inspect || eps[1].L7 == nil || len(eps[1].L7.Deny) != 1 {
		t.Errorf("skip endpoint: %+v", eps[1])
	}
	if !eps[0].Inspect || eps[0].L7 != nil || eps[0].Unenforceable != "" {
		t.Errorf("terminate endpoint: %+v", eps[0])
	}
	if want := []netip.Prefix{netip.MustParsePrefix("10.0.0.1/32"), netip.MustParsePrefix("fd00::/8")}; !slices.Equal(eps[2].AllowedIPs, want) {
		t.Errorf("allowed_ips: %v", eps[2].AllowedIPs)
	}
	// The TLS endpoint with rules denies TLS whatever the request.
	if d := r.Match("skip.example", 8443); d.Allow {
		t.Errorf("skip.example allowed: %+v", d)
	}
}

func TestMatchRequest(t *testing.T) {
	r := mustRules(t, testContainer)
	for _, tc := range []struct {
		host, method, target string
		port                 int
		allow                bool
		reason               Reason
	}{
		{"plain.example", "GET", "/repos/a/b", 80, true, ReasonAllowed},
		{"plain.example", "GET", "http://plain.example/repos/a", 80, true, ReasonAllowed},
		{"plain.example", "GET", "/repos", 80, true, ReasonAllowed},
		{"plain.example", "get", "/repos/a", 80, false, ReasonRequest}, // allow rules are exact
		{"plain.example", "HEAD", "/repos/a", 80, false, ReasonRequest},
		{"plain.example", "GET", "/other", 80, false, ReasonRequest},
		{"plain.example", "GET", "/repos/secret/x", 80, false, ReasonDenyRule},
		{"plain.example", "get", "/REPOS/Secret/x", 80, false, ReasonDenyRule}, // deny rules are not
		{"plain.example", "GET", "/repos/%73ecret/x", 80, false, ReasonDenyRule},
		{"plain.example", "GET", "/repos/x/../secret/y", 80, false, ReasonRequest},
		{"plain.example", "GET", "/repos/x/%2e%2e/secret/y", 80, false, ReasonRequest},
		{"plain.example", "GET", "/repos%2fsecret/x", 80, false, ReasonRequest},
		{"plain.example", "GET", "/repos//secret/x", 80, false, ReasonRequest},
		{"plain.example", "GET", "/repos/a\\..\\secret", 80, false, ReasonRequest},
		{"plain.example", "GET", "/repos/%zz", 80, false, ReasonRequest},
		{"plain.example", "GET", "/repos/a/", 80, true, ReasonAllowed},
		{"plain.example", "POST", "/repos/x/issues?state=opened", 80, true, ReasonAllowed},
		{"plain.example", "POST", "/repos/x/issues?state=closed", 80, false, ReasonRequest},
		{"plain.example", "POST", "/repos/x/issues?state=open&state=closed", 80, false, ReasonRequest}, // every value
		{"plain.example", "POST", "/repos/x/issues", 80, false, ReasonRequest},
		{"plain.example", "POST", "/repos/x/issues?state=open;x", 80, false, ReasonRequest},
		{"plain.example", "GET", "/repos/a", 8080, false, ReasonPort},
		{"ro.example", "GET", "/x", 80, true, ReasonAllowed},
		{"ro.example", "OPTIONS", "*", 80, true, ReasonAllowed},
		{"ro.example", "POST", "/x", 80, false, ReasonRequest},
		{"rw.example", "PATCH", "/x", 8080, true, ReasonAllowed},
		{"rw.example", "DELETE", "/x", 8080, false, ReasonRequest},
		{"full.example", "DELETE", "/x", 80, true, ReasonAllowed},
		{"full.example", "GET", "/Admin/x", 80, false, ReasonDenyRule},
		{"full.example", "GET", "/admin", 80, false, ReasonDenyRule},
		{"mcp.example", "POST", "/mcp", 80, false, ReasonUnenforceable},
		{"path.example", "GET", "/v1/x", 80, true, ReasonAllowed},
		{"path.example", "GET", "/v2/x", 80, false, ReasonRequest},
		{"github.com", "GET", "/", 443, true, ReasonAllowed}, // no L7: any request
		{"audit.example.com", "POST", "/x", 443, true, ReasonRequest},
	} {
		d := r.MatchRequest(tc.host, tc.port, nil, Request{Method: tc.method, Target: tc.target})
		if d.Allow != tc.allow || d.Reason != tc.reason {
			t.Errorf("MatchRequest(%s %d %s %s) = %+v, want allow=%v reason=%s", tc.host, tc.port, tc.method, tc.target, d, tc.allow, tc.reason)
		}
	}
	// Requests to an L7 endpoint from another layer must pass both.
	floor := polLayer("floor", map[string]policy.NetworkPolicy{
		"f": {Endpoints: []policy.Endpoint{{Host: "plain.example", Ports: []int{80}, Protocol: "rest", Access: "read-only"}}},
	})
	r = mustRules(t, floor, testContainer)
	if d := r.MatchRequest("plain.example", 80, nil, Request{Method: "POST", Target: "/repos/x/issues?state=open"}); d.Allow || d.Layer != "floor" {
		t.Errorf("floor read-only: %+v", d)
	}
	if d := r.MatchRequest("plain.example", 80, nil, Request{Method: "GET", Target: "/repos/x"}); !d.Allow {
		t.Errorf("both layers: %+v", d)
	}
	// AllowRequest without L7.
	if ok, _, _ := r.AllowRequest(&Endpoint{}, Request{Method: "DELETE", Target: "/"}); !ok {
		t.Error("no L7 denied")
	}
}

// TestMatchRequestMethodOverride: a method-override field is checked as
// the method it names (servers that honour it run that method), a value
// that is no method denies, and a request without one is unchanged.
func TestMatchRequestMethodOverride(t *testing.T) {
	r := mustRules(t, testContainer)
	for _, tc := range []struct {
		host, method, target string
		port                 int
		overrides            []string
		allow                bool
		reason               Reason
	}{
		{"ro.example", "GET", "/x", 80, nil, true, ReasonAllowed},
		{"ro.example", "GET", "/x", 80, []string{"GET"}, true, ReasonAllowed},
		{"ro.example", "GET", "/x", 80, []string{"DELETE"}, false, ReasonMethodOverride},
		{"ro.example", "GET", "/x", 80, []string{"HEAD", "PUT"}, false, ReasonMethodOverride},
		{"ro.example", "POST", "/x", 80, []string{"GET"}, false, ReasonRequest}, // as sent first
		{"ro.example", "GET", "/x", 80, []string{"DEL ETE"}, false, ReasonMethodOverride},
		{"ro.example", "GET", "/x", 80, []string{""}, false, ReasonMethodOverride},
		{"rw.example", "POST", "/x", 8080, []string{"PATCH"}, true, ReasonAllowed},
		{"rw.example", "POST", "/x", 8080, []string{"DELETE"}, false, ReasonMethodOverride},
		{"plain.example", "GET", "/repos/a", 80, []string{"POST"}, false, ReasonMethodOverride}, // allow rules
		{"github.com", "GET", "/", 443, []string{"DELETE"}, true, ReasonAllowed},                // no L7: any request
	} {
		d := r.MatchRequest(tc.host, tc.port, nil, Request{Method: tc.method, Target: tc.target, MethodOverrides: tc.overrides})
		if d.Allow != tc.allow || d.Reason != tc.reason {
			t.Errorf("MatchRequest(%s %d %s %s, overrides %q) = %+v, want allow=%v reason=%s",
				tc.host, tc.port, tc.method, tc.target, tc.overrides, d, tc.allow, tc.reason)
		}
	}
	header := map[string][]string{"x-http-method-override": {" delete "}, "X-Method-Override": {"put"}}
	got := MethodOverrides(func(name string) []string {
		for k, v := range header {
			if strings.EqualFold(k, name) {
				return v
			}
		}
		return nil
	})
	if strings.Join(got, ",") != "DELETE,PUT" {
		t.Errorf("MethodOverrides = %q", got)
	}
}

// TestMatchRequestWebSocketReadOnly: a WebSocket's messages write, so
// access read-only refuses the upgrade, but on an endpoint that says
// protocol: websocket; read-write and allow rules take it as its GET.
func TestMatchRequestWebSocketReadOnly(t *testing.T) {
	r := mustRules(t, polLayer("inline", map[string]policy.NetworkPolicy{"p": {Endpoints: []policy.Endpoint{
		{Host: "ro.example", Ports: []int{80}, Protocol: "rest", Access: "read-only"},
		{Host: "ws.example", Ports: []int{80}, Protocol: "websocket", Access: "read-only"},
		{Host: "rw.example", Ports: []int{80}, Protocol: "rest", Access: "read-write"},
		{Host: "rules.example", Ports: []int{80}, Protocol: "rest", Rules: []policy.Rule{{Method: "GET", Path: "/stream"}}},
	}}}))
	for _, tc := range []struct {
		host      string
		websocket bool
		allow     bool
	}{
		{"ro.example", false, true},
		{"ro.example", true, false},
		{"ws.example", true, true},
		{"rw.example", true, true},
		{"rules.example", true, true},
	} {
		d := r.MatchRequest(tc.host, 80, nil, Request{Method: "GET", Target: "/stream", WebSocket: tc.websocket})
		if d.Allow != tc.allow {
			t.Errorf("GET %s /stream, websocket %v: %+v, want allow=%v", tc.host, tc.websocket, d, tc.allow)
		}
	}
}

func TestTCPEndpoint(t *testing.T) {
	floor := polLayer("floor", map[string]policy.NetworkPolicy{
		"f": {Endpoints: []policy.Endpoint{polEP("*.internal.example", 5432, 443)}},
	})
	r := mustRules(t, floor, testContainer)
	e, ok := r.TCPEndpoint("DB.internal.example.")
	if !ok || e.Host != "db.internal.example" || e.Protocol != "tcp" {
		t.Errorf("TCPEndpoint = %+v, %v", e, ok)
	}
	if _, ok := r.TCPEndpoint("github.com"); ok {
		t.Error("github.com has no tcp endpoint")
	}
	r = mustRules(t, polLayer("floor", map[string]policy.NetworkPolicy{"f": {Endpoints: []policy.Endpoint{polEP("other.example", 443)}}}), testContainer)
	if _, ok := r.TCPEndpoint("db.internal.example"); ok {
		t.Error("tcp endpoint of a name the floor does not allow")
	}
}

// TestMatchRequestPathForms: a deny rule holds against every spelling of
// its path that a lenient server routes to the same place (a trailing
// slash, ;parameters, a format extension, case, percent-escapes of
// unreserved characters), and a target whose reading is ambiguous (dot
// segments, encoded separators, empty segments, undecodable bytes) is
// refused on an endpoint with rules. Allow rules must hold for every
// reading: ;parameters cannot dress a path up as an allowed one.
func TestMatchRequestPathForms(t *testing.T) {
	r := mustRules(t, polLayer("inline", map[string]policy.NetworkPolicy{
		"web": {Endpoints: []policy.Endpoint{
			{Host: "deny.example", Ports: []int{80}, Protocol: "rest", DenyRules: []policy.Rule{{Path: "/admin"}}},
			{Host: "allow.example", Ports: []int{80}, Protocol: "rest",
				Rules: []policy.Rule{{Method: "GET", Path: "/public/**"}, {Method: "GET", Path: "/files/*.txt"}}},
		}},
	}))
	const (
		allow   = ReasonAllowed
		denied  = ReasonDenyRule
		refused = ReasonRequest
	)
	for _, tc := range []struct {
		host, target string
		want         Reason
	}{
		// deny_rules: {path: /admin}
		{"deny.example", "/admin", denied},
		{"deny.example", "/admin/", denied},
		{"deny.example", "/admin;x", denied},
		{"deny.example", "/admin;jsessionid=1/", denied},
		{"deny.example", "/admin/;x", denied},
		{"deny.example", "/admin%3bx", denied},
		{"deny.example", "/ADMIN", denied},
		{"deny.example", "/Admin/", denied},
		{"deny.example", "/%61dmin", denied},
		{"deny.example", "/%41DMIN", denied},
		{"deny.example", "/admin.json", denied},
		{"deny.example", "/admin.", denied},
		{"deny.example", "/admin?x=1", denied},
		{"deny.example", "http://deny.example/admin/", denied},
		{"deny.example", "//admin", refused},
		{"deny.example", "/admin%2f..", refused},
		{"deny.example", "/admin%2F", refused},
		{"deny.example", "/public/../admin", refused},
		{"deny.example", "/public/%2e%2e/admin", refused},
		{"deny.example", "/public/%2E%2E/admin", refused},
		{"deny.example", "/public/.%2e/admin", refused},
		{"deny.example", "/public/..;/admin", refused},
		{"deny.example", "/public/..%3b/admin", refused},
		{"deny.example", "/;x/admin", refused},
		{"deny.example", "/./admin", refused},
		{"deny.example", "/admin/.", refused},
		{"deny.example", "/admin%00", refused},
		{"deny.example", "/admin%20", refused},
		{"deny.example", "/admin%c0%ae", refused},
		{"deny.example", "/%c0%afadmin", refused},
		{"deny.example", "/admin\\", refused},
		{"deny.example", "/admin%5c", refused},
		{"deny.example", "/admin%252f", refused},
		{"deny.example", "/admin%", refused},
		{"deny.example", "/admin%2", refused},
		{"deny.example", "/admin#x", refused},
		// Other paths of the endpoint stay allowed.
		{"deny.example", "/administrator", allow},
		{"deny.example", "/admins/x", allow},
		{"deny.example", "/public/x", allow},
		{"deny.example", "/.well-known/x", allow},
		{"deny.example", "/public/admin", allow},
		{"deny.example", "/caf%C3%A9", allow},
		// rules: GET /public/**, GET /files/*.txt
		{"allow.example", "/public/x", allow},
		{"allow.example", "/public/x/", allow},
		{"allow.example", "/public/x;v=1", allow},
		{"allow.example", "/files/a.txt", allow},
		{"allow.example", "/files/secret;.txt", refused},
		{"allow.example", "/files/secret%3b.txt", refused},
		{"allow.example", "/public/..;/admin", refused},
		{"allow.example", "/public/%2e%2e/admin", refused},
		{"allow.example", "/admin", refused},
	} {
		d := r.MatchRequest(tc.host, 80, nil, Request{Method: "GET", Target: tc.target})
		if d.Allow != (tc.want == allow) || d.Reason != tc.want {
			t.Errorf("GET %s%s: allow=%v reason=%s, want reason %s", tc.host, tc.target, d.Allow, d.Reason, tc.want)
		}
	}
}

// TestMatchInspect: a connection is inspected when some layer allows it
// only through inspected endpoints; one pass-through endpoint of a layer
// allows any request there, and tls: skip opts out.
func TestMatchInspect(t *testing.T) {
	ro := policy.Endpoint{Host: "api.example", Ports: []int{443}, Protocol: "rest", Access: "read-only"}
	pass := policy.Endpoint{Host: "api.example", Ports: []int{443}}
	term := policy.Endpoint{Host: "api.example", Ports: []int{443}, TLS: "terminate"}
	skip := ro
	skip.TLS = "skip"
	layer := func(source string, eps ...policy.Endpoint) policy.NetworkLayer {
		return polLayer(source, map[string]policy.NetworkPolicy{"p": {Endpoints: eps}})
	}
	for _, tc := range []struct {
		name           string
		layers         []policy.NetworkLayer
		allow, inspect bool
	}{
		{"read-only", []policy.NetworkLayer{layer("c", ro)}, true, true},
		{"pass-through", []policy.NetworkLayer{layer("c", pass)}, true, false},
		{"terminate alone", []policy.NetworkLayer{layer("c", term)}, true, true},
		{"tls: skip with rules", []policy.NetworkLayer{layer("c", skip)}, false, false},
		{"pass-through beside read-only", []policy.NetworkLayer{layer("c", ro, pass)}, true, false},
		{"floor read-only, container pass-through", []policy.NetworkLayer{layer("floor", ro), layer("c", pass)}, true, true},
		{"floor pass-through, container read-only", []policy.NetworkLayer{layer("floor", pass), layer("c", ro)}, true, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := mustRules(t, tc.layers...).Match("api.example", 443)
			if d.Allow != tc.allow || d.Inspect != tc.inspect {
				t.Errorf("Match = %+v, want allow=%v inspect=%v", d, tc.allow, tc.inspect)
			}
		})
	}
}

// TestMatchRequestRPC: JSON-RPC and MCP endpoints decide by the calls of
// the body, which only inspection reads.
func TestMatchRequestRPC(t *testing.T) {
	r := mustRules(t, polLayer("c", map[string]policy.NetworkPolicy{
		"mcp": {Endpoints: []policy.Endpoint{{Host: "mcp.example", Ports: []int{443}, Protocol: "mcp", Path: "/mcp",
			Rules: []policy.Rule{{Method: "initialize"}, {Method: "notifications/*"}, {Method: "tools/list"},
				{Method: "tools/call", Tool: "search_*"}, {Method: "tools/call", Tool: "read_file"}},
			DenyRules: []policy.Rule{{Method: "tools/call", Tool: "search_secrets"}}}}},
		"rpc": {Endpoints: []policy.Endpoint{{Host: "rpc.example", Ports: []int{443}, Protocol: "json-rpc",
			Rules: []policy.Rule{{Method: "eth_blockNumber"}, {Method: "eth_getBalance"}}}}},
		"any": {Endpoints: []policy.Endpoint{{Host: "any.example", Ports: []int{443}, Protocol: "json-rpc",
			Rules: []policy.Rule{{Method: "*"}}, DenyRules: []policy.Rule{{Method: "admin_stop"}}}}},
		"denyonly": {Endpoints: []policy.Endpoint{{Host: "deny.example", Ports: []int{443}, Protocol: "mcp",
			DenyRules: []policy.Rule{{Method: "tools/call", Tool: "exec"}}}}},
	}))
	call := func(method, tool string) RPCCall { return RPCCall{Method: method, Tool: tool} }
	body := func(calls ...RPCCall) *RPC { return &RPC{Calls: calls} }
	for _, tc := range []struct {
		name, host, method, target string
		rpc                        *RPC
		allow                      bool
		reason                     Reason
		denied                     []int
	}{
		{"initialize", "mcp.example", "POST", "/mcp", body(call("initialize", "")), true, ReasonAllowed, nil},
		{"notification glob", "mcp.example", "POST", "/mcp", body(call("notifications/initialized", "")), true, ReasonAllowed, nil},
		{"tool glob", "mcp.example", "POST", "/mcp", body(call("tools/call", "search_web")), true, ReasonAllowed, nil},
		{"exact tool", "mcp.example", "POST", "/mcp", body(call("tools/call", "read_file")), true, ReasonAllowed, nil},
		{"other tool", "mcp.example", "POST", "/mcp", body(call("tools/call", "write_file")), false, ReasonRPC, []int{0}},
		{"denied tool", "mcp.example", "POST", "/mcp", body(call("tools/call", "search_secrets")), false, ReasonDenyRule, []int{0}},
		{"denied tool, other case", "mcp.example", "POST", "/mcp", body(call("tools/call", "Search_Secrets")), false, ReasonDenyRule, []int{0}},
		{"tool name not strict", "mcp.example", "POST", "/mcp", body(call("tools/call", "search web")), false, ReasonRPC, []int{0}},
		{"other method", "mcp.example", "POST", "/mcp", body(call("resources/read", "")), false, ReasonRPC, []int{0}},
		{"batch: one denied denies", "mcp.example", "POST", "/mcp", body(call("tools/list", ""), call("tools/call", "write_file"), call("initialize", "")), false, ReasonRPC, []int{1}},
		{"batch allowed", "mcp.example", "POST", "/mcp", body(call("tools/list", ""), call("tools/call", "search_x")), true, ReasonAllowed, nil},
		{"responses only (mcp)", "mcp.example", "POST", "/mcp", &RPC{Responses: 1}, true, ReasonAllowed, nil},
		{"server stream GET (mcp)", "mcp.example", "GET", "/mcp", nil, true, ReasonAllowed, nil},
		{"DELETE", "mcp.example", "DELETE", "/mcp", nil, false, ReasonRequest, nil},
		{"endpoint path", "mcp.example", "POST", "/other", body(call("initialize", "")), false, ReasonRequest, nil},
		{"body not read (plain HTTP)", "mcp.example", "POST", "/mcp", nil, false, ReasonUnenforceable, nil},
		{"json-rpc exact", "rpc.example", "POST", "/", body(call("eth_blockNumber", "")), true, ReasonAllowed, nil},
		{"json-rpc method case", "rpc.example", "POST", "/", body(call("ETH_blockNumber", "")), false, ReasonRPC, []int{0}},
		{"json-rpc other", "rpc.example", "POST", "/", body(call("eth_sendTransaction", "")), false, ReasonRPC, []int{0}},
		{"json-rpc responses", "rpc.example", "POST", "/", &RPC{Calls: []RPCCall{call("eth_blockNumber", "")}, Responses: 1}, false, ReasonRPC, nil},
		{"json-rpc GET", "rpc.example", "GET", "/", nil, false, ReasonRequest, nil},
		{"json-rpc any", "any.example", "POST", "/", body(call("whatever", "")), true, ReasonAllowed, nil},
		{"json-rpc any but denied", "any.example", "POST", "/", body(call("admin_stop", "")), false, ReasonDenyRule, []int{0}},
		{"mcp deny only", "deny.example", "POST", "/", body(call("tools/call", "search")), true, ReasonAllowed, nil},
		{"mcp deny only, denied", "deny.example", "POST", "/", body(call("tools/call", "exec")), false, ReasonDenyRule, []int{0}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := r.MatchRequest(tc.host, 443, nil, Request{Method: tc.method, Target: tc.target, RPC: tc.rpc})
			if d.Allow != tc.allow || d.Reason != tc.reason || !slices.Equal(d.DeniedCalls, tc.denied) {
				t.Errorf("MatchRequest = %+v, want allow=%v reason=%s denied=%v", d, tc.allow, tc.reason, tc.denied)
			}
		})
	}
	for _, tc := range []struct {
		host, method, target string
		want                 bool
	}{
		{"mcp.example", "POST", "/mcp", true},
		{"mcp.example", "POST", "/other", false}, // the endpoint's path
		{"mcp.example", "GET", "/mcp", false},
		{"rpc.example", "POST", "/", true},
		{"other.example", "POST", "/", false},
	} {
		if got := r.ReadsRPC(tc.host, 443, tc.method, tc.target); got != tc.want {
			t.Errorf("ReadsRPC(%s %s %s) = %v, want %v", tc.host, tc.method, tc.target, got, tc.want)
		}
	}
}
