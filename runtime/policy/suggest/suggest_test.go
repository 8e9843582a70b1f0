package suggest

import (
	"fmt"
	"strings"
	"testing"

	"github.com/clawrun/clawrun/egress/decisionlog"
	"github.com/clawrun/clawrun/egress/rules"
	"github.com/clawrun/clawrun/runtime/policy"
)

// A learning policy: what the agent may try is audited, not enforced.
const learning = `
version: 1
filesystem_policy:
  read_only: [/usr, /etc]
  read_write: [/tmp]
process:
  run_as_user: "1000"
network_policies:
  learn:
    endpoints:
      - {host: "*.example.com", ports: [443], enforcement: audit}
      - {host: web.test, port: 80, protocol: rest, enforcement: audit, access: read-only}
      - host: shop.test
        port: 80
        protocol: rest
        enforcement: audit
        rules: [{allow: {method: GET, path: /nothing}}]
        deny_rules: [{deny: {method: DELETE, path: /admin/**}}]
  kept:
    endpoints:
      - {host: pypi.org, port: 443}
`

func parse(t *testing.T, name, text string) *policy.Policy {
	t.Helper()
	p, err := policy.Parse(name, []byte(text))
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// rec is a decision record: "PROTO DECISION HOST:PORT [METHOD PATH]".
func rec(protocol, decision, host string, port int, opts ...func(*decisionlog.Record)) decisionlog.Record {
	r := decisionlog.Record{Protocol: protocol, Decision: decision, Host: host, Port: port, Reason: rules.ReasonAllowed, Rule: "learn"}
	if decision == "deny" {
		r.Reason, r.Rule = rules.ReasonNotAllowed, ""
	}
	for _, o := range opts {
		o(&r)
	}
	return r
}

func get(path string) func(*decisionlog.Record) {
	return func(r *decisionlog.Record) { r.Method, r.Path = "GET", path }
}

func method(m, path string) func(*decisionlog.Record) {
	return func(r *decisionlog.Record) { r.Method, r.Path = m, path }
}

func by(binary string) func(*decisionlog.Record) {
	return func(r *decisionlog.Record) { r.Binary = binary }
}

func reason(why rules.Reason) func(*decisionlog.Record) {
	return func(r *decisionlog.Record) { r.Reason = why }
}

func rule(name string) func(*decisionlog.Record) {
	return func(r *decisionlog.Record) { r.Rule = name }
}

// endpoints is a network policy's endpoints in a short form, for the
// tables: "host ports [protocol] [METHOD path, ...]".
func endpoints(np policy.NetworkPolicy) []string {
	var out []string
	for _, ep := range np.Endpoints {
		s := fmt.Sprintf("%s %v", ep.Host, ep.Ports)
		if ep.Protocol != "" {
			s += " " + ep.Protocol
		}
		var rs []string
		for _, r := range ep.Rules {
			rs = append(rs, strings.TrimSpace(r.Method+" "+r.Path+" "+r.Tool))
		}
		if len(rs) > 0 {
			s += " [" + strings.Join(rs, ", ") + "]"
		}
		out = append(out, s)
	}
	return out
}

func TestSuggest(t *testing.T) {
	floor := &policy.NetworkLayer{Source: "floor", Policies: parse(t, "floor", `
version: 1
network_policies:
  site:
    endpoints:
      - {host: "*.example.com", port: 443}
      - {host: web.test, port: 80}
      - {host: shop.test, port: 80}
      - {host: pypi.org, port: 443}
      - {host: mcp.example.com, port: 443}
`).NetworkPolicies}

	tests := []struct {
		name     string
		current  string // a policy document, "" for none
		floor    *policy.NetworkLayer
		records  []decisionlog.Record
		policies map[string][]string // network policy key -> endpoints()
		binaries map[string][]string // network policy key -> binaries, when any
		notes    []string            // substrings, one per note, in order
		denied   []decisionlog.Record
	}{{
		name:    "audit endpoints become what was seen through them",
		current: learning,
		records: []decisionlog.Record{
			rec("dns", "allow", "api.example.com", 0),
			rec("tls", "allow", "api.example.com", 443),
			rec("http", "audit", "web.test", 80, method("POST", "/upload"), reason(rules.ReasonRequest)),
			rec("http", "allow", "web.test", 80, get("/a")),
			rec("http", "allow", "web.test", 80, get("/a")),
			rec("tls", "allow", "pypi.org", 443, rule("kept")),
		},
		policies: map[string][]string{
			"kept":  {"pypi.org [443]"},
			"learn": {"api.example.com [443]", "web.test [80] rest [GET /a, POST /upload]"},
		},
		denied: []decisionlog.Record{
			rec("tls", "allow", "other.example.com", 443),
			rec("http", "allow", "web.test", 80, get("/b")),
			rec("http", "allow", "web.test", 80, method("DELETE", "/a")),
		},
	}, {
		name:    "denied by design and denied by the policy: notes, nothing allowed",
		current: learning,
		records: []decisionlog.Record{
			rec("tls", "deny", "", 443, reason(rules.ReasonNoSNI), func(r *decisionlog.Record) { r.Destination = "93.184.216.34:443" }),
			rec("http", "deny", "10.0.0.1", 80, reason(rules.ReasonIPLiteral)),
			rec("tls", "deny", "internal.example.com", 443, reason(rules.ReasonPrivateIP)),
			rec("tls", "deny", "evil.test", 443),
			rec("tls", "deny", "evil.test", 443),
			rec("http", "audit", "shop.test", 80, method("DELETE", "/admin/users"), reason(rules.ReasonDenyRule)),
			{Protocol: "log", Decision: "dropped", Dropped: 7},
		},
		policies: map[string][]string{"kept": {"pypi.org [443]"}},
		notes: []string{
			"93.184.216.34:443: denied by design: TLS without a server name",
			"10.0.0.1:80: denied by design: an IP address",
			"internal.example.com:443: denied by design: a private",
			"evil.test:443: denied or failed (not_allowed) (2 times)",
			"shop.test:80 DELETE /admin/users: a deny rule",
			"7 decisions not logged",
		},
		denied: []decisionlog.Record{rec("tls", "allow", "evil.test", 443), rec("tls", "allow", "internal.example.com", 443)},
	}, {
		name:    "the learned endpoint keeps the deny rules it was learned under",
		current: learning,
		records: []decisionlog.Record{
			rec("http", "audit", "shop.test", 80, get("/cart"), reason(rules.ReasonRequest)),
		},
		policies: map[string][]string{"kept": {"pypi.org [443]"}, "learn": {"shop.test [80] rest [GET /cart]"}},
	}, {
		name:    "the floor bounds the suggestion",
		current: learning,
		floor:   floor,
		records: []decisionlog.Record{
			rec("tls", "allow", "api.example.com", 443),
			rec("tls", "allow", "api.example.com", 8443),
		},
		policies: map[string][]string{"kept": {"pypi.org [443]"}, "learn": {"api.example.com [443]"}},
		notes:    []string{"api.example.com:8443: the floor policy denies it"},
		denied:   []decisionlog.Record{rec("tls", "allow", "api.example.com", 8443)},
	}, {
		name:    "many paths of a directory collapse, top-level paths never",
		current: learning,
		records: []decisionlog.Record{
			rec("http", "allow", "web.test", 80, get("/items/1")),
			rec("http", "allow", "web.test", 80, get("/items/2")),
			rec("http", "allow", "web.test", 80, get("/items/3")),
			rec("http", "allow", "web.test", 80, get("/items/4")),
			rec("http", "allow", "web.test", 80, get("/docs/a")),
			rec("http", "allow", "web.test", 80, get("/docs/b")),
			rec("http", "allow", "web.test", 80, get("/docs/c")),
			rec("http", "allow", "web.test", 80, get("/1")),
			rec("http", "allow", "web.test", 80, get("/2")),
			rec("http", "allow", "web.test", 80, get("/3")),
			rec("http", "allow", "web.test", 80, get("/4")),
			rec("http", "allow", "web.test", 80, get("/a%20b")),
		},
		policies: map[string][]string{"kept": {"pypi.org [443]"}, "learn": {
			"web.test [80] rest [GET /1, GET /2, GET /3, GET /4, GET /docs/a, GET /docs/b, GET /docs/c, GET /items/*]"}},
		notes:  []string{"web.test:80 GET /a%20b: no rule of the suggested policy can express it"},
		denied: []decisionlog.Record{rec("http", "allow", "web.test", 80, get("/docs/d")), rec("http", "allow", "web.test", 80, get("/5"))},
	}, {
		name:    "binaries: listed when every connection names one",
		current: learning,
		records: []decisionlog.Record{
			rec("dns", "audit", "api.example.com", 0, by("/usr/bin/curl"), reason(rules.ReasonBinary)),
			rec("tls", "allow", "api.example.com", 443, by("/usr/bin/curl")),
			rec("dns", "allow", "cdn.example.com", 0), // over UDP: no process named
			rec("tls", "allow", "cdn.example.com", 443, by("/usr/bin/python3")),
			rec("dns", "allow", "unused.example.com", 0, by("/usr/bin/curl")),
		},
		policies: map[string][]string{"kept": {"pypi.org [443]"}, "learn": {"api.example.com [443]", "cdn.example.com [443]"}},
		binaries: map[string][]string{"learn": {"/usr/bin/curl", "/usr/bin/python3"}},
		notes:    []string{"DNS unused.example.com: resolved but never connected to"},
		denied:   []decisionlog.Record{rec("tls", "allow", "api.example.com", 443, by("/usr/bin/wget"))},
	}, {
		name: "a policy of enforcing and audit endpoints keeps the first, learns the second beside it",
		current: `
version: 1
network_policies:
  api:
    endpoints:
      - {host: api.example.com, port: 443}
      - {host: "*.cdn.example.com", port: 443, enforcement: audit}
`,
		records: []decisionlog.Record{
			rec("tls", "allow", "api.example.com", 443, rule("api")),
			rec("tls", "allow", "eu.cdn.example.com", 443, rule("api")),
		},
		policies: map[string][]string{"api": {"api.example.com [443]"}, "api-2": {"eu.cdn.example.com [443]"}},
		denied:   []decisionlog.Record{rec("tls", "allow", "us.cdn.example.com", 443, rule("api"))},
	}, {
		name: "no current policy: a network-only policy",
		records: []decisionlog.Record{
			rec("tls", "allow", "api.example.com", 443, rule("")),
			rec("https", "allow", "mcp.example.com", 443, method("POST", "/mcp"), func(r *decisionlog.Record) { r.Calls = []string{"tools/call:search"} }),
		},
		policies: map[string][]string{"learned": {"api.example.com [443]", "mcp.example.com [443] rest [POST /mcp]"}},
	}, {
		name: "MCP calls learned as calls",
		current: `
version: 1
network_policies:
  tools:
    endpoints:
      - {host: mcp.example.com, port: 443, protocol: mcp, enforcement: audit, rules: [{allow: {method: initialize}}]}
`,
		records: []decisionlog.Record{
			rec("https", "audit", "mcp.example.com", 443, method("POST", "/mcp"), rule("tools"), reason(rules.ReasonRPC),
				func(r *decisionlog.Record) { r.Calls = []string{"tools/call:search", "tools/list"} }),
		},
		policies: map[string][]string{"tools": {"mcp.example.com [443] mcp [tools/call  search, tools/list]"}},
		denied: []decisionlog.Record{rec("https", "allow", "mcp.example.com", 443, method("POST", "/mcp"), rule("tools"),
			func(r *decisionlog.Record) { r.Calls = []string{"tools/call:delete"} })},
	}}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var current *policy.Policy
			if tc.current != "" {
				current = parse(t, "agent", tc.current)
			}
			s, err := Suggest(Input{Records: tc.records, Current: current, Floor: tc.floor})
			if err != nil {
				t.Fatal(err)
			}
			got := roundTrip(t, s)
			for key, want := range tc.policies {
				if e := endpoints(got.NetworkPolicies[key]); fmt.Sprint(e) != fmt.Sprint(want) {
					t.Errorf("network_policies.%s: %q, want %q", key, e, want)
				}
			}
			if len(got.NetworkPolicies) != len(tc.policies) {
				t.Errorf("network policies %v, want those of %v", keys(got.NetworkPolicies), keys(tc.policies))
			}
			for key, np := range got.NetworkPolicies {
				var bins []string
				for _, b := range np.Binaries {
					bins = append(bins, b.Path)
				}
				if fmt.Sprint(bins) != fmt.Sprint(tc.binaries[key]) {
					t.Errorf("network_policies.%s binaries %v, want %v", key, bins, tc.binaries[key])
				}
			}
			if len(s.Notes) != len(tc.notes) {
				t.Errorf("notes %q, want %d like %q", s.Notes, len(tc.notes), tc.notes)
			} else {
				for i, n := range tc.notes {
					if !strings.Contains(s.Notes[i], n) {
						t.Errorf("note %d: %q, want it to contain %q", i, s.Notes[i], n)
					}
				}
			}
			final := compileLayers(policy.NetworkLayer{Source: "got", Policies: got.NetworkPolicies})
			if tc.current != "" && current.HasFilesystem {
				if fmt.Sprint(got.FilesystemPolicy) != fmt.Sprint(current.FilesystemPolicy) || got.Process != current.Process {
					t.Errorf("filesystem %v and process %v, want the current policy's %v and %v", got.FilesystemPolicy, got.Process, current.FilesystemPolicy, current.Process)
				}
			}
			// Positive control: what was seen and not noted is allowed,
			// enforced; what was not seen is not.
			for _, r := range tc.records {
				if _, ok := skipped(r); ok && !noted(s.Notes, r) && !allows(final, r) {
					t.Errorf("the suggestion denies what was seen: %s", target(r))
				}
			}
			for _, r := range tc.denied {
				if allows(final, r) {
					t.Errorf("the suggestion allows what was not seen: %s", target(r))
				}
			}
		})
	}
}

