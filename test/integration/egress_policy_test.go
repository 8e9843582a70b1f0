package integration

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/opencontainers/runtime-spec/specs-go"

	"github.com/clawrun/clawrun/test/fakenet"
)

// TestEgressTCPEndpoint: a protocol: tcp endpoint is reached through a
// synthetic address that the resolver hands out without asking upstream;
// the server speaks first and the proxy dials the name's real address.
func TestEgressTCPEndpoint(t *testing.T) {
	r, fn := egressRuntime(t)
	c := fn.startPolicy(r, policyDoc(`  db:
    endpoints:
      - {host: svc.test, port: 2222, protocol: tcp}
`))
	line := c.check(echeck{name: "synthetic address",
		args:  []string{"dns", fn.ip(hDNS), "svc.test"},
		out:   "OK A:100.127.",
		dec:   []want{dnsWant("svc.test", "A", "allow", "allowed")},
		never: []seen{queryContaining("svc.test")}})
	synthetic := strings.TrimPrefix(strings.Fields(line)[1], "A:")
	c.checks(
		echeck{name: "the server speaks first",
			args: []string{"tcp", "svc.test", "2222"},
			out:  "OK BANNER " + fn.ip(hSvc),
			dec:  []want{connWant("tcp", "svc.test", 2222, "allow", "allowed")},
			saw:  []seen{sawConnTo(fn.ip(hSvc), 2222)}},
		echeck{name: "the synthetic address on another port",
			args:  []string{"tcp", synthetic, "2223"},
			out:   "ERR EOF|ERR ECONNRESET",
			dec:   []want{connWant("tcp", "svc.test", 2223, "deny", "port")},
			never: []seen{noConnection}},
	)
	for _, d := range c.decisions() {
		if d.Protocol == "tcp" && d.Decision == "allow" && d.ResolvedIP != fn.ip(hSvc) {
			t.Errorf("the proxy should dial svc.test's real address %s: %s", fn.ip(hSvc), d)
		}
	}
}

// TestEgressAllowedIPs: allowed_ips opens a range the runtime config does
// not (198.18.N+1.0/24) for that endpoint only.
func TestEgressAllowedIPs(t *testing.T) {
	r, fn := egressRuntime(t)
	c := fn.startPolicy(r, policyDoc(`  inside:
    endpoints:
      - {host: inside.test, port: 443, allowed_ips: ["`+fn.range2()+`"]}
      - {host: inside2.test, port: 443}
`))
	inside := fn.ip2(hSecond)
	c.checks(
		echeck{name: "endpoint with allowed_ips: resolved",
			args: []string{"dns", fn.ip(hDNS), "inside.test"},
			out:  "OK A:" + inside,
			dec:  []want{dnsWant("inside.test", "A", "allow", "allowed")}},
		echeck{name: "endpoint with allowed_ips: connected",
			args: []string{"tls", "inside.test", "443", "inside.test"},
			out:  "OK cn=inside.test verify=ok hello sni=inside.test local=" + inside,
			dec:  []want{connWant("tls", "inside.test", 443, "allow", "allowed")},
			saw:  []seen{sawTLS("inside.test", inside)}},
		echeck{name: "same address, endpoint without allowed_ips: removed from the answer",
			args: []string{"dns", fn.ip(hDNS), "inside2.test"},
			out:  "OK NODATA",
			dec:  []want{dnsWant("inside2.test", "A", "deny", "private_ip")}},
		echeck{name: "same address, endpoint without allowed_ips: not dialled",
			args:  []string{"tls", inside, "443", "inside2.test"},
			out:   "ERR EOF|ERR ECONNRESET",
			dec:   []want{connWant("tls", "inside2.test", 443, "deny", "private_ip")},
			never: []seen{noConnection}},
	)
}

// startClients starts a container of egressBundle(edits) with two
// copies of the probe, of which policies name one: allowed-client.
func (fn *fakeNet) startClients(r *rtest, edits ...func(*specs.Spec)) *ectr {
	r.t.Helper()
	b := fn.egressBundle(r, edits...)
	installProbe(r.t, b, "/usr/bin/allowed-client", 0o755)
	installProbe(r.t, b, "/usr/bin/other-client", 0o755)
	return fn.start(r, b)
}

// allowedClientOnly is a policy of TLS to allowed.test for allowed-client
// only.
var allowedClientOnly = withInline(policyDoc(`  tools:
    endpoints:
      - {host: allowed.test, port: 443}
    binaries:
      - {path: /usr/bin/allowed-client}
`))

