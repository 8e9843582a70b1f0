package integration

// The egress filter and the network namespace it guards: what may leave
// through a real interface, which filter a namespace has, and what is left
// of a filter when its container goes, however it goes.

import (
	"strings"
	"testing"
	"time"

	"github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
)

// joinNetns makes the container join the network namespace at path.
func joinNetns(path string) func(*specs.Spec) {
	return func(s *specs.Spec) {
		for i, ns := range s.Linux.Namespaces {
			if ns.Type == specs.NetworkNamespace {
				s.Linux.Namespaces[i].Path = path
				return
			}
		}
		s.Linux.Namespaces = append(s.Linux.Namespaces, specs.LinuxNamespace{Type: specs.NetworkNamespace, Path: path})
	}
}

// sameFile tells whether two paths name the same file (a namespace); a
// path this process cannot stat names none it shares.
func sameFile(a, b string) bool {
	var sa, sb unix.Stat_t
	return unix.Stat(a, &sa) == nil && unix.Stat(b, &sb) == nil && sa.Dev == sb.Dev && sa.Ino == sb.Ino
}

// TestEgressLoopbackStaysLocal: in a namespace with a real route out, a
// socket forced onto the real interface (SO_BINDTODEVICE, IP_UNICAST_IF,
// both open to an unprivileged process) gets nothing out through it: not
// packets addressed to 127.0.0.1, nor the traffic the filter redirects to
// its listeners on 127.0.0.1 and ::1. (The kernel itself never sends ::1
// out of a real interface.) The control: without clawrun,
// every one of these probes reaches the fake internet's side of the link.
func TestEgressLoopbackStaysLocal(t *testing.T) {
	r, fn := egressRuntime(t)
	rn := fn.routedNet(t)
	probe := fn.hostProbe(t)
	type attempt struct {
		name string
		args []string
		err  bool // must fail (what the filter redirects may reach its listeners instead)
	}
	var attempts []attempt
	for _, how := range []string{"bind", "unicast-if"} {
		attempts = append(attempts,
			attempt{how + ": UDP to 127.0.0.1", []string{"udp-dev", how, rn.ifname, "127.0.0.1", "7", "leak"}, true},
			attempt{how + ": TCP to 127.0.0.1", []string{"tcp-dev", how, rn.ifname, "127.0.0.1", "2222"}, true},
			// Redirected by the filter to 127.0.0.1 and ::1: the reroute
			// keeps the socket's interface.
			attempt{how + ": DNS to the resolver", []string{"udp-dev", how, rn.ifname, fn.ip(hDNS), "53", "dns-leak"}, false},
			attempt{how + ": DNS over IPv6", []string{"udp-dev", how, rn.ifname, fn.ip6(hDNS), "53", "dns-leak6"}, false},
			attempt{how + ": TCP to an allowed host", []string{"tcp-dev", how, rn.ifname, fn.ip(hAllowed), "443"}, false},
		)
	}

	// The control: the same probes in the same namespace, without clawrun.
	for _, a := range attempts {
		before := rn.packets(t)
		out, _ := runCmd(15*time.Second, "ip", append([]string{"netns", "exec", rn.ns, probe}, a.args...)...)
		waitFor(t, 5*time.Second, "the control's packets ("+a.name+": "+strings.TrimSpace(out)+") to reach the fake internet",
			func() bool { return rn.packets(t) > before })
	}

	c := fn.startPolicy(r, policyDoc(`  web:
    endpoints:
      - {host: allowed.test, port: 443}
`), rn.inNet)
	em := fn.mark()
	before := rn.packets(t)
	for _, a := range attempts {
		if line := c.probe(a.args...); a.err && !strings.HasPrefix(line, "ERR ") {
			t.Errorf("%s: probe %s: %q, want an error", a.name, strings.Join(a.args, " "), line)
		}
	}
	time.Sleep(150 * time.Millisecond) // packets in flight
	if after := rn.packets(t); after != before {
		t.Errorf("%d packets from the container's addresses reached the fake internet", after-before)
	}
	for _, e := range fn.since(em) {
		t.Errorf("the fake internet received something: %s", e)
	}
	// Loopback itself still works, the filter's redirect to it included.
	c.checks(
		echeck{name: "DNS to a loopback resolver address",
			args: []string{"dns", "127.0.0.1", "allowed.test"},
			out:  "OK A:" + fn.ip(hAllowed),
			dec:  []want{dnsWant("allowed.test", "A", "allow", "allowed")}},
		fn.allowedTLS("allowed TLS"),
	)
}
