package integration

import (
	"net/netip"
	"os"
	"testing"
)

// TestEgressNoTimeWaitOnHost: connections the container closes first
// leave no TIME_WAIT in the host's network namespace, where the filter
// dials from (every container's would pile up there): once the exchange
// is over, the filter removes its side's. The client's own TIME_WAIT, in
// the container's namespace, shows it did close first.
func TestEgressNoTimeWaitOnHost(t *testing.T) {
	r, fn := egressRuntime(t)
	c := fn.startPolicy(r, policyDoc(`  web:
    endpoints:
      - {host: allowed.test, port: 80}
`))
	upstream := netip.AddrPortFrom(netip.MustParseAddr(fn.ip(hAllowed)), 80)
	// Other tests' connections to the same server may have left some.
	before := timeWaits(procSockets(os.Getpid(), upstream))
	const conns = 5
	for range conns {
		mark := c.logMark()
		c.expect("OK 200 host=allowed.test", "http", "allowed.test", "80", "allowed.test")
		c.waitDecision(mark, connWant("http", "allowed.test", 80, "allow", "allowed"))
	}
	if n := len(timeWaits(procSockets(c.r.state(c.id).Pid, upstream))); n < conns {
		t.Fatalf("the container's namespace has %d sockets in TIME_WAIT towards %s, want %d: the client did not close first", n, upstream, conns)
	}
	var left []string
	for local := range timeWaits(procSockets(os.Getpid(), upstream)) {
		if !before[local] {
			left = append(left, local)
		}
	}
	if len(left) > 0 {
		t.Fatalf("the host's namespace has %d new sockets in TIME_WAIT towards %s after the connections ended (local %v), want none", len(left), upstream, left)
	}
}

// timeWaits is the local addresses of procSockets' lines in TIME_WAIT.
func timeWaits(socks [][]string) map[string]bool {
	out := map[string]bool{}
	for _, f := range socks {
		if f[3] == "06" {
			out[f[1]] = true
		}
	}
	return out
}
