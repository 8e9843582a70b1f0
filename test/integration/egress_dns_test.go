package integration

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"strings"
	"testing"

	"github.com/clawrun/clawrun/test/fakenet"
)

// TestEgressDNS: the policy resolver answers allowed names (flattened,
// TTL capped, blocked addresses removed) and never sends a denied name
// upstream, whatever its case, type, or the resolver it was sent to.
func TestEgressDNS(t *testing.T) {
	r, fn := egressRuntime(t)
	c := fn.startPolicy(r, policyDoc(`  web:
    endpoints:
      - {host: allowed.test, ports: [443, 80]}
      - {host: "*.wild.test", port: 443}
      - {host: alias.test, port: 443}
      - {host: meta.test, port: 443}
      - {host: private.test, port: 443}
      - {host: v6.test, port: 443}
`))
	dnsSrv := fn.ip(hDNS)
	exfil := func(suffix string) string {
		b := make([]byte, 24)
		_, _ = rand.Read(b)
		return hex.EncodeToString(b) + suffix
	}
	hexLabel, longLabel := exfil(".denied.test"), exfil(".exfil.test")
	underAllowed := exfil(".allowed.test")

	c.checks(
		echeck{name: "allowed name",
			args: []string{"dns", dnsSrv, "allowed.test"},
			out:  "OK A:" + fn.ip(hAllowed) + " ttl:60",
			dec:  []want{dnsWant("allowed.test", "A", "allow", "allowed")},
			saw:  []seen{sawQuery("allowed.test", "A")}},
		echeck{name: "allowed name, AAAA (none upstream)",
			args: []string{"dns", dnsSrv, "allowed.test", "AAAA"},
			out:  "OK NODATA",
			dec:  []want{dnsWant("allowed.test", "AAAA", "allow", "allowed")},
			saw:  []seen{sawQuery("allowed.test", "AAAA")}},
		echeck{name: "denied name",
			args:  []string{"dns", dnsSrv, "denied.test"},
			out:   "ERR NXDOMAIN",
			dec:   []want{dnsWant("denied.test", "A", "deny", "not_allowed")},
			never: []seen{queryContaining("denied")}},
		echeck{name: "denied name, mixed case",
			args:  []string{"dns", dnsSrv, "DeNiEd.TeSt"},
			out:   "ERR NXDOMAIN",
			dec:   []want{dnsWant("denied.test", "A", "deny", "not_allowed")},
			never: []seen{queryContaining("denied")}},
		echeck{name: "denied name, TXT",
			args:  []string{"dns", dnsSrv, "denied.test", "TXT"},
			out:   "ERR NXDOMAIN",
			dec:   []want{dnsWant("denied.test", "TXT", "deny", "not_allowed")},
			never: []seen{queryContaining("denied")}},
		echeck{name: "denied name over TCP",
			args:  []string{"dns", dnsSrv, "denied.test", "A", "tcp"},
			out:   "ERR NXDOMAIN",
			dec:   []want{dnsWant("denied.test", "A", "deny", "not_allowed")},
			never: []seen{queryContaining("denied")}},
		echeck{name: "allowed name, TXT: answered empty, never forwarded",
			args:  []string{"dns", dnsSrv, "allowed.test", "TXT"},
			out:   "OK NODATA",
			dec:   []want{dnsWant("allowed.test", "TXT", "deny", "query_type")},
			never: []seen{{"a TXT query", func(e fakenet.Event) bool { return e.Kind == "dns" && e.QType != "A" && e.QType != "AAAA" }}}},
		echeck{name: "allowed name, HTTPS record (ECH keys): never forwarded",
			args:  []string{"dns", dnsSrv, "allowed.test", "HTTPS"},
			out:   "OK NODATA",
			dec:   []want{dnsWant("allowed.test", "HTTPS", "deny", "query_type")},
			never: []seen{{"an HTTPS query", func(e fakenet.Event) bool { return e.Kind == "dns" && e.QType == "HTTPS" }}}},
		echeck{name: "the wildcard's parent",
			args:  []string{"dns", dnsSrv, "wild.test"},
			out:   "ERR NXDOMAIN",
			dec:   []want{dnsWant("wild.test", "A", "deny", "not_allowed")},
			never: []seen{queryContaining("wild.test")}},
		echeck{name: "two labels under the wildcard",
			args:  []string{"dns", dnsSrv, "a.b.wild.test"},
			out:   "ERR NXDOMAIN",
			dec:   []want{dnsWant("a.b.wild.test", "A", "deny", "not_allowed")},
			never: []seen{queryContaining("wild.test")}},
		echeck{name: "one label under the wildcard",
			args: []string{"dns", dnsSrv, "x.wild.test"},
			out:  "OK A:" + fn.ip(hWild) + " ttl:60",
			dec:  []want{dnsWant("x.wild.test", "A", "allow", "allowed")},
			saw:  []seen{sawQuery("x.wild.test", "A")}},
		echeck{name: "exfiltration labels under a denied name",
			args:  []string{"dns", dnsSrv, hexLabel, "TXT"},
			out:   "ERR NXDOMAIN",
			dec:   []want{dnsWant(hexLabel, "TXT", "deny", "not_allowed")},
			never: []seen{queryContaining(hexLabel[:16])}},
		echeck{name: "exfiltration labels under an unknown domain",
			args:  []string{"dns", dnsSrv, longLabel},
			out:   "ERR NXDOMAIN",
			dec:   []want{dnsWant(longLabel, "A", "deny", "not_allowed")},
			never: []seen{queryContaining(longLabel[:16])}},
		echeck{name: "exfiltration labels under an allowed name (exact hosts match exactly)",
			args:  []string{"dns", dnsSrv, underAllowed},
			out:   "ERR NXDOMAIN",
			dec:   []want{dnsWant(underAllowed, "A", "deny", "not_allowed")},
			never: []seen{queryContaining(underAllowed[:16])}},
		echeck{name: "CNAME chain: flattened, TTL capped",
			args: []string{"dns", dnsSrv, "alias.test"},
			out:  "OK A:" + fn.ip(hFinal) + " ttl:60",
			dec:  []want{dnsWant("alias.test", "A", "allow", "allowed")},
			saw:  []seen{sawQuery("alias.test", "A")}},
		echeck{name: "metadata address removed",
			args: []string{"dns", dnsSrv, "meta.test"},
			out:  "OK NODATA",
			dec:  []want{dnsWant("meta.test", "A", "deny", "private_ip")}},
		echeck{name: "RFC 1918 address removed",
			args: []string{"dns", dnsSrv, "private.test"},
			out:  "OK NODATA",
			dec:  []want{dnsWant("private.test", "A", "deny", "private_ip")}},
		echeck{name: "IPv6 name (its range is in allowed_upstream_ranges)",
			args: []string{"dns", dnsSrv, "v6.test", "AAAA"},
			out:  "OK AAAA:" + fn.ip6(hDNS) + " ttl:60",
			dec:  []want{dnsWant("v6.test", "AAAA", "allow", "allowed")},
			saw:  []seen{sawQuery("v6.test", "AAAA")}},
	)

	// Answered from the filter's cache: upstream is not asked again.
	c.check(echeck{name: "allowed name again (cached)",
		args:  []string{"dns", dnsSrv, "allowed.test"},
		out:   "OK A:" + fn.ip(hAllowed),
		dec:   []want{dnsWant("allowed.test", "A", "allow", "allowed")},
		never: []seen{sawQuery("allowed.test", "A")}})

	// Mixed case (a name not cached yet): allowed, and asked upstream in
	// lower case only.
	em := fn.Mark()
	c.check(echeck{name: "allowed name, mixed case",
		args: []string{"dns", dnsSrv, "Y.WiLd.TeSt"},
		out:  "OK A:" + fn.ip(hWild),
		dec:  []want{dnsWant("y.wild.test", "A", "allow", "allowed")},
		saw:  []seen{sawQuery("y.wild.test", "A")}})
	for _, e := range fn.Since(em) {
		if e.Kind == "dns" && e.Name != strings.ToLower(e.Name) {
			t.Errorf("the resolver passed the client's spelling upstream: %s", e)
		}
	}

	// Whatever resolver address the container uses, over UDP or TCP, IPv4
	// or IPv6, the policy resolver answers; only the host asks upstream.
	em = fn.Mark()
	// A fresh name for each, so that each is asked upstream, not cached,
	// and each denial is logged on a line of its own (repeats of one within
	// 10 s are only counted past the tenth).
	for i, srv := range []string{fn.ip(hUnused), "127.0.0.11", "[" + fn.ip6(hUnused) + "]:53", "[::1]:53"} {
		for _, proto := range []string{"udp", "tcp"} {
			name := fmt.Sprintf("via%d%s.wild.test", i, proto)
			denied := fmt.Sprintf("via%d%s.denied.test", i, proto)
			c.check(echeck{name: "resolver " + srv + " over " + proto,
				args:  []string{"dns", srv, name, "A", proto},
				out:   "OK A:" + fn.ip(hWild),
				dec:   []want{dnsWant(name, "A", "allow", "allowed")},
				saw:   []seen{sawQuery(name, "A")},
				never: []seen{queryContaining("denied")}})
			c.check(echeck{name: "resolver " + srv + " over " + proto + ", denied name",
				args:  []string{"dns", srv, denied, "A", proto},
				out:   "ERR NXDOMAIN",
				dec:   []want{dnsWant(denied, "A", "deny", "not_allowed")},
				never: []seen{queryContaining("denied")}})
		}
	}
	for _, e := range fn.Since(em) {
		if e.Kind != "dns" || e.RemoteIP() != fn.ip(hHost) || e.LocalPort() != 53 {
			t.Errorf("only the filter, from the host, may reach the upstream resolver: %s", e)
		}
	}

	// busybox's nslookup, aimed at an address where no resolver lives.
	lm := c.logMark()
	out := c.exec("nslookup", "allowed.test", fn.ip(hUnused))
	full := c.r.runWith(runOpts{}, append(fn.globals(), "exec", c.id, "nslookup", "allowed.test", fn.ip(hUnused))...)
	if !strings.Contains(full.Stdout, fn.ip(hAllowed)) {
		t.Errorf("nslookup allowed.test %s: no %s in the answer (last line %q):\n%s", fn.ip(hUnused), fn.ip(hAllowed), out, full)
	}
	c.waitDecision(lm, dnsWant("allowed.test", "A", "allow", "allowed"))
	denied := c.r.runWith(runOpts{}, append(fn.globals(), "exec", c.id, "nslookup", "denied.test", fn.ip(hUnused))...)
	if denied.Code == 0 || strings.Contains(denied.Stdout, fn.ip(hDenied)) {
		t.Errorf("nslookup denied.test resolved:\n%s", denied)
	}
	if evs := fn.Since(em); len(evs) > 0 {
		for _, e := range evs {
			if fakenet.QueryContaining("denied")(e) {
				t.Errorf("a denied name reached the upstream resolver: %s", e)
			}
		}
	}
}
