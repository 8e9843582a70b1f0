package integration

import (
	"strings"
	"testing"
	"time"

	"github.com/opencontainers/runtime-spec/specs-go"

	"github.com/clawrun/clawrun/test/fakenet"
)

// TestEgressNoOtherWayOut: in a namespace with a real route into the fake
// internet, nothing but DNS and TCP through the filter gets anywhere under
// an egress policy: UDP, QUIC-like UDP 443, ICMP, IPv6, raw and packet
// sockets and ping all fail, CAP_NET_RAW is dropped, and not one packet
// from the container's addresses reaches the fake internet. The control
// is the same container without a policy (with CAP_NET_RAW, as Docker
// grants it, in both): every one of these gets out.
func TestEgressNoOtherWayOut(t *testing.T) {
	r, fn := egressRuntime(t)
	rn := fn.routedNet(t)
	netRaw := addCaps("CAP_NET_RAW")
	fromContainer := func(e fakenet.Event) bool { return e.RemoteIP() == rn.IP || e.RemoteIP() == rn.IP6 }
	ways := []struct {
		name     string
		args     []string
		confined string // what the probe prints under the policy
		arrives  bool   // the control's attempt is recorded by a server
	}{
		{"UDP to the echo server", []string{"udp", fn.ip(hDNS), "7", "hello"}, "ERR EPERM", true},
		{"QUIC-like UDP 443 to an allowed host", []string{"udp", fn.ip(hAllowed), "443", "quic"}, "ERR EPERM", true},
		{"UDP over IPv6", []string{"udp", fn.ip6(hDNS), "7", "hello6"}, "ERR EPERM", true},
		{"ICMP echo", []string{"icmp", fn.ip(hDNS)}, "ERR EPERM", false},
		// Dropped as well (the counters say so), but the kernel does not
		// report it to IPv6 ping sockets.
		{"ICMPv6 echo", []string{"icmp", fn.ip6(hDNS)}, "ERR EPERM|ERR ETIMEDOUT", false},
		{"raw socket", []string{"socket", "raw"}, "ERR EPERM", false},
		{"packet socket", []string{"socket", "packet"}, "ERR EPERM", false},
	}
	ping := func(c *ectr) result {
		return r.runWith(runOpts{}, append(fn.globals(), "exec", c.id, "ping", "-c", "1", "-W", "2", fn.ip(hDNS))...)
	}

	// The control: no policy, the same namespace and capabilities.
	base := fn.start(r, fn.egressBundle(r, rn.inNet, netRaw))
	em, before := fn.Mark(), rn.packets(t)
	for _, w := range ways {
		wm := fn.Mark()
		base.expect("OK", w.args...)
		if w.arrives {
			fn.waitSaw(t, wm, "the control's "+w.name, func(e fakenet.Event) bool { return e.Kind == "udp" && fromContainer(e) })
		}
	}
	if res := ping(base); res.Code != 0 {
		t.Errorf("control: ping without a policy failed:\n%s", res)
	}
	if n := rn.packets(t) - before; n == 0 {
		t.Fatalf("control: no packet from the container reached the fake internet; it saw:%s", fn.Dump(em))
	}
	r.ok(append(fn.globals(), "delete", "-f", base.id)...)

	c := fn.startPolicy(r, policyDoc(`  web:
    endpoints:
      - {host: allowed.test, port: 443}
`), rn.inNet, netRaw)
	em, before = fn.Mark(), rn.packets(t)
	for _, w := range ways {
		c.check(echeck{name: w.name, args: w.args, out: w.confined, never: []seen{{"anything from the container", fromContainer}}})
	}
	if res := ping(c); res.Code == 0 {
		t.Errorf("ping got through:\n%s", res)
	}
	status := r.runWith(runOpts{}, append(fn.globals(), "exec", c.id, "cat", "/proc/self/status")...)
	if capEff(t, status.Stdout)&(1<<13) != 0 {
		t.Errorf("CAP_NET_RAW is effective under an egress policy:\n%s", status.Stdout)
	}
	fn.flush(t)
	for _, e := range fn.Since(em) {
		t.Errorf("the fake internet received something: %s", e)
	}
	if n := rn.packets(t) - before; n != 0 {
		t.Errorf("%d packets from the container's own addresses reached the fake internet", n)
	}
	// And yet TCP through the filter works in the same container.
	c.check(fn.allowedTLS("allowed TLS"))
}

