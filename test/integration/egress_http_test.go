package integration

import (
	"strings"
	"testing"
)

// TestEgressHTTP: plain HTTP is decided on the Host of every request of a
// connection; a refused request gets a 403 from the proxy and never
// reaches anyone.
func TestEgressHTTP(t *testing.T) {
	r, fn := egressRuntime(t)
	c := fn.startPolicy(r, policyDoc(`  web:
    endpoints:
      - {host: allowed.test, ports: [80, 443]}
      - {host: other.test, port: 80}
`))
	allowedIP := fn.ip(hAllowed)
	ok := "OK 200 host=allowed.test local=" + allowedIP + " path=/"

	c.checks(
		echeck{name: "allowed Host",
			args: []string{"http", "allowed.test", "80", "allowed.test"},
			out:  ok,
			dec:  []want{connWant("http", "allowed.test", 80, "allow", "allowed")},
			saw:  []seen{sawHTTP("allowed.test", allowedIP)}},
		echeck{name: "denied Host aimed at an allowed host's address",
			args:  []string{"http", allowedIP, "80", "denied.test"},
			out:   "OK 403 clawrun: egress to denied.test:80 denied (not_allowed)",
			dec:   []want{connWant("http", "denied.test", 80, "deny", "not_allowed")},
			never: []seen{nothing}},
		echeck{name: "an IP literal as Host",
			args:  []string{"http", allowedIP, "80", allowedIP},
			out:   "OK 403 ",
			dec:   []want{connWant("http", allowedIP, 80, "deny", "ip_literal")},
			never: []seen{nothing}},
		echeck{name: "allowed Host on a port it is not allowed on",
			args:  []string{"http", allowedIP, "8080", "other.test"},
			out:   "OK 403 ",
			dec:   []want{connWant("http", "other.test", 8080, "deny", "port")},
			never: []seen{nothing}},
		echeck{name: "allowed Host aimed at a denied address",
			args:  []string{"http", fn.ip(hDenied), "80", "allowed.test"},
			out:   ok,
			dec:   []want{connWant("http", "allowed.test", 80, "allow", "allowed")},
			saw:   []seen{sawHTTP("allowed.test", allowedIP)},
			never: []seen{{"a connection to the denied address", func(e netEvent) bool { return e.Kind != "dns" && e.localIP() == fn.ip(hDenied) }}}},
	)

	// Keep-alive: the second request of the connection names another
	// host. It is refused (403) whether that host is denied or allowed
	// (the connection is already bound to the first host's upstream).
	for _, second := range []string{"denied.test", "other.test"} {
		lm, em := c.logMark(), fn.mark()
		line := c.probe("http", "allowed.test", "80", "allowed.test", second)
		if want := ok + " | 403 clawrun: egress to " + second + ":80 denied (not_allowed)"; line != "OK "+strings.TrimPrefix(want, "OK ") {
			t.Errorf("keep-alive, second Host %s: got %q, want %q", second, line, want)
		}
		c.waitDecision(lm, connWant("http", second, 80, "deny", "not_allowed"))
		// The connection itself was allowed for its first host.
		c.waitDecision(lm, connWant("http", "allowed.test", 80, "allow", "allowed"))
		fn.waitSaw(t, em, "the first request", sawHTTP("allowed.test", allowedIP).match)
		var accepts, requests int
		for _, e := range fn.since(em) {
			switch {
			case e.Kind == "accept":
				accepts++
			case e.Kind == "http" && e.Name == "allowed.test":
				requests++
			case e.Kind == "http":
				t.Errorf("keep-alive, second Host %s: the upstream received the refused request: %s", second, e)
			}
		}
		if accepts != 1 || requests != 1 {
			t.Errorf("keep-alive, second Host %s: the upstream got %d connections and %d requests, want 1 and 1:%s", second, accepts, requests, fn.dump(em))
		}
	}
}