// TestEgressBinaries: an endpoint restricted to an executable lets that
// executable (and its children) through and no other.
func TestEgressBinaries(t *testing.T) {
	r, fn := egressRuntime(t)
	c := fn.startClients(r, allowedClientOnly)
	allowedIP := fn.ip(hAllowed)
	tlsArgs := []string{"tls", allowedIP, "443", "allowed.test"}
	for _, tc := range []struct {
		name, binary string
		argv         []string
		out          string
		allow        bool
	}{
		{"the listed executable", "/usr/bin/allowed-client", append([]string{"allowed-client"}, tlsArgs...), "OK cn=allowed.test verify=ok", true},
		{"another executable", "/usr/bin/other-client", append([]string{"other-client"}, tlsArgs...), "ERR EOF|ERR ECONNRESET", false},
		{"the probe", probePath, append([]string{"probe"}, tlsArgs...), "ERR EOF|ERR ECONNRESET", false},
		{"a child of the listed executable", "/usr/bin/other-client",
			append([]string{"allowed-client", "exec", "/usr/bin/other-client"}, tlsArgs...), "OK", true},
	} {
		c.binaryTLS(tc.name, tc.argv, tc.out, tc.allow, tc.binary)
	}
}

// binaryTLS runs argv in the container, a TLS client of allowed.test at
// its address, and checks its line against out and the decision: allowed,
// and the handshake reached the fake internet, or denied for its binary,
// and nothing did; the decision names binary.
func (c *ectr) binaryTLS(name string, argv []string, out string, allow bool, binary string) {
	c.t.Helper()
	lm, em := c.logMark(), c.fn.Mark()
	if line := c.exec(argv...); !matches(line, out) {
		c.t.Errorf("%s: %v: got %q, want %q", name, argv, line, out)
	}
	var d decision
	if allow {
		d = c.waitDecision(lm, connWant("tls", "allowed.test", 443, "allow", "allowed"))
		c.fn.waitSaw(c.t, em, name+": the handshake", sawTLS("allowed.test", c.fn.ip(hAllowed)).match)
	} else {
		d = c.waitDecision(lm, connWant("tls", "allowed.test", 443, "deny", "binary"))
		c.checkNothing(em, name)
	}
	c.namesBinary(name, d, binary)
}

// namesBinary checks that a decision names binary.
func (c *ectr) namesBinary(what string, d decision, binary string) {
	c.t.Helper()
	if d.Binary != binary {
		c.t.Errorf("%s: the decision names binary %q, want %q: %s", what, d.Binary, binary, d)
	}
}

// TestEgressBinariesSharedSocket: a connection is decided by every process
// that holds its socket, found by the connection's own addresses: a
// denied executable that shares its socket with an allowed one, or hands
// the allowed one a listener on its own source port, is denied and named.
func TestEgressBinariesSharedSocket(t *testing.T) {
	r, fn := egressRuntime(t)
	c := fn.startClients(r, allowedClientOnly)
	// The allowed executable holds what it is sent; it starts first, so
	// that it comes before the senders in /proc.
	const holder = "/tmp/holder.sock"
	r.ok(append(fn.globals(), "exec", "-d", c.id, "allowed-client", "fd-hold", holder, "300")...)
	allowedIP := fn.ip(hAllowed)
	handoff := func(client, mode, to string) []string {
		return []string{client, "handoff-tls", mode, to, allowedIP, "443", "allowed.test"}
	}
	for _, tc := range []struct {
		name   string
		argv   []string
		allow  bool
		binary string
	}{
		{"the allowed executable alone", []string{"allowed-client", "tls", allowedIP, "443", "allowed.test"}, true, "/usr/bin/allowed-client"},
		{"a listener on its own port held by the allowed executable, connecting: allowed",
			handoff("allowed-client", "reuseport", holder), true, "/usr/bin/allowed-client"},
		{"a listener on its own port held by the allowed executable, connecting: another",
			handoff("other-client", "reuseport", holder), false, "/usr/bin/other-client"},
		{"a socket shared over a unix socket by two allowed processes",
			handoff("allowed-client", "share", holder), true, "/usr/bin/allowed-client"},
		{"a socket shared over a unix socket with the allowed executable",
			handoff("other-client", "share", holder), false, "/usr/bin/other-client"},
		{"a socket inherited by a child that runs the allowed executable",
			handoff("other-client", "share", "exec:/usr/bin/allowed-client"), false, "/usr/bin/other-client"},
	} {
		out := "ERR EOF|ERR ECONNRESET"
		if tc.allow {
			out = "OK cn=allowed.test verify=ok"
		}
		c.binaryTLS(tc.name, tc.argv, out, tc.allow, tc.binary)
	}
}