// roundTrip writes the suggestion, checks that it is a valid policy that
// enforces every endpoint, and reads it back.
func roundTrip(t *testing.T, s *Suggestion) *policy.Policy {
	t.Helper()
	text, err := s.YAML("suggested by a test")
	if err != nil {
		t.Fatal(err)
	}
	p, err := policy.Parse("suggested.yaml", text)
	if err != nil {
		t.Fatalf("the suggestion does not parse: %v\n%s", err, text)
	}
	if err := p.Validate(); err != nil {
		t.Fatalf("the suggestion is not valid: %v\n%s", err, text)
	}
	for key, np := range p.NetworkPolicies {
		for i, ep := range np.Endpoints {
			if ep.Enforcement != "enforce" {
				t.Errorf("network_policies.%s.endpoints[%d]: enforcement %q\n%s", key, i, ep.Enforcement, text)
			}
		}
	}
	if !strings.HasPrefix(string(text), "# suggested by a test\n") {
		t.Errorf("the header is not first:\n%s", text)
	}
	if floorLine := "# Never wider than the floor policy " + s.Floor + ": what it denies is not suggested.\n"; s.Floor != "" && !strings.Contains(string(text), floorLine) {
		t.Errorf("the floor is not named:\n%s", text)
	}
	for _, n := range s.Notes {
		if !strings.Contains(string(text), "#   "+n+"\n") {
			t.Errorf("note %q is not a comment of the file:\n%s", n, text)
		}
	}
	return p
}

func noted(notes []string, r decisionlog.Record) bool {
	for _, n := range notes {
		if strings.HasPrefix(n, target(r)+":") || r.Protocol == "dns" && strings.HasPrefix(n, "DNS "+r.Host+":") {
			return true
		}
	}
	return false
}

func keys[V any](m map[string]V) []string { return sortedKeys(m) }

// TestSuggestIsDeterministic: the same log gives the same file.
func TestSuggestIsDeterministic(t *testing.T) {
	records := []decisionlog.Record{
		rec("tls", "allow", "b.example.com", 443), rec("tls", "allow", "a.example.com", 443),
		rec("http", "allow", "web.test", 80, get("/x")), rec("http", "allow", "web.test", 80, get("/y")),
	}
	var first []byte
	for i := range 20 {
		s, err := Suggest(Input{Records: records, Current: parse(t, "agent", learning)})
		if err != nil {
			t.Fatal(err)
		}
		text, err := s.YAML()
		if err != nil {
			t.Fatal(err)
		}
		if i == 0 {
			first = text
		} else if string(text) != string(first) {
			t.Fatalf("run %d differs:\n%s\nfirst:\n%s", i, text, first)
		}
	}
}