// routedNet is a network namespace with a real route into the fake
// internet (as Docker's or a CNI's would be), for a container to join:
// without the filter, everything would get through (fakenet's Client).
type routedNet struct {
	*fakenet.Client
	t *testing.T
}

// routedNet makes one, removed at the end of t.
func (fn *fakeNet) routedNet(t *testing.T) *routedNet {
	t.Helper()
	c, err := fn.AddClient(fakenet.ClientOptions{Name: "routed", Block: blockRouted})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := c.Close(); err != nil {
			t.Errorf("removing %s: %v", c.NS, err)
		}
	})
	return &routedNet{c, t}
}

// packets is how many packets from the container's addresses reached the
// fake internet.
func (rn *routedNet) packets(t *testing.T) int {
	t.Helper()
	n, err := rn.Packets()
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// packetsTo is how many TCP or UDP packets from the container's addresses
// to addr:port reached the fake internet: what one probe sent, where
// packets() also counts the kernel's own (neighbour discovery, retries).
func (rn *routedNet) packetsTo(t *testing.T, proto, addr string, port int) int {
	t.Helper()
	n, err := rn.PacketsTo(proto, addr, port)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// inNet joins the container to the namespace.
func (rn *routedNet) inNet(s *specs.Spec) { joinNetns(rn.NetnsPath())(s) }

// TestEgressRoutedNetns: a container whose namespace has a real route
// into the fake internet. Without clawrun (the control) UDP, ICMP, IPv6
// and direct TCP get there; under an egress policy none of them do, not
// one packet, while DNS and TCP through the filter work.
func TestEgressRoutedNetns(t *testing.T) {
	r, fn := egressRuntime(t)
	rn := fn.routedNet(t)
	probe := fn.hostProbe(t)

	// The control: the same probe, in the same namespace, without clawrun.
	em := fn.Mark()
	for _, args := range [][]string{
		{"udp", fn.ip(hDNS), "7", "control"},
		{"udp", fn.ip6(hDNS), "7", "control6"},
		{"icmp", fn.ip(hDNS)},
		{"icmp", fn.ip6(hDNS)},
		{"tcp", fn.ip(hSvc), "2222"},
	} {
		out, err := runCmd(15*time.Second, "ip", append([]string{"netns", "exec", rn.NS, probe}, args...)...)
		if err != nil || !strings.HasPrefix(out, "OK") {
			t.Fatalf("control without clawrun: probe %v: %q %v; the fake internet saw:%s", args, out, err, fn.Dump(em))
		}
	}
	fn.waitSaw(t, em, "the control's UDP datagram", func(e fakenet.Event) bool { return e.Kind == "udp" && e.RemoteIP() == rn.IP })
	before := rn.packets(t)
	if before == 0 {
		t.Fatal("the control's packets were not counted")
	}

	c := fn.startPolicy(r, policyDoc(`  web:
    endpoints:
      - {host: allowed.test, port: 443}
`), rn.inNet)
	// Counted from here: the namespace's kernel still answers the
	// gateway's neighbour probes about the control's traffic until the
	// filter is in place.
	before = rn.packets(t)
	em = fn.Mark()
	noUDP := seen{"a UDP datagram", fakenet.OfKind("udp")}
	c.checks(
		echeck{name: "UDP to the echo server", args: []string{"udp", fn.ip(hDNS), "7", "hello"}, out: "ERR EPERM", never: []seen{noUDP}},
		echeck{name: "QUIC-like UDP 443", args: []string{"udp", fn.ip(hAllowed), "443", "quic"}, out: "ERR EPERM", never: []seen{noUDP}},
		echeck{name: "UDP over IPv6", args: []string{"udp", fn.ip6(hDNS), "7", "hello6"}, out: "ERR EPERM", never: []seen{noUDP}},
		echeck{name: "ICMP echo", args: []string{"icmp", fn.ip(hDNS)}, out: "ERR EPERM"},
		// Dropped as well (the counters below say so), but the kernel does
		// not report it to IPv6 ping sockets.
		echeck{name: "ICMPv6 echo", args: []string{"icmp", fn.ip6(hDNS)}, out: "ERR EPERM|ERR ETIMEDOUT"},
		echeck{name: "DNS to a resolver address that does not exist",
			args: []string{"dns", fn.ip(hUnused), "allowed.test"},
			out:  "OK A:" + fn.ip(hAllowed),
			dec:  []want{dnsWant("allowed.test", "A", "allow", "allowed")}},
		echeck{name: "allowed TLS goes through the filter",
			args: []string{"tls", "allowed.test", "443", "allowed.test"},
			out:  "OK cn=allowed.test verify=ok hello sni=allowed.test local=" + fn.ip(hAllowed),
			dec:  []want{connWant("tls", "allowed.test", 443, "allow", "allowed")},
			saw:  []seen{sawTLS("allowed.test", fn.ip(hAllowed))}},
		// A server that speaks first, reached by address: the proxy waits
		// for a ClientHello or a request that never comes.
		echeck{name: "TCP to an address, server speaks first",
			args:  []string{"tcp", fn.ip(hSvc), "2222"},
			out:   "ERR ETIMEDOUT",
			dec:   []want{connWant("tcp", "", 2222, "deny", "unknown_protocol")},
			never: []seen{sawConnTo(fn.ip(hSvc), 2222)}},
		echeck{name: "TCP over IPv6 without SNI",
			args:  []string{"tls-nosni", fn.ip6(hDNS), "443"},
			out:   "ERR EOF|ERR ECONNRESET",
			dec:   []want{connWant("tls", "", 443, "deny", "no_sni")},
			never: []seen{noConnection}},
	)
	ping := r.runWith(runOpts{}, append(fn.globals(), "exec", c.id, "ping", "-c", "1", "-W", "1", fn.ip(hDNS))...)
	if ping.Code == 0 {
		t.Errorf("ping got through:\n%s", ping)
	}
	for _, e := range fn.Since(em) {
		if e.RemoteIP() == rn.IP || e.RemoteIP() == rn.IP6 {
			t.Errorf("the fake internet received something from the container itself: %s", e)
		}
	}
	if after := rn.packets(t); after != before {
		t.Errorf("%d packets from the container's own addresses reached the fake internet", after-before)
	}

	// At delete the rules go; the namespace and its routes stay as they were.
	pid := r.state(c.id).Pid
	if tables := nftTables(t, pid); !strings.Contains(tables, "table inet clawrun") {
		t.Errorf("no clawrun table in the container's namespace:\n%s", tables)
	}
	r.ok("delete", "-f", c.id)
	out, err := runCmd(10*time.Second, "ip", "netns", "exec", rn.NS, "nft", "list", "tables")
	if err != nil || strings.Contains(out, "clawrun") {
		t.Errorf("after delete, the namespace's tables are %q (%v)", out, err)
	}
	routes, err := runCmd(10*time.Second, "ip", "-n", rn.NS, "route", "show", "default")
	if err != nil || !strings.Contains(routes, rn.Gateway) {
		t.Errorf("after delete, the namespace's default route is %q (%v)", routes, err)
	}
	if procs := filterProcs(r.root); len(procs) > 0 {
		t.Errorf("filter processes left after delete: %v", procs)
	}
}
