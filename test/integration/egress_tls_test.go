package integration

import (
	"encoding/json"
	"slices"
	"strings"
	"testing"

	"github.com/clawrun/clawrun/test/fakenet"
)

// TestEgressTLS: TLS is decided on the ClientHello's SNI and port, and the
// proxy dials its own resolution of the name, never the address the
// client chose; names it cannot check are denied before anything is
// dialled.
func TestEgressTLS(t *testing.T) {
	r, fn := egressRuntime(t)
	c := fn.startPolicy(r, policyDoc(`  web:
    endpoints:
      - {host: allowed.test, port: 443}
      - {host: alias.test, port: 443}
      - {host: meta.test, port: 443}
      - {host: private.test, port: 443}
      - {host: loop.test, port: 443}
      - {host: rebind.test, port: 443}
      - {host: v6.test, port: 443}
`))
	allowedIP, deniedIP := fn.ip(hAllowed), fn.ip(hDenied)
	cut := "ERR EOF|ERR ECONNRESET"

	c.checks(
		echeck{name: "allowed name",
			args: []string{"tls", "allowed.test", "443", "allowed.test"},
			out:  "OK cn=allowed.test verify=ok hello sni=allowed.test local=" + allowedIP,
			dec:  []want{connWant("tls", "allowed.test", 443, "allow", "allowed")},
			saw:  []seen{sawTLS("allowed.test", allowedIP)}},
		echeck{name: "denied SNI aimed at an allowed host's address",
			args:  []string{"tls", allowedIP, "443", "denied.test"},
			out:   cut,
			dec:   []want{connWant("tls", "denied.test", 443, "deny", "not_allowed")},
			never: []seen{nothing}},
		echeck{name: "no SNI to an IP",
			args:  []string{"tls-nosni", allowedIP, "443"},
			out:   cut,
			dec:   []want{connWant("tls", "", 443, "deny", "no_sni")},
			never: []seen{nothing}},
		echeck{name: "an IP literal as SNI",
			args:  []string{"hello", allowedIP, "443", allowedIP},
			out:   cut,
			dec:   []want{connWant("tls", allowedIP, 443, "deny", "ip_literal")},
			never: []seen{nothing}},
		// Waits for the server's end of the handshake too: the next check
		// must not see it.
		echeck{name: "hand-made ClientHello without ECH (the control)",
			args: []string{"hello", allowedIP, "443", "allowed.test"},
			out:  "OK handshake|OK alert",
			saw: []seen{sawConnTo(allowedIP, 443), {"the server's end of the handshake", func(e fakenet.Event) bool {
				return (e.Kind == "tls" || e.Kind == "tls-fail") && e.LocalIP() == allowedIP
			}}}},
		echeck{name: "encrypted ClientHello (outer SNI allowed)",
			args:  []string{"hello", allowedIP, "443", "allowed.test", "ech"},
			out:   cut,
			dec:   []want{connWant("tls", "allowed.test", 443, "deny", "ech")},
			never: []seen{nothing}},
		echeck{name: "allowed name on a port it is not allowed on",
			args:  []string{"tls", allowedIP, "22", "allowed.test"},
			out:   cut,
			dec:   []want{connWant("tls", "allowed.test", 22, "deny", "port")},
			never: []seen{nothing}},
		echeck{name: "name resolving to the metadata address",
			args:  []string{"tls", allowedIP, "443", "meta.test"},
			out:   cut,
			dec:   []want{connWant("tls", "meta.test", 443, "deny", "private_ip")},
			never: []seen{noConnection}},
		echeck{name: "name resolving to an RFC 1918 address",
			args:  []string{"tls", allowedIP, "443", "private.test"},
			out:   cut,
			dec:   []want{connWant("tls", "private.test", 443, "deny", "private_ip")},
			never: []seen{noConnection}},
		echeck{name: "name resolving to loopback",
			args:  []string{"tls", allowedIP, "443", "loop.test"},
			out:   cut,
			dec:   []want{connWant("tls", "loop.test", 443, "deny", "private_ip")},
			never: []seen{noConnection}},
		echeck{name: "CNAME chain: dials the chain's end",
			args: []string{"tls", "alias.test", "443", "alias.test"},
			out:  "OK cn=alias.test verify=ok hello sni=alias.test local=" + fn.ip(hFinal),
			dec:  []want{connWant("tls", "alias.test", 443, "allow", "allowed")},
			saw:  []seen{sawTLS("alias.test", fn.ip(hFinal))}},
		echeck{name: "IPv6 name",
			args: []string{"tls", "v6.test", "443", "v6.test"},
			out:  "OK cn=v6.test verify=ok hello sni=v6.test local=" + fn.ip6(hDNS),
			dec:  []want{connWant("tls", "v6.test", 443, "allow", "allowed")},
			saw:  []seen{sawTLS("v6.test", fn.ip6(hDNS))}},
		echeck{name: "IPv6 address without SNI",
			args:  []string{"tls-nosni", fn.ip6(hDNS), "443"},
			out:   cut,
			dec:   []want{connWant("tls", "", 443, "deny", "no_sni")},
			never: []seen{nothing}},
	)

	// Allowed SNI aimed at a denied host's address: the proxy connects to
	// its own resolution of the SNI, not to where the client aimed.
	lm := c.logMark()
	c.check(echeck{name: "allowed SNI aimed at a denied address",
		args:  []string{"tls", deniedIP, "443", "allowed.test"},
		out:   "OK cn=allowed.test verify=ok hello sni=allowed.test local=" + allowedIP,
		dec:   []want{connWant("tls", "allowed.test", 443, "allow", "allowed")},
		saw:   []seen{sawTLS("allowed.test", allowedIP)},
		never: []seen{{"a connection to " + deniedIP, func(e fakenet.Event) bool { return e.Kind != "dns" && e.LocalIP() == deniedIP }}}})
	for _, d := range c.decisions()[lm:] {
		if d.Protocol == "tls" && (d.Destination != deniedIP+":443" || d.ResolvedIP != allowedIP || d.BytesOut == 0 || d.BytesIn == 0) {
			t.Errorf("the decision should name the client's destination %s:443, the dialled %s and the bytes: %s", deniedIP, allowedIP, d)
		}
	}

	// Rebinding: the client's lookup got an allowed address, with a TTL
	// of 0; the name now points at loopback, which the proxy's own lookup
	// gets and refuses; nothing is dialled.
	fn.resetRebind()
	c.check(echeck{name: "rebinding: the client's lookup",
		args: []string{"dns", fn.ip(hDNS), "rebind.test"},
		out:  "OK A:" + allowedIP + " ttl:0",
		dec:  []want{dnsWant("rebind.test", "A", "allow", "allowed")}})
	c.check(echeck{name: "rebinding: the connection",
		args:  []string{"tls", allowedIP, "443", "rebind.test"},
		out:   cut,
		dec:   []want{connWant("tls", "rebind.test", 443, "deny", "private_ip")},
		saw:   []seen{sawQuery("rebind.test", "A")},
		never: []seen{noConnection}})

	// clawrun audit --denied shows the denials, and only them.
	res := r.ok(append(fn.globals(), "audit", "--denied", c.id)...)
	for _, w := range []string{"denied.test:443", "no_sni", "ip_literal", "ech", "allowed.test:22", "port", "meta.test:443", "private_ip", "rebind.test:443"} {
		if !strings.Contains(res.Stdout, w) {
			t.Errorf("clawrun audit --denied does not mention %q:\n%s", w, res.Stdout)
		}
	}
	for line := range strings.SplitSeq(strings.TrimSpace(res.Stdout), "\n") {
		if f := strings.Fields(line); len(f) > 1 && f[1] == "allow" {
			t.Errorf("clawrun audit --denied shows an allowed decision: %q", line)
		}
	}
	res = r.ok(append(fn.globals(), "audit", "--denied", "--json", c.id)...)
	n := 0
	for line := range strings.SplitSeq(strings.TrimSpace(res.Stdout), "\n") {
		var d decision
		if err := json.Unmarshal([]byte(line), &d); err != nil {
			t.Fatalf("clawrun audit --json: %v: %q", err, line)
		}
		if d.Decision == "allow" {
			t.Errorf("clawrun audit --denied --json shows an allowed decision: %s", line)
		}
		n++
	}
	all := 0
	for _, d := range c.decisions() {
		if d.Decision != "allow" {
			all++
		}
	}
	if n != all {
		t.Errorf("clawrun audit --denied --json printed %d decisions, the log has %d that are not allow", n, all)
	}
}

