package integration

// The egress tests' own "internet": a network namespace linked to the host
// by a veth pair, with an authoritative DNS server, TLS, HTTP, TCP and UDP
// servers inside it that record everything they receive. It is made once
// per test binary (the first egress test that needs it) and torn down by
// TestMain; a namespace left by a run that died is removed by the next.
//
// Every address is in 198.18.0.0/15 (benchmarking, RFC 2544) and, for
// IPv6, in fd00:c1a0::/64. Nothing here sends traffic anywhere else: the
// DNS zone hands out 169.254.169.254 and 10.0.0.1 only as data, which the
// filter must never dial.

import (
	"bufio"
	"cmp"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	goruntime "runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/miekg/dns"
	"github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/clawrun/clawrun/test/netblock"
)

// TestMain tears the fake internet down after the tests that used it.
func TestMain(m *testing.M) {
	code := m.Run()
	if fake.net != nil {
		if err := fake.net.close(); err != nil {
			fmt.Fprintln(os.Stderr, "egress tests: teardown:", err)
			if code == 0 {
				code = 1
			}
		}
	}
	os.Exit(code)
}

// Host numbers in the fake internet's link /24 (198.18.N.0/24).
const (
	hHost    = 1  // the host's end of the veth
	hDNS     = 2  // the namespace's end: the DNS server
	hAllowed = 3  // allowed.test, rebind.test (first answer)
	hDenied  = 4  // denied.test
	hOther   = 5  // other.test
	hSvc     = 6  // svc.test, a server that speaks first (protocol: tcp)
	hWild    = 7  // *.wild.test
	hFinal   = 8  // final.test, the end of alias.test's CNAME chain
	hAudit   = 9  // audit.test
	hUnused  = 99 // no one: a "resolver" that does not exist
	hSecond  = 10 // inside.test, in the second /24 (198.18.N+1.0/24)
)

// Ports of the fake internet's servers.
const (
	portTLS    = 443
	portHTTP   = 80
	portSSH    = 22   // a banner, to prove a denied port was never dialled
	portBanner = 2222 // svc.test: the server speaks first
	portAlt    = 8080 // HTTP too, a port no policy allows
	portAlt2   = 2223 // a banner too, a port no policy allows
	portLax    = 8081 // a lenient HTTP server (see handleLax)
	portEcho   = 7    // UDP echo
	portMarker = 9    // flush's marker: answered, never recorded
	portDNS2   = 5353 // a second resolver (the same zone), for upstream_dns
)

// netEvent is one thing a server of the fake internet received.
type netEvent struct {
	Seq    int
	Kind   string // dns, accept (a TCP connection), tls (a handshake), tls-fail, http, udp
	Net    string // tcp or udp (dns)
	Local  string // the address it reached (ip:port)
	Remote string // where it came from
	Name   string // DNS query name as received, TLS SNI, HTTP Host
	QType  string // DNS
	Path   string // HTTP
	Data   string // UDP payload, TLS error, HTTP method
}

func (e netEvent) String() string {
	s := fmt.Sprintf("#%d %s %s->%s", e.Seq, e.Kind, e.Remote, e.Local)
	if e.Name != "" {
		s += " name=" + e.Name
	}
	if e.QType != "" {
		s += " type=" + e.QType + "/" + e.Net
	}
	if e.Path != "" {
		s += " path=" + e.Path
	}
	if e.Data != "" {
		s += " data=" + strconv.Quote(e.Data)
	}
	return s
}

// localIP is the address part of Local (IPv4-mapped addresses unmapped).
func (e netEvent) localIP() string { return hostOf(e.Local) }

func (e netEvent) localPort() int {
	ap, err := netip.ParseAddrPort(e.Local)
	if err != nil {
		return 0
	}
	return int(ap.Port())
}

func hostOf(addr string) string {
	ap, err := netip.ParseAddrPort(addr)
	if err != nil {
		h, _, _ := net.SplitHostPort(addr)
		return h
	}
	return ap.Addr().Unmap().String()
}

// fakeNet is the fake internet.
type fakeNet struct {
	ns      string // named network namespace (ip netns)
	hostIf  string // the host's veth
	nsIf    string // its peer in ns
	oct     int    // 198.18.oct.0/24: the link; oct+1: a second range; oct+2: a routed container link
	dir     string // config, logs
	config  string // the runtime's --config file
	logDir  string // egress.log_dir
	caPEM   []byte
	ca      *x509.Certificate
	caKey   *ecdsa.PrivateKey
	certMu  sync.Mutex
	certs   map[string]*tls.Certificate
	mu      sync.Mutex
	events  []netEvent
	rebinds int
	stop    []func()
	probeMu sync.Mutex
	probeOn string          // the probe binary on the host, for positive controls
	served  map[string]bool // "tcp/PORT", "udp/PORT": the servers' sockets, which flush drains
}

var fake struct {
	once sync.Once
	net  *fakeNet
	err  error
}

// egressRuntime is policyRuntime plus the fake internet.
func egressRuntime(t *testing.T) (*rtest, *fakeNet) {
	t.Helper()
	r := policyRuntime(t)
	for _, tool := range []string{"ip", "nft", "nsenter"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("egress tests need %s (make deps installs it): %v", tool, err)
		}
	}
	fake.once.Do(func() { fake.net, fake.err = startFakeNet() })
	if fake.err != nil {
		t.Fatalf("setting up the fake internet: %v", fake.err)
	}
	return r, fake.net
}

// ip is 198.18.oct.host.
func (fn *fakeNet) ip(host int) string { return fmt.Sprintf("198.18.%d.%d", fn.oct, host) }

// ip2 is an address of the second /24, which is not in the runtime's
// allowed_upstream_ranges.
func (fn *fakeNet) ip2(host int) string { return fmt.Sprintf("198.18.%d.%d", fn.oct+1, host) }

func (fn *fakeNet) range2() string { return fmt.Sprintf("198.18.%d.0/24", fn.oct+1) }

// ip6 is an address of the link's IPv6 /112 inside fd00:c1a0::/64.
func (fn *fakeNet) ip6(host int) string { return v6addr(fn.oct, host) }

// v6addr is fd00:c1a0::OCT:HOST (hex), in canonical form, as programs
// print it.
func v6addr(oct, host int) string {
	return netip.MustParseAddr(fmt.Sprintf("fd00:c1a0::%x:%x", oct, host)).String()
}

// egressYAML is the runtime config's egress section for the fake
// internet: its resolver, its link's ranges (and extra ranges) in
// allowed_upstream_ranges, the tests' log dir.
func (fn *fakeNet) egressYAML(extraRanges ...string) string {
	ranges := append([]string{fmt.Sprintf("198.18.%d.0/24", fn.oct), v6addr(fn.oct, 0) + "/112"}, extraRanges...)
	quoted := make([]string, len(ranges))
	for i, r := range ranges {
		quoted[i] = strconv.Quote(r)
	}
	return fmt.Sprintf("egress:\n  upstream_dns: [%q]\n  allowed_upstream_ranges: [%s]\n  log_dir: %s\n",
		fn.ip(hDNS)+":53", strings.Join(quoted, ", "), fn.logDir)
}

