package integration

import (
	"encoding/json"
	"fmt"
	"net"
	"os"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/opencontainers/runtime-spec/specs-go"
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
	fromContainer := func(e netEvent) bool { return hostOf(e.Remote) == rn.ip || hostOf(e.Remote) == rn.ip6 }
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
	em, before := fn.mark(), rn.packets(t)
	for _, w := range ways {
		wm := fn.mark()
		base.expect("OK", w.args...)
		if w.arrives {
			fn.waitSaw(t, wm, "the control's "+w.name, func(e netEvent) bool { return e.Kind == "udp" && fromContainer(e) })
		}
	}
	if res := ping(base); res.Code != 0 {
		t.Errorf("control: ping without a policy failed:\n%s", res)
	}
	if n := rn.packets(t) - before; n == 0 {
		t.Fatalf("control: no packet from the container reached the fake internet; it saw:%s", fn.dump(em))
	}
	r.ok(append(fn.globals(), "delete", "-f", base.id)...)

	c := fn.startPolicy(r, policyDoc(`  web:
    endpoints:
      - {host: allowed.test, port: 443}
`), rn.inNet, netRaw)
	em, before = fn.mark(), rn.packets(t)
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
	for _, e := range fn.since(em) {
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
// without the filter, everything would get through.
type routedNet struct {
	ns         string
	ifname     string // its interface into the fake internet
	ip, ip6    string // the container's addresses
	counter4   string // nft counters in the fake internet, of packets from ip and ip6
	counter6   string
	fakeNS     string
	cidr6      string
	gwIP, gwV6 string
}

var cnetSeq int

func (fn *fakeNet) routedNet(t *testing.T) *routedNet {
	t.Helper()
	cnetSeq++
	pid := os.Getpid()
	oct := fn.oct + 2
	rn := &routedNet{
		ns:       fmt.Sprintf("clawrun-cnet-%d-%d", pid, cnetSeq),
		ip:       fmt.Sprintf("198.18.%d.2", oct),
		gwIP:     fmt.Sprintf("198.18.%d.1", oct),
		ip6:      v6addr(oct, 2),
		gwV6:     v6addr(oct, 1),
		cidr6:    v6addr(oct, 0) + "/112",
		counter4: "fromc4", counter6: "fromc6",
		fakeNS: fn.ns,
	}
	cIf, fIf := fmt.Sprintf("ccn%dc%d", pid%1000000, cnetSeq), fmt.Sprintf("ccn%df%d", pid%1000000, cnetSeq)
	rn.ifname = cIf
	cn := func(args ...string) []string { return append([]string{"ip", "-n", rn.ns}, args...) }
	fk := func(args ...string) []string { return append([]string{"ip", "-n", fn.ns}, args...) }
	t.Cleanup(func() {
		_, _ = runCmd(10*time.Second, "ip", "netns", "exec", fn.ns, "nft", "delete", "table", "inet", "cwatch")
		if _, err := runCmd(10*time.Second, "ip", "netns", "del", rn.ns); err != nil {
			t.Errorf("removing %s: %v", rn.ns, err)
		}
	})
	err := runAll([][]string{
		{"ip", "netns", "add", rn.ns},
		{"ip", "link", "add", cIf, "netns", rn.ns, "type", "veth", "peer", "name", fIf, "netns", fn.ns},
		cn("link", "set", "lo", "up"),
		cn("addr", "add", rn.ip+"/24", "dev", cIf),
		cn("-6", "addr", "add", rn.ip6+"/112", "dev", cIf, "nodad"),
		cn("link", "set", cIf, "up"),
		fk("addr", "add", rn.gwIP+"/24", "dev", fIf),
		fk("-6", "addr", "add", rn.gwV6+"/112", "dev", fIf, "nodad"),
		fk("link", "set", fIf, "up"),
		cn("route", "add", "default", "via", rn.gwIP),
		cn("-6", "route", "add", "default", "via", rn.gwV6),
		// Unprivileged ICMP sockets are allowed here: only the filter
		// may stop a ping.
		{"ip", "netns", "exec", rn.ns, "sh", "-c", "echo 0 2147483647 > /proc/sys/net/ipv4/ping_group_range"},
	})
	if err != nil {
		t.Fatal(err)
	}
	rules := fmt.Sprintf(`table inet cwatch {
	counter fromc4 {}
	counter fromc6 {}
	set seen4 { type ipv4_addr . inet_proto . inet_service; flags dynamic; counter; size 65535; }
	set seen6 { type ipv6_addr . inet_proto . inet_service; flags dynamic; counter; size 65535; }
	chain in {
		type filter hook prerouting priority -300; policy accept;
		ip saddr %[1]s counter name fromc4
		ip6 saddr %[2]s counter name fromc6
		ip saddr %[1]s meta l4proto { tcp, udp } update @seen4 { ip daddr . meta l4proto . th dport }
		ip6 saddr %[2]s meta l4proto { tcp, udp } update @seen6 { ip6 daddr . meta l4proto . th dport }
	}
}
`, rn.ip, rn.cidr6)
	f := writeTemp(t, "cwatch.nft", rules)
	if _, err := runCmd(10*time.Second, "ip", "netns", "exec", fn.ns, "nft", "-f", f); err != nil {
		t.Fatal(err)
	}
	return rn
}

var packetsRe = regexp.MustCompile(`packets (\d+)`)

// packets is how many packets from the container's addresses reached the
// fake internet.
func (rn *routedNet) packets(t *testing.T) int {
	t.Helper()
	total := 0
	for _, name := range []string{rn.counter4, rn.counter6} {
		total += nftCounter(t, rn.fakeNS, "cwatch", name)
	}
	return total
}

// nftCounter is the packet count of an nft counter in table inet table of
// the named namespace.
func nftCounter(t *testing.T, ns, table, name string) int {
	t.Helper()
	out, err := runCmd(10*time.Second, "ip", "netns", "exec", ns, "nft", "list", "counter", "inet", table, name)
	if err != nil {
		t.Fatal(err)
	}
	m := packetsRe.FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("no packet count in %q", out)
	}
	n, _ := strconv.Atoi(m[1])
	return n
}

// packetsTo is how many TCP or UDP packets from the container's addresses
// to addr:port reached the fake internet: what one probe sent, where
// packets() also counts the kernel's own (neighbour discovery, retries).
func (rn *routedNet) packetsTo(t *testing.T, proto, addr string, port int) int {
	t.Helper()
	set := "seen4"
	if strings.Contains(addr, ":") {
		set = "seen6"
	}
	out, err := runCmd(10*time.Second, "ip", "netns", "exec", rn.fakeNS, "nft", "-j", "list", "set", "inet", "cwatch", set)
	if err != nil {
		t.Fatal(err)
	}
	var doc struct {
		Nftables []struct {
			Set *struct {
				Elem []struct {
					Elem struct {
						Val struct {
							Concat []any `json:"concat"`
						} `json:"val"`
						Counter struct {
							Packets int `json:"packets"`
						} `json:"counter"`
					} `json:"elem"`
				} `json:"elem"`
			} `json:"set"`
		} `json:"nftables"`
	}
	if err := json.Unmarshal([]byte(out), &doc); err != nil {
		t.Fatalf("nft -j list set %s: %v\n%s", set, err, out)
	}
	want := []string{net.ParseIP(addr).String(), proto, strconv.Itoa(port)}
	for _, o := range doc.Nftables {
		if o.Set == nil {
			continue
		}
		for _, e := range o.Set.Elem {
			c := e.Elem.Val.Concat
			if len(c) != 3 {
				continue
			}
			got := []string{fmt.Sprint(c[0]), fmt.Sprint(c[1]), fmt.Sprint(c[2])}
			if ip := net.ParseIP(got[0]); ip != nil {
				got[0] = ip.String()
			}
			if got[0] == want[0] && got[1] == want[1] && got[2] == want[2] {
				return e.Elem.Counter.Packets
			}
		}
	}
	return 0
}

// inNet joins the container to the namespace.
func (rn *routedNet) inNet(s *specs.Spec) { joinNetns("/run/netns/" + rn.ns)(s) }

// TestEgressRoutedNetns: a container whose namespace has a real route
// into the fake internet. Without clawrun (the control) UDP, ICMP, IPv6
// and direct TCP get there; under an egress policy none of them do, not
// one packet, while DNS and TCP through the filter work.
func TestEgressRoutedNetns(t *testing.T) {
	r, fn := egressRuntime(t)
	rn := fn.routedNet(t)
	probe := fn.hostProbe(t)

	// The control: the same probe, in the same namespace, without clawrun.
	em := fn.mark()
	for _, args := range [][]string{
		{"udp", fn.ip(hDNS), "7", "control"},
		{"udp", fn.ip6(hDNS), "7", "control6"},
		{"icmp", fn.ip(hDNS)},
		{"icmp", fn.ip6(hDNS)},
		{"tcp", fn.ip(hSvc), "2222"},
	} {
		out, err := runCmd(15*time.Second, "ip", append([]string{"netns", "exec", rn.ns, probe}, args...)...)
		if err != nil || !strings.HasPrefix(out, "OK") {
			t.Fatalf("control without clawrun: probe %v: %q %v; the fake internet saw:%s", args, out, err, fn.dump(em))
		}
	}
	fn.waitSaw(t, em, "the control's UDP datagram", func(e netEvent) bool { return e.Kind == "udp" && hostOf(e.Remote) == rn.ip })
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
	em = fn.mark()
	noUDP := seen{"a UDP datagram", isKind("udp")}
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
	for _, e := range fn.since(em) {
		if hostOf(e.Remote) == rn.ip || hostOf(e.Remote) == rn.ip6 {
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
	out, err := runCmd(10*time.Second, "ip", "netns", "exec", rn.ns, "nft", "list", "tables")
	if err != nil || strings.Contains(out, "clawrun") {
		t.Errorf("after delete, the namespace's tables are %q (%v)", out, err)
	}
	routes, err := runCmd(10*time.Second, "ip", "-n", rn.ns, "route", "show", "default")
	if err != nil || !strings.Contains(routes, rn.gwIP) {
		t.Errorf("after delete, the namespace's default route is %q (%v)", routes, err)
	}
	if procs := filterProcs(r.root); len(procs) > 0 {
		t.Errorf("filter processes left after delete: %v", procs)
	}
}