// TestEgressTLSRequestFields: request fields (rules, path, access) on an
// endpoint that opted out of inspection (tls: skip) cannot be enforced on
// its TLS: the runtime says so in state's warnings (as `clawrun policy
// check` does), and the endpoint denies TLS instead of allowing it
// unchecked; the same rules on plain HTTP are enforced per request.
func TestEgressTLSRequestFields(t *testing.T) {
	r, fn := egressRuntime(t)
	doc := policyDoc(`  api:
    endpoints:
      - host: allowed.test
        ports: [443, 80]
        protocol: rest
        tls: skip
        rules:
          - allow: {method: GET, path: /ok}
`)
	const warning = "network_policies.api.endpoints[0].rules: cannot be enforced on TLS with tls: skip"
	check := r.ok("policy", "check", writeTemp(t, "api.yaml", doc))
	if !strings.Contains(check.Stderr, warning) {
		t.Errorf("clawrun policy check does not warn %q:\n%s", warning, check)
	}
	c := fn.startPolicy(r, doc)
	st := r.fullState(c.id).Clawrun
	if !slices.ContainsFunc(st.Warnings, func(w string) bool { return strings.Contains(w, warning) }) {
		t.Errorf("state's warnings do not say %q: %q", warning, st.Warnings)
	}
	c.checks(
		echeck{name: "TLS to the endpoint: denied",
			args:  []string{"tls", "allowed.test", "443", "allowed.test"},
			out:   "ERR EOF|ERR ECONNRESET",
			dec:   []want{connWant("tls", "allowed.test", 443, "deny", "unenforceable")},
			never: []seen{noConnection}},
		echeck{name: "plain HTTP, a request the rules allow",
			args: []string{"http", "allowed.test", "80", "allowed.test", "-", "/ok"},
			out:  "OK 200 host=allowed.test local=" + fn.ip(hAllowed) + " path=/ok",
			dec:  []want{connWant("http", "allowed.test", 80, "allow", "allowed")},
			saw:  []seen{sawHTTP("allowed.test", fn.ip(hAllowed))}},
		echeck{name: "plain HTTP, a request the rules do not allow",
			args:  []string{"http", "allowed.test", "80", "allowed.test", "-", "/other"},
			out:   "OK 403",
			dec:   []want{connWant("http", "allowed.test", 80, "deny", "request")},
			never: []seen{{"an HTTP request", fakenet.OfKind("http")}}},
	)
}