// TestEgressBinariesDNS: the names of an endpoint restricted to an
// executable are resolved for that executable only; any other process
// gets NXDOMAIN and its query never leaves (a query name is a channel
// out). Over UDP, where the asking process cannot be told for sure, such
// names are answered truncated and asked again over TCP.
func TestEgressBinariesDNS(t *testing.T) {
	r, fn := egressRuntime(t)
	c := fn.startClients(r, withInline(policyDoc(`  tools:
    endpoints:
      - {host: "*.wild.test", port: 443}
    binaries:
      - {path: /usr/bin/allowed-client}
  everyone:
    endpoints:
      - {host: allowed.test, port: 443}
`)))
	dnsSrv, wildIP := fn.ip(hDNS), fn.ip(hWild)
	for _, tc := range []struct {
		name, client, qname, proto string
		allow                      bool
	}{
		{"another executable, UDP", "other-client", "x123.wild.test", "udp", false},
		{"another executable, TCP", "other-client", "x124.wild.test", "tcp", false},
		{"the probe, UDP", "probe", "x125.wild.test", "udp", false},
		{"the allowed executable, UDP", "allowed-client", "x126.wild.test", "udp", true},
		{"the allowed executable, TCP", "allowed-client", "x127.wild.test", "tcp", true},
	} {
		lm, em := c.logMark(), fn.Mark()
		argv := []string{tc.client, "dns", dnsSrv, tc.qname, "A"}
		if tc.proto == "tcp" {
			argv = append(argv, "tcp")
		}
		line := c.exec(argv...)
		binary := "/usr/bin/" + tc.client
		if tc.allow {
			if !matches(line, "OK A:"+wildIP) {
				t.Errorf("%s: %v: got %q, want OK A:%s", tc.name, argv, line, wildIP)
			}
			fn.waitSaw(t, em, tc.name+": the query upstream", sawQuery(tc.qname, "A").match)
			c.namesBinary(tc.name, c.waitDecision(lm, dnsWant(tc.qname, "A", "allow", "allowed")), binary)
			continue
		}
		if !matches(line, "ERR NXDOMAIN") {
			t.Errorf("%s: %v: got %q, want ERR NXDOMAIN", tc.name, argv, line)
		}
		c.namesBinary(tc.name, c.waitDecision(lm, dnsWant(tc.qname, "A", "deny", "binary")), binary)
		fn.flush(t)
		for _, e := range fn.Since(em) {
			if fakenet.QueryContaining(tc.qname)(e) {
				t.Errorf("%s: the fake internet's resolver was asked %s", tc.name, e)
			}
		}
	}
	c.checks(
		echeck{name: "an unrestricted name, another executable, over UDP",
			args: []string{"dns", dnsSrv, "allowed.test"},
			out:  "OK A:" + fn.ip(hAllowed),
			dec:  []want{dnsWant("allowed.test", "A", "allow", "allowed")},
			saw:  []seen{sawQuery("allowed.test", "A")}},
		echeck{name: "the system resolver of another executable",
			args:  []string{"tls", "x128.wild.test", "443", "x128.wild.test"},
			out:   "ERR NXDOMAIN",
			dec:   []want{dnsWant("x128.wild.test", "A", "deny", "binary")},
			never: []seen{queryContaining("x128"), noConnection}},
	)
	// The allowed executable through the system resolver (UDP, truncated,
	// then TCP), then connecting.
	lm, em := c.logMark(), fn.Mark()
	if line := c.exec("allowed-client", "tls", "x129.wild.test", "443", "x129.wild.test"); !matches(line, "OK cn=x129.wild.test verify=ok") {
		t.Errorf("the allowed executable through the system resolver: got %q", line)
	}
	c.waitDecision(lm, dnsWant("x129.wild.test", "A", "deny", "tcp_required"))
	c.waitDecision(lm, dnsWant("x129.wild.test", "A", "allow", "allowed"))
	c.waitDecision(lm, connWant("tls", "x129.wild.test", 443, "allow", "allowed"))
	fn.waitSaw(t, em, "the allowed executable's handshake", sawTLS("x129.wild.test", wildIP).match)
}

// checkNothing fails if the fake internet received anything since mark.
func (c *ectr) checkNothing(mark int, what string) {
	c.t.Helper()
	c.fn.flush(c.t)
	for _, e := range c.fn.Since(mark) {
		c.t.Errorf("%s: the fake internet received %s", what, e)
	}
}