// configFile writes a runtime config of body and the fake internet's
// egress section (with extra allowed ranges), and returns its path.
func (fn *fakeNet) configFile(t *testing.T, body string, extraRanges ...string) string {
	t.Helper()
	return writeTemp(t, "config.yaml", body+fn.egressYAML(extraRanges...))
}

// globals are the runtime's global flags for the egress tests.
func (fn *fakeNet) globals() []string { return []string{"--config", fn.config} }

// runCmd runs a command with a bounded time.
func runCmd(timeout time.Duration, name string, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	out, err := exec.CommandContext(ctx, name, args...).CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("%s %s: %v: %s", name, strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return string(out), nil
}

func runAll(cmds [][]string) error {
	for _, c := range cmds {
		if _, err := runCmd(10*time.Second, c[0], c[1:]...); err != nil {
			return err
		}
	}
	return nil
}

// removeStaleFakeNets deletes namespaces of earlier runs whose process is
// gone (a run killed by a timeout never reaches TestMain's teardown).
func removeStaleFakeNets() {
	ents, _ := os.ReadDir("/run/netns")
	for _, e := range ents {
		for _, prefix := range []string{"clawrun-fakenet-", "clawrun-cnet-"} {
			rest, ok := strings.CutPrefix(e.Name(), prefix)
			if !ok {
				continue
			}
			pidStr, _, _ := strings.Cut(rest, "-")
			pid, err := strconv.Atoi(pidStr)
			if err != nil || pid == os.Getpid() || unix.Kill(pid, 0) == nil {
				continue
			}
			_, _ = runCmd(10*time.Second, "ip", "netns", "del", e.Name())
		}
	}
}

func startFakeNet() (_ *fakeNet, err error) {
	removeStaleFakeNets()
	// 198.18.N.0/24 to 198.18.N+2.0/24, not used on the host (another
	// run, the demo, someone's experiment), held until they are ours.
	unlock, err := netblock.Lock()
	if err != nil {
		return nil, err
	}
	defer func() {
		if unlock != nil {
			unlock()
		}
	}()
	oct, err := netblock.Pick("198.18", 0, 20, 3, 256)
	if err != nil {
		return nil, err
	}
	pid := os.Getpid()
	fn := &fakeNet{
		ns:     fmt.Sprintf("clawrun-fakenet-%d", pid),
		hostIf: fmt.Sprintf("cfn%dh", pid%10000000),
		nsIf:   fmt.Sprintf("cfn%dn", pid%10000000),
		oct:    oct,
		certs:  map[string]*tls.Certificate{},
	}
	defer func() {
		if err != nil {
			_ = fn.close()
		}
	}()
	if fn.dir, err = os.MkdirTemp("", "clawrun-egress-"); err != nil {
		return nil, err
	}
	fn.logDir = filepath.Join(fn.dir, "logs")
	if err := os.MkdirAll(fn.logDir, 0o700); err != nil {
		return nil, err
	}
	if err := fn.makeCA(); err != nil {
		return nil, err
	}
	nsip := func(args ...string) []string { return append([]string{"ip", "-n", fn.ns}, args...) }
	cmds := [][]string{
		{"ip", "netns", "add", fn.ns},
		{"ip", "link", "add", fn.hostIf, "type", "veth", "peer", "name", fn.nsIf, "netns", fn.ns},
		{"ip", "addr", "add", fn.ip(hHost) + "/24", "dev", fn.hostIf},
		{"ip", "-6", "addr", "add", fn.ip6(hHost) + "/112", "dev", fn.hostIf, "nodad"},
		{"ip", "link", "set", fn.hostIf, "up"},
		nsip("link", "set", "lo", "up"),
		nsip("addr", "add", fn.ip(hDNS)+"/24", "dev", fn.nsIf),
		nsip("-6", "addr", "add", fn.ip6(hDNS)+"/112", "dev", fn.nsIf, "nodad"),
		nsip("link", "set", fn.nsIf, "up"),
		nsip("addr", "add", fn.ip2(hSecond)+"/32", "dev", "lo"),
	}
	for _, h := range []int{hAllowed, hDenied, hOther, hSvc, hWild, hFinal, hAudit} {
		cmds = append(cmds, nsip("addr", "add", fn.ip(h)+"/32", "dev", fn.nsIf))
	}
	// The second range is reached through the namespace.
	cmds = append(cmds, []string{"ip", "route", "add", fn.range2(), "via", fn.ip(hDNS), "dev", fn.hostIf})
	if err := runAll(cmds); err != nil {
		return nil, err
	}
	unlock()
	unlock = nil
	if err := fn.startServers(); err != nil {
		return nil, err
	}
	if err := fn.countFromHost(); err != nil {
		return nil, err
	}
	fn.config = filepath.Join(fn.dir, "config.yaml")
	if err := os.WriteFile(fn.config, []byte(fn.egressYAML()), 0o600); err != nil {
		return nil, err
	}
	// The veth and the DNS server must answer before any test relies on them.
	deadline := time.Now().Add(10 * time.Second)
	for {
		c := dns.Client{Net: "udp", Timeout: 500 * time.Millisecond}
		m := new(dns.Msg)
		m.SetQuestion("ns.test.", dns.TypeA)
		if _, _, err := c.Exchange(m, fn.ip(hDNS)+":53"); err == nil {
			break
		} else if time.Now().After(deadline) {
			return nil, fmt.Errorf("the fake DNS server does not answer: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	fn.mu.Lock()
	fn.events = nil // the readiness query
	fn.mu.Unlock()
	return fn, nil
}

// close stops the servers and removes the namespace, the veth pair (it
// goes with the namespace) and the temp dir.
func (fn *fakeNet) close() error {
	for i := len(fn.stop) - 1; i >= 0; i-- {
		fn.stop[i]()
	}
	var errs []error
	if _, err := os.Stat("/run/netns/" + fn.ns); err == nil {
		if _, err := runCmd(10*time.Second, "ip", "netns", "del", fn.ns); err != nil {
			errs = append(errs, err)
		}
	}
	// The veth pair goes with the namespace (asynchronously), and the
	// route with the veth.
	deadline := time.Now().Add(5 * time.Second)
	for {
		if _, err := net.InterfaceByName(fn.hostIf); err != nil {
			break
		}
		if time.Now().After(deadline) {
			if _, err := runCmd(10*time.Second, "ip", "link", "del", fn.hostIf); err != nil {
				errs = append(errs, err)
			}
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if fn.dir != "" {
		errs = append(errs, os.RemoveAll(fn.dir))
	}
	return errors.Join(errs...)
}

// inNS runs fn on a thread switched into the named namespace ns, so that
// the sockets it creates live there.
func (fn *fakeNet) inNS(ns string, f func() error) error {
	return inNetns("/run/netns/"+ns, f)
}

// inNetns runs f on a thread switched into the network namespace at path.
func inNetns(path string, f func() error) error {
	target, err := os.Open(path)
	if err != nil {
		return err
	}
	defer target.Close()
	goruntime.LockOSThread()
	self, err := os.Open(fmt.Sprintf("/proc/self/task/%d/ns/net", unix.Gettid()))
	if err != nil {
		goruntime.UnlockOSThread()
		return err
	}
	defer self.Close()
	if err := unix.Setns(int(target.Fd()), unix.CLONE_NEWNET); err != nil {
		goruntime.UnlockOSThread()
		return err
	}
	ferr := f()
	if err := unix.Setns(int(self.Fd()), unix.CLONE_NEWNET); err != nil {
		// Leave the thread locked: the Go runtime then discards it.
		return errors.Join(ferr, err)
	}
	goruntime.UnlockOSThread()
	return ferr
}

// --- recording ---

func (fn *fakeNet) record(e netEvent) {
	fn.mu.Lock()
	defer fn.mu.Unlock()
	e.Seq = len(fn.events)
	fn.events = append(fn.events, e)
}

// mark is the number of events so far: since(mark) is what came after.
func (fn *fakeNet) mark() int {
	fn.mu.Lock()
	defer fn.mu.Unlock()
	return len(fn.events)
}

func (fn *fakeNet) since(mark int) []netEvent {
	fn.mu.Lock()
	defer fn.mu.Unlock()
	return slices.Clone(fn.events[min(mark, len(fn.events)):])
}

func (fn *fakeNet) dump(mark int) string {
	var b strings.Builder
	for _, e := range fn.since(mark) {
		b.WriteString("\n  " + e.String())
	}
	if b.Len() == 0 {
		return " (nothing)"
	}
	return b.String()
}

// waitSaw waits until an event since mark matches and returns it.
func (fn *fakeNet) waitSaw(t *testing.T, mark int, what string, match func(netEvent) bool) netEvent {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		for _, e := range fn.since(mark) {
			if match(e) {
				return e
			}
		}
		if time.Now().After(deadline) {
			t.Errorf("the fake internet never saw %s; it saw:%s", what, fn.dump(mark))
			return netEvent{}
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// --- synchronisation: what was sent has arrived ---

// serveMarkers answers every connection with a line and records nothing:
// flush's marker.
func serveMarkers(l net.Listener) {
	for {
		c, err := l.Accept()
		if err != nil {
			return
		}
		go func() {
			defer c.Close()
			_, _ = io.WriteString(c, "ok\n")
		}()
	}
}

// flush returns once what was sent to the fake internet before it has
// been received and taken by its servers, so that a check that something
// never arrived is not made while it is still on its way. A marker
// connection from the host crosses the link after it (the link delivers
// in order), and then no server has a connection waiting to be accepted or
// a datagram waiting to be read.
func (fn *fakeNet) flush(t *testing.T) {
	t.Helper()
	c, err := net.DialTimeout("tcp", net.JoinHostPort(fn.ip(hDNS), strconv.Itoa(portMarker)), 5*time.Second)
	if err != nil {
		t.Fatalf("flush: the marker connection: %v", err)
	}
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	line, err := bufio.NewReader(c).ReadString('\n')
	c.Close()
	if err != nil || line != "ok\n" {
		t.Fatalf("flush: the marker's answer: %q %v", line, err)
	}
	var waiting []string
	deadline := time.Now().Add(5 * time.Second)
	for {
		if waiting, err = fn.queued(); err == nil && len(waiting) == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("flush: the fake internet's servers still have %v waiting (%v)", waiting, err)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// queued lists the servers' sockets that hold something not yet taken:
// a listener's accept queue, a UDP socket's receive queue.
func (fn *fakeNet) queued() ([]string, error) {
	var out []string
	err := fn.inNS(fn.ns, func() error {
		for _, table := range []string{"tcp", "tcp6", "udp", "udp6"} {
			data, err := os.ReadFile("/proc/thread-self/net/" + table)
			if err != nil {
				return err
			}
			proto := strings.TrimSuffix(table, "6")
			for _, line := range strings.Split(string(data), "\n")[1:] {
				f := strings.Fields(line)
				if len(f) < 5 || (proto == "tcp" && f[3] != "0A") {
					continue // only listeners hold connections not yet accepted
				}
				_, portHex, _ := strings.Cut(f[1], ":")
				port, _ := strconv.ParseUint(portHex, 16, 16)
				_, rxHex, _ := strings.Cut(f[4], ":")
				if rx, _ := strconv.ParseUint(rxHex, 16, 64); rx > 0 && fn.served[proto+"/"+strconv.FormatUint(port, 10)] {
					out = append(out, fmt.Sprintf("%s %s (%d)", table, f[1], rx))
				}
			}
		}
		return nil
	})
	return out, err
}

// countFromHost counts, in the fake internet, every TCP connection
// attempt (a SYN: counter syns) and UDP datagram (datagrams) from the host's side
// of the link, where the filter's traffic comes from, but the markers.
func (fn *fakeNet) countFromHost() error {
	rules := fmt.Sprintf(`table inet fwatch {
	counter syns {}
	counter datagrams {}
	chain in {
		type filter hook prerouting priority -300; policy accept;
		iifname %q tcp dport != %d tcp flags & (syn | ack) == syn counter name syns
		iifname %q meta l4proto udp counter name datagrams
	}
}
`, fn.nsIf, portMarker, fn.nsIf)
	f := filepath.Join(fn.dir, "fwatch.nft")
	if err := os.WriteFile(f, []byte(rules), 0o600); err != nil {
		return err
	}
	_, err := runCmd(10*time.Second, "ip", "netns", "exec", fn.ns, "nft", "-f", f)
	return err
}

// fromHost reads countFromHost's counters.
func (fn *fakeNet) fromHost(t *testing.T, counters ...string) []int {
	t.Helper()
	var out []int
	for _, name := range counters {
		out = append(out, nftCounter(t, fn.ns, "fwatch", name))
	}
	return out
}

// Event matchers.

func anyEvent(netEvent) bool { return true }

// dnsQuery matches a query for name (case-insensitively, with or without
// the trailing dot).
func dnsQuery(name string) func(netEvent) bool {
	return func(e netEvent) bool {
		return e.Kind == "dns" && strings.EqualFold(strings.TrimSuffix(e.Name, "."), strings.TrimSuffix(name, "."))
	}
}

// dnsContains matches a query whose name contains s (case-insensitively).
func dnsContains(s string) func(netEvent) bool {
	return func(e netEvent) bool {
		return e.Kind == "dns" && strings.Contains(strings.ToLower(e.Name), strings.ToLower(s))
	}
}

func isKind(kind string) func(netEvent) bool {
	return func(e netEvent) bool { return e.Kind == kind }
}

// --- servers ---

func (fn *fakeNet) startServers() error {
	type tcpServer struct {
		port  int
		serve func(net.Listener)
	}
	httpSrv := &http.Server{Handler: http.HandlerFunc(fn.serveHTTP), ReadHeaderTimeout: 10 * time.Second}
	tcps := []tcpServer{
		{portTLS, func(l net.Listener) { fn.acceptLoop(l, fn.handleTLS) }},
		{portHTTP, func(l net.Listener) { _ = httpSrv.Serve(recordingListener{l, fn}) }},
		{portBanner, func(l net.Listener) { fn.acceptLoop(l, fn.handleBanner("BANNER")) }},
		{portSSH, func(l net.Listener) { fn.acceptLoop(l, fn.handleBanner("SSH-2.0-fake")) }},
		{portAlt, func(l net.Listener) { _ = httpSrv.Serve(recordingListener{l, fn}) }},
		{portAlt2, func(l net.Listener) { fn.acceptLoop(l, fn.handleBanner("BANNER2")) }},
		{portLax, func(l net.Listener) { fn.acceptLoop(l, fn.handleLax) }},
		{portMarker, serveMarkers},
	}
	var listeners []net.Listener
	var packets []net.PacketConn
	dnsMux := dns.HandlerFunc(fn.serveDNS)
	var dnsServers []*dns.Server
	err := fn.inNS(fn.ns, func() error {
		for _, s := range tcps {
			l, err := net.Listen("tcp", ":"+strconv.Itoa(s.port))
			if err != nil {
				return err
			}
			listeners = append(listeners, l)
		}
		// One UDP socket per address, so that replies leave from the
		// address the datagram was sent to.
		addrs := []string{fn.ip6(hDNS), fn.ip2(hSecond)}
		for _, h := range []int{hDNS, hAllowed, hDenied, hOther, hSvc, hWild, hFinal, hAudit} {
			addrs = append(addrs, fn.ip(h))
		}
		for _, port := range []int{portEcho, portTLS} {
			for _, a := range addrs {
				c, err := net.ListenPacket("udp", net.JoinHostPort(a, strconv.Itoa(port)))
				if err != nil {
					return err
				}
				packets = append(packets, c)
			}
		}
		for _, port := range []string{"53", strconv.Itoa(portDNS2)} {
			u, err := net.ListenPacket("udp", ":"+port)
			if err != nil {
				return err
			}
			tl, err := net.Listen("tcp", ":"+port)
			if err != nil {
				u.Close()
				return err
			}
			dnsServers = append(dnsServers, &dns.Server{PacketConn: u, Handler: dnsMux}, &dns.Server{Listener: tl, Handler: dnsMux})
		}
		return nil
	})
	fn.served = map[string]bool{}
	for _, s := range tcps {
		fn.served["tcp/"+strconv.Itoa(s.port)] = true
	}
	for _, port := range []int{portEcho, portTLS, 53, portDNS2} {
		fn.served["udp/"+strconv.Itoa(port)] = true
	}
	fn.served["tcp/53"], fn.served["tcp/"+strconv.Itoa(portDNS2)] = true, true
	closeAll := func() {
		for _, l := range listeners {
			l.Close()
		}
		for _, p := range packets {
			p.Close()
		}
		for _, s := range dnsServers {
			_ = s.Shutdown()
		}
	}
	if err != nil {
		closeAll()
		return err
	}
	fn.stop = append(fn.stop, func() {
		closeAll()
		_ = httpSrv.Close()
	})
	for i, s := range tcps {
		go s.serve(listeners[i])
	}
	for _, p := range packets {
		go fn.serveUDP(p)
	}
	for _, s := range dnsServers {
		go func() { _ = s.ActivateAndServe() }()
	}
	return nil
}

// recordingListener records every accepted connection.
type recordingListener struct {
	net.Listener
	fn *fakeNet
}

func (l recordingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err == nil {
		l.fn.record(netEvent{Kind: "accept", Local: c.LocalAddr().String(), Remote: c.RemoteAddr().String()})
	}
	return c, err
}

func (fn *fakeNet) acceptLoop(l net.Listener, handle func(net.Conn)) {
	for {
		c, err := l.Accept()
		if err != nil {
			return
		}
		fn.record(netEvent{Kind: "accept", Local: c.LocalAddr().String(), Remote: c.RemoteAddr().String()})
		go func() {
			defer c.Close()
			_ = c.SetDeadline(time.Now().Add(2 * time.Minute))
			handle(c)
		}()
	}
}

// handleTLS completes a handshake with a certificate for the SNI, records
// it, greets with what it saw and reads until the client is done.
func (fn *fakeNet) handleTLS(c net.Conn) {
	tc := tls.Server(c, &tls.Config{
		MinVersion:     tls.VersionTLS12,
		GetCertificate: func(h *tls.ClientHelloInfo) (*tls.Certificate, error) { return fn.cert(h.ServerName) },
	})
	if err := tc.Handshake(); err != nil {
		fn.record(netEvent{Kind: "tls-fail", Local: c.LocalAddr().String(), Remote: c.RemoteAddr().String(), Data: err.Error()})
		return
	}
	sni := tc.ConnectionState().ServerName
	fn.record(netEvent{Kind: "tls", Local: c.LocalAddr().String(), Remote: c.RemoteAddr().String(), Name: sni})
	fmt.Fprintf(tc, "hello sni=%s local=%s\n", sni, hostOf(c.LocalAddr().String()))
	_, _ = io.Copy(io.Discard, tc)
}

func (fn *fakeNet) handleBanner(banner string) func(net.Conn) {
	return func(c net.Conn) {
		fmt.Fprintf(c, "%s %s\n", banner, hostOf(c.LocalAddr().String()))
		_, _ = io.Copy(c, c)
	}
}

func (fn *fakeNet) serveHTTP(w http.ResponseWriter, req *http.Request) {
	local := ""
	if a, ok := req.Context().Value(http.LocalAddrContextKey).(net.Addr); ok {
		local = a.String()
	}
	fn.record(netEvent{Kind: "http", Local: local, Remote: req.RemoteAddr, Name: req.Host, Path: req.URL.RequestURI(), Data: req.Method})
	if req.URL.Path == "/ws" && strings.EqualFold(req.Header.Get("Upgrade"), "websocket") {
		fn.echoUpgraded(w)
		return
	}
	fmt.Fprintf(w, "host=%s local=%s path=%s\n", req.Host, hostOf(local), req.URL.RequestURI())
}

// echoUpgraded accepts a websocket upgrade (101) and echoes what follows.
func (fn *fakeNet) echoUpgraded(w http.ResponseWriter) {
	c, brw, err := w.(http.Hijacker).Hijack()
	if err != nil {
		return
	}
	defer c.Close()
	_, _ = io.WriteString(c, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n")
	_, _ = io.Copy(c, brw)
}

// handleLax is a keep-alive HTTP/1.1 server as lenient as the servers
// request smuggling relies on: it takes bare LF line ends, joins folded
// lines, reads '_' as '-' in field names, keeps the last of repeated
// fields, prefers Transfer-Encoding to Content-Length, and ignores the
// body of a GET, HEAD or DELETE (which it then reads as the next
// request). It records every request it reads.
func (fn *fakeNet) handleLax(c net.Conn) {
	br := bufio.NewReader(c)
	line := func() (string, bool) {
		l, err := br.ReadString('\n')
		return strings.TrimRight(l, "\r\n"), err == nil
	}
	for {
		first, ok := line()
		if !ok {
			return
		}
		f := strings.Fields(first)
		if len(f) < 2 {
			continue
		}
		hdr := map[string]string{}
		last := ""
		for {
			l, ok := line()
			if !ok {
				return
			}
			if l == "" {
				break
			}
			if (l[0] == ' ' || l[0] == '\t') && last != "" {
				hdr[last] += " " + strings.TrimSpace(l)
				continue
			}
			if k, v, ok := strings.Cut(l, ":"); ok {
				last = strings.ReplaceAll(strings.ToLower(strings.TrimSpace(k)), "_", "-")
				hdr[last] = strings.TrimSpace(v)
			}
		}
		fn.record(netEvent{Kind: "http", Local: c.LocalAddr().String(), Remote: c.RemoteAddr().String(), Name: hdr["host"], Path: f[1], Data: f[0]})
		switch {
		case strings.Contains(strings.ToLower(hdr["transfer-encoding"]), "chunked"):
			for {
				size, ok := line()
				if !ok {
					return
				}
				size, _, _ = strings.Cut(size, ";")
				n, _ := strconv.ParseInt(strings.TrimSpace(size), 16, 64)
				if n == 0 {
					for l, ok := line(); ok && l != ""; l, ok = line() {
					}
					break
				}
				_, _ = io.CopyN(io.Discard, br, n+2)
			}
		case f[0] == "GET" || f[0] == "HEAD" || f[0] == "DELETE":
		default:
			n, _ := strconv.ParseInt(hdr["content-length"], 10, 64)
			_, _ = io.CopyN(io.Discard, br, n)
		}
		body := fmt.Sprintf("lax %s %s\n", f[0], f[1])
		fmt.Fprintf(c, "HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s", len(body), body)
	}
}

func (fn *fakeNet) serveUDP(c net.PacketConn) {
	buf := make([]byte, 2048)
	for {
		n, from, err := c.ReadFrom(buf)
		if err != nil {
			return
		}
		fn.record(netEvent{Kind: "udp", Local: c.LocalAddr().String(), Remote: from.String(), Data: string(buf[:n])})
		_, _ = c.WriteTo(buf[:n], from)
	}
}

// --- DNS ---

const zoneTTL = 3600 // longer than the filter's cap (60 s)

// zoneAddrs are the zone's address records (lower-case names).
func (fn *fakeNet) zoneAddrs(name string, qtype uint16) ([]string, bool) {
	a := map[string]string{
		"ns.test":      fn.ip(hDNS),
		"allowed.test": fn.ip(hAllowed),
		"denied.test":  fn.ip(hDenied),
		"other.test":   fn.ip(hOther),
		"svc.test":     fn.ip(hSvc),
		"final.test":   fn.ip(hFinal),
		"audit.test":   fn.ip(hAudit),
		"meta.test":    "169.254.169.254",
		"private.test": "10.0.0.1",
		"loop.test":    "127.0.0.1",
		"inside.test":  fn.ip2(hSecond),
		"inside2.test": fn.ip2(hSecond),
		"wild.test":    fn.ip(hWild),
		"rebind.test":  "", // see below
		"v6.test":      "",
	}
	aaaa := map[string]string{
		"v6.test": fn.ip6(hDNS),
	}
	switch {
	case strings.HasSuffix(name, ".wild.test"):
		name = "wild.test"
	case strings.HasSuffix(name, ".denied.test"):
		name = "denied.test" // exfiltration labels: must never be asked
	}
	v4, ok := a[name]
	if !ok {
		return nil, false
	}
	switch qtype {
	case dns.TypeA:
		if name == "rebind.test" {
			// The first answer is an allowed host, every later one the
			// loopback: a name rebinding under the client's feet.
			fn.mu.Lock()
			fn.rebinds++
			first := fn.rebinds == 1
			fn.mu.Unlock()
			if first {
				return []string{fn.ip(hAllowed)}, true
			}
			return []string{"127.0.0.1"}, true
		}
		if v4 != "" {
			return []string{v4}, true
		}
	case dns.TypeAAAA:
		if v6, ok := aaaa[name]; ok {
			return []string{v6}, true
		}
	}
	return nil, true
}

// resetRebind makes rebind.test answer its allowed address once more.
func (fn *fakeNet) resetRebind() {
	fn.mu.Lock()
	fn.rebinds = 0
	fn.mu.Unlock()
}

// cnames is alias.test's chain: alias.test -> mid.test -> final.test.
var cnames = map[string]string{"alias.test": "mid.test", "mid.test": "final.test"}

func (fn *fakeNet) serveDNS(w dns.ResponseWriter, req *dns.Msg) {
	if len(req.Question) != 1 {
		return
	}
	q := req.Question[0]
	network := "udp"
	if _, ok := w.LocalAddr().(*net.TCPAddr); ok {
		network = "tcp"
	}
	fn.record(netEvent{Kind: "dns", Net: network, Local: w.LocalAddr().String(), Remote: w.RemoteAddr().String(),
		Name: q.Name, QType: dns.TypeToString[q.Qtype]})
	resp := new(dns.Msg)
	resp.SetReply(req)
	resp.Authoritative = true
	owner := q.Name
	name := strings.ToLower(strings.TrimSuffix(q.Name, "."))
	for hops := 0; hops < 8; hops++ {
		target, ok := cnames[name]
		if !ok {
			break
		}
		resp.Answer = append(resp.Answer, &dns.CNAME{Hdr: dns.RR_Header{Name: owner, Rrtype: dns.TypeCNAME, Class: dns.ClassINET, Ttl: zoneTTL}, Target: target + "."})
		name, owner = target, target+"."
	}
	ttl := uint32(zoneTTL)
	if name == "rebind.test" {
		ttl = 0 // kept by no cache: the next lookup asks again
	}
	addrs, exists := fn.zoneAddrs(name, q.Qtype)
	if q.Qtype == dns.TypeTXT && exists {
		resp.Answer = append(resp.Answer, &dns.TXT{Hdr: dns.RR_Header{Name: owner, Rrtype: dns.TypeTXT, Class: dns.ClassINET, Ttl: ttl}, Txt: []string{"txt of " + name}})
	}
	for _, a := range addrs {
		hdr := dns.RR_Header{Name: owner, Rrtype: q.Qtype, Class: dns.ClassINET, Ttl: ttl}
		if q.Qtype == dns.TypeA {
			resp.Answer = append(resp.Answer, &dns.A{Hdr: hdr, A: net.ParseIP(a)})
		} else {
			resp.Answer = append(resp.Answer, &dns.AAAA{Hdr: hdr, AAAA: net.ParseIP(a)})
		}
	}
	if !exists && len(resp.Answer) == 0 {
		resp.Rcode = dns.RcodeNameError
	}
	if len(resp.Answer) == 0 {
		resp.Ns = []dns.RR{&dns.SOA{Hdr: dns.RR_Header{Name: "test.", Rrtype: dns.TypeSOA, Class: dns.ClassINET, Ttl: 60},
			Ns: "ns.test.", Mbox: "admin.test.", Serial: 1, Refresh: 60, Retry: 60, Expire: 60, Minttl: 30}}
	}
	_ = w.WriteMsg(resp)
}

// --- TLS certificates ---

func (fn *fakeNet) makeCA() error {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return err
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "clawrun egress test CA"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return err
	}
	if fn.ca, err = x509.ParseCertificate(der); err != nil {
		return err
	}
	fn.caKey = key
	fn.caPEM = pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	return nil
}

// cert returns a leaf for name (CN and SAN), made on first use; without
// SNI, a leaf named "no-sni".
func (fn *fakeNet) cert(name string) (*tls.Certificate, error) {
	if name == "" {
		name = "no-sni"
	}
	fn.certMu.Lock()
	defer fn.certMu.Unlock()
	if c, ok := fn.certs[name]; ok {
		return c, nil
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(int64(len(fn.certs) + 2)),
		Subject:      pkix.Name{CommonName: name},
		DNSNames:     []string{name},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, fn.ca, &key.PublicKey, fn.caKey)
	if err != nil {
		return nil, err
	}
	c := &tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
	fn.certs[name] = c
	return c, nil
}

// --- containers ---

// ectr is a running container with an egress policy.
type ectr struct {
	t      *testing.T
	r      *rtest
	fn     *fakeNet
	id     string
	bundle string
	log    string // its decision log
	// filteredBy is the container whose filter decides its traffic and
	// names it in the log: itself, or its pod's sandbox ("": itself).
	filteredBy string
}

// egressBundle is a probe bundle for the fake internet: its resolver and
// CA, a sleeping init, and the edits.
func (fn *fakeNet) egressBundle(r *rtest, edits ...func(*specs.Spec)) string {
	r.t.Helper()
	b := r.probeBundle(append([]func(*specs.Spec){func(s *specs.Spec) {
		s.Process.Args = []string{"sh", "-c", sleeper}
	}}, edits...)...)
	writeRootfs(r.t, b, "/etc/resolv.conf", "nameserver "+fn.ip(hDNS)+"\noptions timeout:2 attempts:1\n", 0o644)
	writeRootfs(r.t, b, "/etc/test-ca.pem", string(fn.caPEM), 0o644)
	return b
}

// start runs a bundle detached and waits until it runs.
func (fn *fakeNet) start(r *rtest, b string) *ectr {
	r.t.Helper()
	return fn.startAs(r, newID(r.t), b, fn.globals()...)
}

// startAs is start with a given container id (a pod's sandbox names its
// own) and the runtime's global flags.
func (fn *fakeNet) startAs(r *rtest, id, b string, globals ...string) *ectr {
	r.t.Helper()
	r.track(id)
	r.ok(append(slices.Clone(globals), "run", "-d", "--bundle", b, id)...)
	r.waitStatus(id, "running")
	return &ectr{t: r.t, r: r, fn: fn, id: id, bundle: b, log: filepath.Join(fn.logDir, id+".egress.jsonl")}
}

// startPolicy starts a container under an inline policy document.
func (fn *fakeNet) startPolicy(r *rtest, doc string, edits ...func(*specs.Spec)) *ectr {
	r.t.Helper()
	return fn.start(r, fn.egressBundle(r, append([]func(*specs.Spec){withInline(doc)}, edits...)...))
}

// exec runs a command in the container and returns the last line it
// printed (the probe's one line); a runtime failure fails the test.
func (c *ectr) exec(args ...string) string {
	c.t.Helper()
	res := c.r.runWith(runOpts{Timeout: 45 * time.Second}, append(append(c.fn.globals(), "exec", c.id), args...)...)
	out := strings.TrimSpace(res.Stdout)
	if out == "" {
		c.t.Fatalf("exec %v printed nothing:\n%s", args, res)
	}
	lines := strings.Split(out, "\n")
	return strings.TrimSpace(lines[len(lines)-1])
}

// probe runs the probe in the container.
func (c *ectr) probe(args ...string) string {
	c.t.Helper()
	return c.exec(append([]string{"probe"}, args...)...)
}

// expect runs the probe and checks its line against want (prefixes
// separated by "|").
func (c *ectr) expect(want string, args ...string) string {
	c.t.Helper()
	line := c.probe(args...)
	if !matches(line, want) {
		c.t.Errorf("probe %s: got %q, want %q", strings.Join(args, " "), line, want)
	}
	return line
}

// statePath is a file in the container's state dir.
func (c *ectr) statePath(name string) string { return filepath.Join(c.r.root, c.id, name) }

// --- the decision log ---

// decision is one line of <log_dir>/<id>.egress.jsonl, as documented.
type decision struct {
	Time        time.Time `json:"time"`
	Container   string    `json:"container"`
	Generation  int64     `json:"generation"`
	Protocol    string    `json:"protocol"`
	Source      string    `json:"source"`
	Destination string    `json:"destination"`
	Host        string    `json:"host"`
	Port        int       `json:"port"`
	QueryType   string    `json:"query_type"`
	ResolvedIP  string    `json:"resolved_ip"`
	Decision    string    `json:"decision"`
	Reason      string    `json:"reason"`
	Rule        string    `json:"rule"`
	Binary      string    `json:"binary"`
	BytesOut    int64     `json:"bytes_out"`
	BytesIn     int64     `json:"bytes_in"`
	DurationMS  float64   `json:"duration_ms"`
}

func (d decision) String() string {
	data, _ := json.Marshal(d)
	return string(data)
}

// decisions reads the container's decision log; every line must be one.
func (c *ectr) decisions() []decision {
	c.t.Helper()
	data, err := os.ReadFile(c.log)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		c.t.Fatal(err)
	}
	var out []decision
	sc := bufio.NewScanner(strings.NewReader(string(data)))
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if line == "" {
			continue
		}
		var d decision
		if err := json.Unmarshal([]byte(line), &d); err != nil {
			c.t.Fatalf("decision log line is not JSON: %v: %q", err, line)
		}
		owner := c.id
		if c.filteredBy != "" {
			owner = c.filteredBy
		}
		if d.Container != owner || d.Time.IsZero() || d.Decision == "" || d.Reason == "" || d.Protocol == "" {
			c.t.Errorf("decision log line lacks container, time, decision, reason or protocol: %q", line)
		}
		out = append(out, d)
	}
	return out
}

// logMark is the number of decisions so far.
func (c *ectr) logMark() int { return len(c.decisions()) }

// want describes the decision expected for a check.
type want struct {
	protocol, host, decision, reason string
	port                             int    // 0: any
	queryType                        string // dns
}

func (w want) String() string {
	return fmt.Sprintf("%s %s:%d %s %s %s", w.protocol, w.host, w.port, w.queryType, w.decision, w.reason)
}

func (w want) matches(d decision) bool {
	return d.Protocol == w.protocol && strings.EqualFold(d.Host, w.host) &&
		(w.port == 0 || d.Port == w.port) && (w.queryType == "" || d.QueryType == w.queryType)
}

// waitDecision waits for a decision on (protocol, host, port, type),
// logged since mark, with the wanted decision and reason, and returns it.
// Allowed connections are logged when they end: the wait covers that.
func (c *ectr) waitDecision(mark int, w want) decision {
	c.t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		ds := c.decisions()
		ds = ds[min(mark, len(ds)):]
		var others []string
		for _, d := range ds {
			if w.matches(d) {
				if d.Decision == w.decision && d.Reason == w.reason {
					return d
				}
				others = append(others, d.String())
			}
		}
		if time.Now().After(deadline) {
			if len(others) > 0 {
				c.t.Errorf("decision for %s: got\n  %s", w, strings.Join(others, "\n  "))
				return decision{}
			}
			var b strings.Builder
			for _, d := range ds {
				b.WriteString("\n  " + d.String())
			}
			c.t.Errorf("no decision logged for %s; since the mark:%s", w, b.String())
			return decision{}
		}
		time.Sleep(25 * time.Millisecond)
	}
}

// --- processes, namespaces, nftables ---

// filterProcs lists the egress filter processes (supervisors and workers)
// whose config is under dir.
func filterProcs(dir string) []int {
	var out []int
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		data, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
		if err != nil {
			continue
		}
		args := strings.Split(string(data), "\x00")
		if len(args) >= 3 && strings.HasPrefix(args[1], "__egress-") && strings.HasPrefix(args[2], dir) && pidAlive(pid) {
			out = append(out, pid)
		}
	}
	return out
}

// filterCgroupsLeft lists the memory cgroups left of the filter whose
// supervisor was pid: each worker has one of its own, named after its
// supervisor, next to the runtime's (v1: in it, v2: beside it), which
// goes with the filter.
func filterCgroupsLeft(t *testing.T, pid int) []string {
	t.Helper()
	own := cgroupDirOf(t, os.Getpid(), "memory")
	var left []string
	for _, dir := range []string{own, filepath.Dir(own)} {
		cg := filepath.Join(dir, "clawrun-egress-"+strconv.Itoa(pid))
		if _, err := os.Stat(cg); !os.IsNotExist(err) {
			left = append(left, fmt.Sprintf("%s (%v)", cg, err))
		}
	}
	return left
}

// netnsID identifies a network namespace: its inode, and its cookie,
// which unlike the inode is never another namespace's.
type netnsID struct{ ino, cookie uint64 }

// netnsOf is the identity of a process's network namespace.
func netnsOf(pid int) (netnsID, error) {
	return netnsAt(fmt.Sprintf("/proc/%d/ns/net", pid))
}

// netnsAt is the identity of the network namespace at path.
func netnsAt(path string) (netnsID, error) {
	var st unix.Stat_t
	if err := unix.Stat(path, &st); err != nil {
		return netnsID{}, err
	}
	id := netnsID{ino: st.Ino}
	err := inNetns(path, func() error {
		fd, err := unix.Socket(unix.AF_UNIX, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			return err
		}
		defer unix.Close(fd)
		id.cookie, err = unix.GetsockoptUint64(fd, unix.SOL_SOCKET, unix.SO_NETNS_COOKIE)
		return err
	})
	return id, err
}

// netnsHeld lists what still holds any of the namespaces: a process in
// it, an open namespace fd, a bind mount. (Namespaces that got one of
// their inodes since do not count.)
func netnsHeld(ids map[netnsID]bool) []string {
	inodes := map[uint64]bool{}
	for id := range ids {
		inodes[id.ino] = true
	}
	// One of them, at path (whose inode is ino)?
	isOne := func(ino uint64, path string) bool {
		if !inodes[ino] {
			return false
		}
		id, err := netnsAt(path)
		return err == nil && ids[id]
	}
	var held []string
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		var st unix.Stat_t
		nsPath := fmt.Sprintf("/proc/%d/ns/net", pid)
		if unix.Stat(nsPath, &st) == nil && isOne(st.Ino, nsPath) && pidAlive(pid) {
			held = append(held, fmt.Sprintf("process %d (%s) is in net:[%d]", pid, cmdlineOf(pid), st.Ino))
		}
		fds, _ := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
		for _, fd := range fds {
			fdPath := fmt.Sprintf("/proc/%d/fd/%s", pid, fd.Name())
			link, err := os.Readlink(fdPath)
			if err != nil {
				continue
			}
			if rest, ok := strings.CutPrefix(link, "net:["); ok {
				if ino, err := strconv.ParseUint(strings.TrimSuffix(rest, "]"), 10, 64); err == nil && isOne(ino, fdPath) {
					held = append(held, fmt.Sprintf("process %d (%s) holds %s as fd %s", pid, cmdlineOf(pid), link, fd.Name()))
				}
			}
		}
	}
	if data, err := os.ReadFile("/proc/self/mountinfo"); err == nil {
		for line := range strings.SplitSeq(string(data), "\n") {
			f := strings.Fields(line)
			for ino := range inodes {
				if strings.Contains(line, fmt.Sprintf("net:[%d]", ino)) && len(f) > 4 && isOne(ino, f[4]) {
					held = append(held, "mount "+line)
				}
			}
		}
	}
	return held
}

// cmdlineOf is a process's command line, for messages.
func cmdlineOf(pid int) string {
	data, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	return strings.TrimSpace(strings.ReplaceAll(string(data), "\x00", " "))
}

// nftTables lists the nftables tables of a process's network namespace.
func nftTables(t *testing.T, pid int) string {
	t.Helper()
	out, err := runCmd(10*time.Second, "nsenter", "--net=/proc/"+strconv.Itoa(pid)+"/ns/net", "nft", "list", "tables")
	if err != nil {
		t.Fatalf("nft list tables in the namespace of %d: %v", pid, err)
	}
	return out
}

// listenersIn lists the TCP and UDP sockets listening in a process's
// network namespace, as ss prints them.
func listenersIn(t *testing.T, pid int) string {
	t.Helper()
	var b strings.Builder
	for _, table := range []string{"tcp", "tcp6", "udp", "udp6"} {
		data, err := os.ReadFile(fmt.Sprintf("/proc/%d/net/%s", pid, table))
		if err != nil {
			continue
		}
		for _, line := range strings.Split(string(data), "\n")[1:] {
			f := strings.Fields(line)
			// st 0A is LISTEN; 07 (CLOSE) is how bound UDP sockets show.
			if len(f) > 3 && (f[3] == "0A" || (strings.HasPrefix(table, "udp") && f[3] == "07")) {
				b.WriteString(table + " " + f[1] + "\n")
			}
		}
	}
	return b.String()
}

// egressStatus is the filter's status file in the state dir.
type egressStatus struct {
	State      string `json:"state"`
	Supervisor int    `json:"supervisor_pid"`
	Worker     int    `json:"worker_pid"`
	Generation int64  `json:"generation"`
	Restarts   int    `json:"restarts"`
	Error      string `json:"error"`
}

func (c *ectr) status() egressStatus {
	c.t.Helper()
	var st egressStatus
	data, err := os.ReadFile(c.statePath("egress-status.json"))
	if err != nil {
		c.t.Fatalf("egress status: %v", err)
	}
	if err := json.Unmarshal(data, &st); err != nil {
		c.t.Fatalf("egress status %q: %v", data, err)
	}
	return st
}

// egressState is `state ID`'s clawrun.egress.
func (c *ectr) egressState() string {
	c.t.Helper()
	return c.r.fullState(c.id).Clawrun.Egress
}

// hostProbe is the probe binary written on the host, for checks run in a
// namespace without clawrun (positive controls).
func (fn *fakeNet) hostProbe(t *testing.T) string {
	t.Helper()
	fn.probeMu.Lock()
	defer fn.probeMu.Unlock()
	if fn.probeOn == "" {
		p := filepath.Join(fn.dir, "probe")
		if err := os.WriteFile(p, probeBinary(t), 0o755); err != nil {
			t.Fatal(err)
		}
		fn.probeOn = p
	}
	return fn.probeOn
}

// policyDoc is a policy with only network_policies (YAML, indented body).
func policyDoc(body string) string {
	return "version: 1\nnetwork_policies:\n" + body
}

// --- checks ---

// seen is something the fake internet must (or must never) receive.
type seen struct {
	what  string
	match func(netEvent) bool
}

// nothing matches every event: for checks after which the fake internet
// must have received nothing at all. Such a check also counts packets: not
// one connection attempt or datagram from the host's side (the filter's)
// may reach the fake internet, to any address or port, served or not.
var nothing = seen{"anything", anyEvent}

// noConnection: no server accepts a connection, and not one connection
// attempt from the host's side reaches the fake internet.
var noConnection = seen{"a connection", isKind("accept")}

func sawTLS(sni, ip string) seen {
	return seen{fmt.Sprintf("a TLS handshake for %q on %s", sni, ip), func(e netEvent) bool {
		return e.Kind == "tls" && e.Name == sni && e.localIP() == ip
	}}
}

func sawHTTP(host, ip string) seen {
	return seen{fmt.Sprintf("an HTTP request for %q on %s", host, ip), func(e netEvent) bool {
		return e.Kind == "http" && e.Name == host && e.localIP() == ip
	}}
}

func sawQuery(name, qtype string) seen {
	return seen{fmt.Sprintf("a DNS query %s %s", name, qtype), func(e netEvent) bool {
		return dnsQuery(name)(e) && (qtype == "" || e.QType == qtype)
	}}
}

func sawConnTo(ip string, port int) seen {
	return seen{fmt.Sprintf("a connection to %s:%d", ip, port), func(e netEvent) bool {
		return e.Kind == "accept" && e.localIP() == ip && e.localPort() == port
	}}
}

func queryContaining(s string) seen {
	return seen{fmt.Sprintf("a DNS query containing %q", s), dnsContains(s)}
}

// echeck is one probe run in a container: what it must print, the
// decisions it must log, and what the fake internet must and must never
// receive.
type echeck struct {
	name  string
	bin   string   // the executable run with args ("": the probe)
	args  []string // probe arguments
	out   string   // prefixes of the probe's line, separated by "|"
	dec   []want
	saw   []seen
	never []seen
}

// check runs ch and returns the probe's line.
func (c *ectr) check(ch echeck) string {
	c.t.Helper()
	lm, em := c.logMark(), c.fn.mark()
	var counters []string // the fake internet's counters that must not move
	for _, s := range ch.never {
		switch s.what {
		case nothing.what:
			counters = append(counters, "syns", "datagrams")
		case noConnection.what:
			counters = append(counters, "syns")
		}
	}
	before := c.fn.fromHost(c.t, counters...)
	bin := cmp.Or(ch.bin, "probe")
	line := c.exec(append([]string{bin}, ch.args...)...)
	if !matches(line, ch.out) {
		c.t.Errorf("%s: %s %s: got %q, want %q", ch.name, bin, strings.Join(ch.args, " "), line, ch.out)
	}
	for _, w := range ch.dec {
		c.waitDecision(lm, w)
	}
	for _, s := range ch.saw {
		c.fn.waitSaw(c.t, em, ch.name+": "+s.what, s.match)
	}
	if len(ch.never) > 0 {
		c.fn.flush(c.t)
	}
	for i, n := range c.fn.fromHost(c.t, counters...) {
		if n != before[i] {
			c.t.Errorf("%s: %d %s packets from the host reached the fake internet:%s", ch.name, n-before[i], counters[i], c.fn.dump(em))
		}
	}
	for _, s := range ch.never {
		var bad []string
		for _, e := range c.fn.since(em) {
			if s.match(e) {
				bad = append(bad, e.String())
			}
		}
		if len(bad) > 0 {
			c.t.Errorf("%s: the fake internet received %s, which must never get out:\n  %s", ch.name, s.what, strings.Join(bad, "\n  "))
		}
	}
	return line
}

// checks runs several checks.
func (c *ectr) checks(chs ...echeck) {
	c.t.Helper()
	for _, ch := range chs {
		c.check(ch)
	}
}

// decides shows that the container's filter decides its DNS: a query for
// allowed, sent by client (an executable of the container, "" for the
// probe; over TCP, the only way names restricted to executables resolve),
// is logged as allowed and asked upstream, whatever upstream answers; one
// for denied gets NXDOMAIN, is logged as denied and never leaves. No
// allowed name ("") checks the denied one only.
func (c *ectr) decides(allowed, client, denied string) {
	c.t.Helper()
	if allowed != "" {
		args := []string{"dns", c.fn.ip(hDNS), allowed, "A"}
		if client != "" {
			args = append(args, "tcp")
		}
		c.check(echeck{name: "an allowed name", bin: client, args: args,
			out: "OK|ERR NXDOMAIN", // the fake internet knows only its own names
			dec: []want{dnsWant(allowed, "A", "allow", "allowed")},
			saw: []seen{sawQuery(allowed, "A")}})
	}
	c.check(echeck{name: "a denied name",
		args:  []string{"dns", c.fn.ip(hDNS), denied},
		out:   "ERR NXDOMAIN",
		dec:   []want{dnsWant(denied, "A", "deny", "not_allowed")},
		never: []seen{queryContaining(denied)}})
}

// dnsWant is the decision of a DNS query.
func dnsWant(host, qtype, decision, reason string) want {
	return want{protocol: "dns", host: host, queryType: qtype, decision: decision, reason: reason}
}

// connWant is the decision of a connection.
func connWant(protocol, host string, port int, decision, reason string) want {
	return want{protocol: protocol, host: host, port: port, decision: decision, reason: reason}
}

// allowedTLS is the positive control: TLS to allowed.test (an endpoint of
// these tests' policies) reaches that host through the filter.
func (fn *fakeNet) allowedTLS(name string) echeck {
	return echeck{name: name,
		args: []string{"tls", "allowed.test", "443", "allowed.test"},
		out:  "OK cn=allowed.test verify=ok",
		dec:  []want{connWant("tls", "allowed.test", 443, "allow", "allowed")},
		saw:  []seen{sawTLS("allowed.test", fn.ip(hAllowed))}}
}

// deniedSNI: a ClientHello naming sni, sent to ip, is cut and logged as
// not allowed, and nothing reaches the fake internet.
func (fn *fakeNet) deniedSNI(name, ip, sni string) echeck {
	return echeck{name: name,
		args:  []string{"tls", ip, "443", sni},
		out:   "ERR EOF|ERR ECONNRESET",
		dec:   []want{connWant("tls", sni, 443, "deny", "not_allowed")},
		never: []seen{nothing}}
}

// getsNothingOut: the probe fails and nothing reaches the fake internet.
func getsNothingOut(name string, args ...string) echeck {
	return echeck{name: name, args: args, out: "ERR ", never: []seen{nothing}}
}