// TestEgressAudit: enforcement: audit lets through, and logs as audit,
// what an endpoint's other checks (binaries, request rules) would deny;
// it never opens names or ports the policy does not list.
func TestEgressAudit(t *testing.T) {
	r, fn := egressRuntime(t)
	c := fn.startClients(r, withInline(policyDoc(`  watched:
    endpoints:
      - {host: audit.test, port: 443, enforcement: audit}
    binaries:
      - {path: /usr/bin/allowed-client}
  api:
    endpoints:
      - host: allowed.test
        port: 80
        protocol: rest
        enforcement: audit
        rules:
          - allow: {method: GET, path: /ok}
      - host: other.test
        port: 80
        protocol: rest
        rules:
          - allow: {method: GET, path: /ok}
`)))
	lm := c.logMark()
	c.checks(
		echeck{name: "another executable's query for an audit endpoint, over UDP",
			args: []string{"dns", fn.ip(hDNS), "audit.test"},
			out:  "OK A:" + fn.ip(hAudit),
			dec:  []want{dnsWant("audit.test", "A", "audit", "binary")},
			saw:  []seen{sawQuery("audit.test", "A")}},
		echeck{name: "another executable on an audit endpoint",
			args: []string{"tls", "audit.test", "443", "audit.test"},
			out:  "OK cn=audit.test verify=ok hello sni=audit.test local=" + fn.ip(hAudit),
			dec:  []want{connWant("tls", "audit.test", 443, "audit", "binary")},
			saw:  []seen{sawTLS("audit.test", fn.ip(hAudit))}},
		echeck{name: "a request the audit endpoint's rules do not allow",
			args: []string{"http", "allowed.test", "80", "allowed.test", "-", "/forbidden"},
			out:  "OK 200 host=allowed.test local=" + fn.ip(hAllowed) + " path=/forbidden",
			dec:  []want{connWant("http", "allowed.test", 80, "audit", "request")},
			saw:  []seen{sawHTTP("allowed.test", fn.ip(hAllowed))}},
		echeck{name: "a request the audit endpoint's rules allow",
			args: []string{"http", "allowed.test", "80", "allowed.test", "-", "/ok"},
			out:  "OK 200 host=allowed.test",
			dec:  []want{connWant("http", "allowed.test", 80, "allow", "allowed")},
			saw:  []seen{sawHTTP("allowed.test", fn.ip(hAllowed))}},
		echeck{name: "the same request on an enforcing endpoint",
			args:  []string{"http", "other.test", "80", "other.test", "-", "/forbidden"},
			out:   "OK 403 clawrun: egress to other.test:80 denied (request)",
			dec:   []want{connWant("http", "other.test", 80, "deny", "request")},
			never: []seen{{"an HTTP request", fakenet.OfKind("http")}}},
		fn.deniedSNI("audit does not open unlisted names", fn.ip(hAllowed), "denied.test"),
		echeck{name: "audit does not open unlisted ports",
			args:  []string{"tls", fn.ip(hAudit), "22", "audit.test"},
			out:   "ERR EOF|ERR ECONNRESET",
			dec:   []want{connWant("tls", "audit.test", 22, "deny", "port")},
			never: []seen{nothing}},
		echeck{name: "audit does not resolve unlisted names",
			args:  []string{"dns", fn.ip(hDNS), "denied.test"},
			out:   "ERR NXDOMAIN",
			dec:   []want{dnsWant("denied.test", "A", "deny", "not_allowed")},
			never: []seen{queryContaining("denied")}},
	)
	// Answered over UDP: never truncated to be asked again over TCP.
	for _, d := range c.decisions()[lm:] {
		if d.Reason == "tcp_required" {
			t.Errorf("a query for an audit endpoint was answered truncated: %s", d)
		}
	}
	res := r.ok(append(fn.globals(), "audit", "--denied", c.id)...)
	found := false
	for line := range strings.SplitSeq(res.Stdout, "\n") {
		if f := strings.Fields(line); len(f) > 3 && f[1] == "audit" && f[2] == "tls" && f[3] == "audit.test:443" {
			found = true
		}
	}
	if !found {
		t.Errorf("clawrun audit --denied does not show the audited connection:\n%s", res.Stdout)
	}
}

// TestEgressHostNetworkRefused: network policies on a container that
// shares the host's network namespace are refused, and nothing is left:
// with no network namespace in the spec, or one that joins the host's by
// path (its /proc entry, a bind-mounted name of it).
func TestEgressHostNetworkRefused(t *testing.T) {
	r, fn := egressRuntime(t)
	hostNet := func(s *specs.Spec) {
		var keep []specs.LinuxNamespace
		for _, ns := range s.Linux.Namespaces {
			if ns.Type != specs.NetworkNamespace {
				keep = append(keep, ns)
			}
		}
		s.Linux.Namespaces = keep
	}
	// The runtime runs in this test's namespace.
	self := fmt.Sprintf("/proc/%d/ns/net", os.Getpid())
	named := fakenet.NetnsName("host")
	if _, err := runCmd(cmdTimeout, "ip", "netns", "attach", named, strconv.Itoa(os.Getpid())); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _, _ = runCmd(cmdTimeout, "ip", "netns", "del", named) })
	inline := withInline(policyDoc("  web:\n    endpoints:\n      - {host: allowed.test, port: 443}\n"))
	before, err := runCmd(cmdTimeout, "nft", "list", "tables")
	if err != nil {
		t.Fatal(err)
	}
	sysctls := hostRouteLocalnet(t)
	cases := []struct {
		name string
		edit func(*specs.Spec)
		cmd  string
	}{
		{"inline policy, run", func(s *specs.Spec) { inline(s); hostNet(s) }, "run"},
		{"egress annotation, create", func(s *specs.Spec) { annotate(annEgress, "allowed.test")(s); hostNet(s) }, "create"},
		{"joined by " + self, func(s *specs.Spec) { inline(s); joinNetns(self)(s) }, "create"},
		{"joined by a bind-mounted name", func(s *specs.Spec) { inline(s); joinNetns("/run/netns/" + named)(s) }, "create"},
	}
	if sameFile("/proc/1/ns/net", self) {
		cases = append(cases, struct {
			name string
			edit func(*specs.Spec)
			cmd  string
		}{"joined by /proc/1/ns/net", func(s *specs.Spec) { inline(s); joinNetns("/proc/1/ns/net")(s) }, "create"})
	}
	for _, tc := range cases {
		b := fn.egressBundle(r, tc.edit)
		id := newID(t)
		r.track(id)
		res := r.run(append(fn.globals(), tc.cmd, "--bundle", b, id)...)
		assertFailure(t, res, "shares the host's network namespace")
		r.assertGone(id, b)
		if procs := filterProcs(r.root); len(procs) > 0 {
			t.Errorf("%s: filter processes left: %v", tc.name, procs)
		}
		if after, err := runCmd(cmdTimeout, "nft", "list", "tables"); err != nil || after != before {
			t.Errorf("%s: the host's nftables tables changed: %q -> %q (%v)", tc.name, before, after, err)
		}
		if _, err := os.Stat(filepath.Join(fn.logDir, id+".egress.jsonl")); err == nil {
			t.Errorf("%s: a decision log was created", tc.name)
		}
		if now := hostRouteLocalnet(t); now != sysctls {
			t.Errorf("%s: the host's route_localnet changed: %s -> %s", tc.name, sysctls, now)
		}
	}
}

// hostRouteLocalnet is the runtime's namespace's route_localnet settings.
func hostRouteLocalnet(t *testing.T) string {
	t.Helper()
	var out []string
	for _, conf := range []string{"all", "default", "lo"} {
		out = append(out, conf+"="+readTrim(t, "/proc/sys/net/ipv4/conf/"+conf+"/route_localnet"))
	}
	return strings.Join(out, " ")
}

// TestEgressPodResolver: with no upstream_dns in the config, a pod's
// sandbox filter resolves allowed names through the pod's own resolver
// (the resolv.conf the CRI bind-mounts into the sandbox), not the host's;
// upstream_dns in the config still wins.
func TestEgressPodResolver(t *testing.T) {
	r, fn := egressRuntime(t)
	dir := t.TempDir()
	podResolv := filepath.Join(dir, "resolv.conf")
	noUpstream := filepath.Join(dir, "config.yaml")
	for name, content := range map[string]string{
		podResolv:  "search e2e.svc.cluster.local\nnameserver " + fn.ip(hDNS) + "\noptions ndots:5\n",
		noUpstream: fmt.Sprintf("egress:\n  allowed_upstream_ranges: [%q]\n  log_dir: %s\n", fn.Prefix(blockLink), fn.logDir),
	} {
		if err := os.WriteFile(name, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	sandbox := func(s *specs.Spec) {
		s.Annotations["io.kubernetes.cri.container-type"] = "sandbox"
		s.Mounts = append(s.Mounts, specs.Mount{Destination: "/etc/resolv.conf", Type: "bind", Source: podResolv, Options: []string{"rbind", "ro"}})
	}
	doc := withInline(policyDoc("  web:\n    endpoints:\n      - {host: allowed.test, port: 443}\n"))
	start := func(config string) *ectr {
		b := fn.egressBundle(r, doc, sandbox)
		id := newID(t)
		r.track(id)
		r.ok("--config", config, "run", "-d", "--bundle", b, id)
		r.waitStatus(id, "running")
		return &ectr{t: t, r: r, fn: fn, id: id, bundle: b, log: filepath.Join(fn.logDir, id+".egress.jsonl")}
	}
	// Where the filter asks: the fake internet's resolvers on port 53 (the
	// pod's) and portDNS2 (the administrator's) answer the same zone.
	allowedVia := func(port int) echeck {
		return echeck{name: fmt.Sprintf("allowed name, asked of the resolver on port %d", port),
			args: []string{"dns", fn.ip(hDNS), "allowed.test"},
			out:  "OK A:" + fn.ip(hAllowed),
			dec:  []want{dnsWant("allowed.test", "A", "allow", "allowed")},
			saw:  []seen{sawQueryAt("allowed.test", port)},
			never: []seen{{"the query at another resolver", func(e fakenet.Event) bool {
				return fakenet.Query("allowed.test")(e) && e.LocalPort() != port
			}}}}
	}

	c := start(noUpstream)
	c.checks(
		allowedVia(53),
		echeck{name: "denied name: never sent to the pod's resolver",
			args:  []string{"dns", fn.ip(hDNS), "other.test"},
			out:   "ERR NXDOMAIN",
			dec:   []want{dnsWant("other.test", "A", "deny", "not_allowed")},
			never: []seen{queryContaining("other.test")}},
	)

	// The administrator's upstream_dns wins over the pod's.
	adminConf := filepath.Join(dir, "admin.yaml")
	if err := os.WriteFile(adminConf, []byte(fmt.Sprintf("egress:\n  upstream_dns: [\"%s:%d\"]\n  allowed_upstream_ranges: [%q]\n  log_dir: %s\n", fn.ip(hDNS), portDNS2, fn.Prefix(blockLink), fn.logDir)), 0o644); err != nil {
		t.Fatal(err)
	}
	start(adminConf).check(allowedVia(portDNS2))
}

// sawQueryAt is a query for name received by the fake internet's
// resolver on port.
func sawQueryAt(name string, port int) seen {
	return seen{fmt.Sprintf("a DNS query for %s at the resolver on port %d", name, port), func(e fakenet.Event) bool {
		return fakenet.Query(name)(e) && e.LocalPort() == port
	}}
}

// TestEgressSharedFilter: a container that joins a namespace another
// container filters shares that filter (the namespace has one): an
// application container of a pod its sandbox's, and any container that
// joins another's namespace (docker run --network container:X) that one's.
// Its traffic is decided by the namespace's allow list; `clawrun audit`
// on it shows the owner's log and says so, `policy apply` on it points at
// the owner, state and list say whose filter it is, a container whose
// egress policy differs is refused, and when the owner goes first the
// rules stay: nothing gets out.
func TestEgressSharedFilter(t *testing.T) {
	for _, tc := range []struct {
		name              string
		owner, joiner     func(*specs.Spec)
		state, list, gone string // what state and list say about the joiner
		audit, apply      string
		refused           string
	}{
		{name: "pod",
			owner: annotate("io.kubernetes.cri.container-type", "sandbox"), joiner: annotate("io.kubernetes.cri.container-type", "container"),
			state: "filtering (generation 1), the pod's filter (sandbox %s)", list: "egress:filtering/gen1(pod)",
			gone:  "down: the pod's sandbox %s and its filter are gone",
			audit: "shares the egress filter of %s", apply: "shares the egress filter of its pod's sandbox %q",
			refused: "differs from its pod's"},
		{name: "joined namespace",
			owner: func(*specs.Spec) {}, joiner: func(*specs.Spec) {},
			state: "filtering (generation 1), shared: the filter of container %s", list: "egress:filtering/gen1(shared)",
			gone:  "down: container %s and its filter are gone",
			audit: "shares the egress filter of %s", apply: "shares the egress filter of container %q",
			refused: "differs from that of %s"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r, fn := egressRuntime(t)
			doc := policyDoc("  web:\n    endpoints:\n      - {host: allowed.test, port: 443}\n")
			// The namespace, as CNI makes a pod's: a route into the fake
			// internet that only the filter keeps containers from using.
			rn := fn.routedNet(t)
			owner := fn.start(r, fn.egressBundle(r, withInline(doc), tc.owner, rn.inNet))
			joiner := fn.start(r, fn.egressBundle(r, withInline(doc), tc.joiner, rn.inNet))
			if procs := filterProcs(filepath.Join(r.root, joiner.id)); len(procs) != 0 {
				t.Errorf("the joining container runs a filter of its own: %v", procs)
			}
			joiner.log, joiner.filteredBy = owner.log, owner.id // one namespace, one filter, one log
			joiner.checks(
				fn.allowedTLS("allowed TLS from the joining container"),
				fn.deniedSNI("denied SNI from the joining container", fn.ip(hAllowed), "denied.test"),
			)

			res := r.ok(append(fn.globals(), "audit", "--denied", joiner.id)...)
			if !strings.Contains(res.Stdout, "denied.test:443") || !strings.Contains(res.Stderr, fmt.Sprintf(tc.audit, owner.id)) {
				t.Errorf("clawrun audit on the joining container: want the owner's denials and a note naming it:\n%s", res)
			}
			file := filepath.Join(t.TempDir(), "wider.yaml")
			if err := os.WriteFile(file, []byte(policyDoc("  web:\n    endpoints:\n      - {host: other.test, port: 443}\n")), 0o644); err != nil {
				t.Fatal(err)
			}
			res = r.run(append(fn.globals(), "policy", "apply", joiner.id, file)...)
			assertFailure(t, res, fmt.Sprintf(tc.apply, owner.id))

			// A container with an allow list of its own: refused, and
			// nothing of it is left.
			other := fn.egressBundle(r, withInline(policyDoc("  web:\n    endpoints:\n      - {host: other.test, port: 443}\n")), tc.joiner, rn.inNet)
			id := newID(t)
			r.track(id)
			res = r.run(append(fn.globals(), "run", "-d", "--bundle", other, id)...)
			assertFailure(t, res, strings.ReplaceAll(tc.refused, "%s", owner.id))
			r.assertGone(id, other)

			if s, want := joiner.egressState(), fmt.Sprintf(tc.state, owner.id); s != want {
				t.Errorf("the joining container: state says egress %q, want %q", s, want)
			}
			if out := r.ok(append(fn.globals(), "list")...).Stdout; !strings.Contains(out, tc.list) {
				t.Errorf("clawrun list does not show the joining container as %s:\n%s", tc.list, out)
			}
			// The owner deleted while the other container still runs: the
			// namespace keeps its rules with no filter behind them, so
			// nothing gets out, and the container's state says so.
			before := rn.packets(t)
			r.ok(append(fn.globals(), "delete", "-f", owner.id)...)
			if tables := nftTables(t, r.state(joiner.id).Pid); !strings.Contains(tables, "table inet clawrun") {
				t.Errorf("the rules went with their filter's container while another still runs in the namespace:\n%s", tables)
			}
			joiner.checks(
				getsNothingOut("allowed TLS, the filter gone", "tls", "allowed.test", "443", "allowed.test"),
				getsNothingOut("TLS to the allowed address, the filter gone", "tls", fn.ip(hAllowed), "443", "allowed.test"),
				getsNothingOut("UDP, the filter gone", "udp", fn.ip(hDNS), "7"),
			)
			if n := rn.packets(t) - before; n != 0 {
				t.Errorf("%d packets from the joining container reached the fake internet after the filter's container was deleted", n)
			}
			if s, want := joiner.egressState(), fmt.Sprintf(tc.gone, owner.id); !strings.HasPrefix(s, want) {
				t.Errorf("the joining container, the owner gone: state says egress %q, want %q...", s, want)
			}
		})
	}
}

// TestEgressFloorAndContainer: the effective network policy is the floor
// AND the container's: a name the container allows but the floor does
// not is denied, a name the floor allows but the container does not is
// denied, a port only one of them lists is denied, and what both allow
// works. Each is a real query and connection.
func TestEgressFloorAndContainer(t *testing.T) {
	r, fn := egressRuntime(t)
	floor := writeTemp(t, "floor.yaml", policyDoc(`  site:
    endpoints:
      - {host: allowed.test, ports: [443, 80]}
      - {host: other.test, port: 443}
`))
	b := fn.egressBundle(r, withInline(policyDoc(`  mine:
    endpoints:
      - {host: allowed.test, port: 443}
      - {host: denied.test, port: 443}
`)))
	c := fn.startAs(r, newID(t), b, append(fn.globals(), "--policy", floor)...)
	deniedName := func(name, ip, why string) []echeck {
		return []echeck{
			{name: name + " (" + why + "): not resolved",
				args:  []string{"dns", fn.ip(hDNS), name},
				out:   "ERR NXDOMAIN",
				dec:   []want{dnsWant(name, "A", "deny", "not_allowed")},
				never: []seen{queryContaining(name)}},
			{name: name + " (" + why + "): not connected",
				args:  []string{"tls", ip, "443", name},
				out:   "ERR EOF|ERR ECONNRESET",
				dec:   []want{connWant("tls", name, 443, "deny", "not_allowed")},
				never: []seen{nothing}},
		}
	}
	c.checks(
		echeck{name: "allowed.test (both): resolved",
			args: []string{"dns", fn.ip(hDNS), "allowed.test"},
			out:  "OK A:" + fn.ip(hAllowed),
			dec:  []want{dnsWant("allowed.test", "A", "allow", "allowed")},
			saw:  []seen{sawQuery("allowed.test", "A")}},
		fn.allowedTLS("allowed.test (both): connected"),
		echeck{name: "allowed.test:80 (the floor only lists it)",
			args:  []string{"http", fn.ip(hAllowed), "80", "allowed.test"},
			out:   "OK 403 clawrun: egress to allowed.test:80 denied (port)",
			dec:   []want{connWant("http", "allowed.test", 80, "deny", "port")},
			never: []seen{noConnection}},
	)
	c.checks(deniedName("other.test", fn.ip(hOther), "the floor only")...)
	c.checks(deniedName("denied.test", fn.ip(hDenied), "the container only")...)
}

// TestEgressAuditFollow: `clawrun audit --follow` prints the decisions
// logged before it started, then each decision made after, as it is made,
// until it is stopped; with --denied, only the denials.
func TestEgressAuditFollow(t *testing.T) {
	r, fn := egressRuntime(t)
	c := fn.startPolicy(r, policyDoc("  web:\n    endpoints:\n      - {host: allowed.test, port: 443}\n"))
	c.decides("", "", "before-follow.denied.test")
	follow := r.startBG(runOpts{Timeout: time.Minute}, append(fn.globals(), "audit", "--follow", c.id)...)
	denied := r.startBG(runOpts{Timeout: time.Minute}, append(fn.globals(), "audit", "--follow", "--denied", c.id)...)
	for _, p := range []*proc{follow, denied} {
		waitFor(t, 10*time.Second, "audit --follow to print the decision logged before it started", func() bool {
			return strings.Contains(p.stdout(), "before-follow.denied.test")
		})
	}
	c.decides("", "", "after-follow.denied.test")
	c.check(fn.allowedTLS("an allowed connection after audit started"))
	for _, w := range []struct {
		p                       *proc
		decision, proto, target string
	}{
		{follow, "deny", "dns", "after-follow.denied.test"},
		{follow, "allow", "tls", "allowed.test:443"},
		{denied, "deny", "dns", "after-follow.denied.test"},
	} {
		waitFor(t, 10*time.Second, "audit --follow to print "+w.decision+" "+w.target, func() bool {
			return auditShows(w.p.stdout(), w.decision, w.proto, w.target)
		})
	}
	if out := denied.stdout(); auditShows(out, "allow", "tls", "allowed.test:443") {
		t.Errorf("audit --follow --denied printed an allowed decision:\n%s", out)
	}
}

// auditShows says whether clawrun audit's text output has a line for a
// decision on target (host:port, or the name of a query).
func auditShows(out, decision, proto, target string) bool {
	for line := range strings.SplitSeq(out, "\n") {
		if f := strings.Fields(line); len(f) > 3 && f[1] == decision && f[2] == proto && f[3] == target {
			return true
		}
	}
	return false
}

// TestEgressBinariesInjection: what `binaries` relies on, closed by
// clawrun: the agent cannot inject into an allowed executable that already
// runs (ptrace, process_vm_writev, pidfd_getfd refused by the agent
// seccomp profile; /proc/PID/mem not writable under Landlock with /proc
// read-only). The control is the same container without a policy, where
// each of these succeeds.
func TestEgressBinariesInjection(t *testing.T) {
	r, fn := egressRuntime(t)
	doc := `version: 1
filesystem_policy:
  read_only: [/bin, /usr, /lib, /etc, /proc]
  read_write: [/tmp, /dev/null]
network_policies:
  tools:
    endpoints:
      - {host: allowed.test, port: 443}
    binaries:
      - {path: /usr/bin/allowed-client}
`
	// The allowed executable, running; $p is its pid.
	const target = `p=$(pidof allowed-client); `
	checks := []pcheck{
		{name: "ptrace", cmd: target + "probe ptrace $p", policy: "ERR EPERM ptrace", base: "OK"},
		{name: "process_vm_writev", cmd: "probe vm-write", policy: "ERR EPERM process_vm_writev", base: "OK injected"},
		{name: "pidfd_getfd", cmd: "probe pidfd-getfd", policy: "ERR EPERM pidfd_getfd", base: "OK"},
		{name: "/proc/PID/mem", cmd: target + "probe mem-write $p", policy: "ERR EACCES open", base: "OK"},
	}
	for _, tc := range []struct {
		name  string
		edits []func(*specs.Spec)
		want  func(pcheck) string
	}{
		{"without a policy (the control)", nil, wantBase},
		{"under the policy", []func(*specs.Spec){withInline(doc)}, wantPolicy},
	} {
		c := fn.startClients(r, tc.edits...)
		r.ok(append(fn.globals(), "exec", "-d", c.id, "allowed-client", "fd-hold", "/tmp/holder.sock", "300")...)
		waitFor(t, 10*time.Second, "the allowed executable to run", func() bool {
			return strings.TrimSpace(r.run(append(fn.globals(), "exec", c.id, "pidof", "allowed-client")...).Stdout) != ""
		})
		res := r.ok(append(fn.globals(), "exec", c.id, "sh", "-c", checkScript(checks))...)
		verifyChecks(t, tc.name, res.Stdout, checks, tc.want)
	}
}
