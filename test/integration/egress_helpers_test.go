package integration

// The egress tests' own "internet" (test/fakenet): a network namespace
// linked to the host by a veth pair, with an authoritative DNS server,
// TLS, HTTP, TCP and UDP servers inside it that record everything they
// receive. It is made once per test binary (the first egress test that
// needs it) and torn down by TestMain; a namespace left by a run that died
// is removed by the next.
//
// Every address is in 198.18.0.0/15 (benchmarking, RFC 2544) and, for
// IPv6, in fd00:c1a0::/64. Nothing here sends traffic anywhere else: the
// DNS zone hands out 169.254.169.254 and 10.0.0.1 only as data, which the
// filter must never dial.

import (
	"bufio"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/miekg/dns"
	"github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/clawrun/clawrun/test/fakenet"
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

// The fake internet's blocks (/24s): its link to the host, a second
// range (not in the runtime's allowed_upstream_ranges) that the host
// reaches through it, and the link of a routed container network.
const (
	blockLink   = 0
	blockSecond = 1
	blockRouted = 2
)

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
	hSecond  = 10 // inside.test, in the second block
)

// Ports of the fake internet's servers.
const (
	portTLS    = 443
	portHTTP   = 80
	portSSH    = 22   // a banner, to prove a denied port was never dialled
	portBanner = 2222 // svc.test: the server speaks first
	portAlt    = 8080 // HTTP too, a port no policy allows
	portAlt2   = 2223 // a banner too, a port no policy allows
	portLax    = 8081 // a lenient HTTP server (fakenet's ServeLaxHTTP)
	portEcho   = 7    // UDP echo
	portDNS2   = 5353 // a second resolver (the same zone), for upstream_dns
	// HTTPS (HTTP/1.1 and h2 over TLS, for the inspection tests): with a
	// certificate from the tests' CA, with one no one signed, and one for
	// the credential tests.
	portHTTPS     = 8443
	portHTTPSBad  = 8444
	portHTTPSAuth = 8445
)

// fakeNet is the fake internet, with the tests' runtime config.
type fakeNet struct {
	*fakenet.Net
	dir     string // config, logs
	config  string // the runtime's --config file
	logDir  string // egress.log_dir
	mu      sync.Mutex
	rebinds int
	probeMu sync.Mutex
	probeOn string // the probe binary on the host, for positive controls
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

// ip is address .host of the link.
func (fn *fakeNet) ip(host int) string { return fn.IP(blockLink, host) }

// ip2 is an address of the second block, which is not in the runtime's
// allowed_upstream_ranges.
func (fn *fakeNet) ip2(host int) string { return fn.IP(blockSecond, host) }

func (fn *fakeNet) range2() string { return fn.Prefix(blockSecond) }

// ip6 is an address of the link's IPv6 /112.
func (fn *fakeNet) ip6(host int) string { return fn.IP6(blockLink, host) }

// egressYAML is the runtime config's egress section for the fake
// internet: its resolver, its link's ranges (and extra ranges) in
// allowed_upstream_ranges, the tests' log dir.
func (fn *fakeNet) egressYAML(extraRanges ...string) string {
	ranges := append([]string{fn.Prefix(blockLink), fn.Prefix6(blockLink)}, extraRanges...)
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

func startFakeNet() (_ *fakeNet, err error) {
	hosts := []fakenet.Host{{Block: blockSecond, N: hSecond}}
	for _, h := range []int{hAllowed, hDenied, hOther, hSvc, hWild, hFinal, hAudit} {
		hosts = append(hosts, fakenet.Host{Block: blockLink, N: h})
	}
	n, err := fakenet.Start(fakenet.Options{Blocks: 3, IPv6: true, Hosts: hosts, Routed: []int{blockSecond}})
	if err != nil {
		return nil, err
	}
	fn := &fakeNet{Net: n}
	defer func() {
		if err != nil {
			err = errors.Join(err, fn.close())
		}
	}()
	if fn.dir, err = os.MkdirTemp("", "clawrun-egress-"); err != nil {
		return nil, err
	}
	fn.logDir = filepath.Join(fn.dir, "logs")
	if err := os.MkdirAll(fn.logDir, 0o700); err != nil {
		return nil, err
	}
	for _, serve := range []func() error{
		func() error { return fn.ServeTLS(portTLS, fakenet.TLSOptions{}) },
		func() error { return fn.ServeHTTP(portHTTP) },
		func() error { return fn.ServeHTTP(portAlt) },
		func() error { return fn.ServeBanner(portBanner, "BANNER") },
		func() error { return fn.ServeBanner(portSSH, "SSH-2.0-fake") },
		func() error { return fn.ServeBanner(portAlt2, "BANNER2") },
		func() error { return fn.ServeLaxHTTP(portLax) },
		func() error { return fn.ServeTLS(portHTTPS, fakenet.TLSOptions{HTTP: true}) },
		func() error { return fn.ServeTLS(portHTTPSBad, fakenet.TLSOptions{HTTP: true, Unsigned: true}) },
		func() error { return fn.ServeTLS(portHTTPSAuth, fakenet.TLSOptions{HTTP: true}) },
		func() error { return fn.ServeUDPEcho(portEcho) },
		func() error { return fn.ServeUDPEcho(portTLS) },
		func() error { return fn.ServeDNS(53, fn.zone) },
		func() error { return fn.ServeDNS(portDNS2, fn.zone) },
	} {
		if err := serve(); err != nil {
			return nil, err
		}
	}
	fn.config = filepath.Join(fn.dir, "config.yaml")
	if err := os.WriteFile(fn.config, []byte(fn.egressYAML()), 0o600); err != nil {
		return nil, err
	}
	return fn, nil
}

// close removes the fake internet and the temp dir.
func (fn *fakeNet) close() error {
	err := fn.Close()
	if fn.dir != "" {
		err = errors.Join(err, os.RemoveAll(fn.dir))
	}
	return err
}

// waitSaw waits until an event since mark matches and returns it.
func (fn *fakeNet) waitSaw(t *testing.T, mark int, what string, match func(fakenet.Event) bool) fakenet.Event {
	t.Helper()
	e, ok := fn.Wait(mark, 5*time.Second, match)
	if !ok {
		t.Errorf("the fake internet never saw %s; it saw:%s", what, fn.Dump(mark))
	}
	return e
}

// flush returns once what was sent to the fake internet before it has
// been received and taken by its servers (fakenet's Flush), so that a
// check that something never arrived is not made while it is still on its
// way.
func (fn *fakeNet) flush(t *testing.T) {
	t.Helper()
	if err := fn.Flush(); err != nil {
		t.Fatal(err)
	}
}

// counts reads the fake internet's counters of what reached it from the
// host's side of the link, where the filter's traffic comes from.
func (fn *fakeNet) counts(t *testing.T) fakenet.Counts {
	t.Helper()
	c, err := fn.Counts()
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// --- DNS ---

const zoneTTL = 3600 // longer than the filter's cap (60 s)

// zoneA are the zone's IPv4 addresses (lower-case names; "": the name
// exists without one, or rebind.test's, below).
func (fn *fakeNet) zoneA(name string) (string, bool) {
	a, ok := map[string]string{
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
		"rebind.test":  "",
		"v6.test":      "",
	}[name]
	return a, ok
}

// cnames is alias.test's chain: alias.test -> mid.test -> final.test.
var cnames = map[string]string{"alias.test": "mid.test", "mid.test": "final.test"}

// zone is the tests' DNS zone (a fakenet.Zone).
func (fn *fakeNet) zone(name string, qtype uint16) fakenet.Records {
	if target, ok := cnames[name]; ok {
		return fakenet.Records{Exists: true, CNAME: target, TTL: zoneTTL}
	}
	asked := name
	switch {
	case strings.HasSuffix(name, ".wild.test"):
		name = "wild.test"
	case strings.HasSuffix(name, ".denied.test"):
		name = "denied.test" // exfiltration labels: must never be asked
	}
	v4, ok := fn.zoneA(name)
	if !ok {
		return fakenet.Records{TTL: zoneTTL}
	}
	r := fakenet.Records{Exists: true, TTL: zoneTTL}
	switch {
	case qtype == dns.TypeTXT:
		r.TXT = []string{"txt of " + asked}
	case qtype == dns.TypeA && name == "rebind.test":
		r.Addrs = []string{fn.rebind()}
	case qtype == dns.TypeA && v4 != "":
		r.Addrs = []string{v4}
	case qtype == dns.TypeAAAA && name == "v6.test":
		r.Addrs = []string{fn.ip6(hDNS)}
	}
	if name == "rebind.test" {
		r.TTL = 0 // kept by no cache: the next lookup asks again
	}
	return r
}

// rebind is rebind.test's address: first an allowed host, every later
// time the loopback, a name rebinding under the client's feet.
func (fn *fakeNet) rebind() string {
	fn.mu.Lock()
	defer fn.mu.Unlock()
	fn.rebinds++
	if fn.rebinds == 1 {
		return fn.ip(hAllowed)
	}
	return "127.0.0.1"
}

// resetRebind makes rebind.test answer its allowed address once more.
func (fn *fakeNet) resetRebind() {
	fn.mu.Lock()
	fn.rebinds = 0
	fn.mu.Unlock()
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
	writeRootfs(r.t, b, "/etc/test-ca.pem", string(fn.CAPEM()), 0o644)
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
	err := fakenet.InNetns(path, func() error {
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
	match func(fakenet.Event) bool
}

// nothing matches every event: for checks after which the fake internet
// must have received nothing at all. Such a check also counts packets: not
// one connection attempt or datagram from the host's side (the filter's)
// may reach the fake internet, to any address or port, served or not.
var nothing = seen{"anything", fakenet.Any}

// noConnection: no server accepts a connection, and not one connection
// attempt from the host's side reaches the fake internet.
var noConnection = seen{"a connection", fakenet.OfKind("accept")}

func sawTLS(sni, ip string) seen {
	return seen{fmt.Sprintf("a TLS handshake for %q on %s", sni, ip), func(e fakenet.Event) bool {
		return e.Kind == "tls" && e.Name == sni && e.LocalIP() == ip
	}}
}

func sawHTTP(host, ip string) seen {
	return seen{fmt.Sprintf("an HTTP request for %q on %s", host, ip), func(e fakenet.Event) bool {
		return e.Kind == "http" && e.Name == host && e.LocalIP() == ip
	}}
}

func sawQuery(name, qtype string) seen {
	return seen{fmt.Sprintf("a DNS query %s %s", name, qtype), func(e fakenet.Event) bool {
		return fakenet.Query(name)(e) && (qtype == "" || e.QType == qtype)
	}}
}

func sawConnTo(ip string, port int) seen {
	return seen{fmt.Sprintf("a connection to %s:%d", ip, port), func(e fakenet.Event) bool {
		return e.Kind == "accept" && e.LocalIP() == ip && e.LocalPort() == port
	}}
}

func queryContaining(s string) seen {
	return seen{fmt.Sprintf("a DNS query containing %q", s), fakenet.QueryContaining(s)}
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
	lm, em := c.logMark(), c.fn.Mark()
	// The fake internet's counters that must not move.
	var syns, datagrams bool
	for _, s := range ch.never {
		switch s.what {
		case nothing.what:
			syns, datagrams = true, true
		case noConnection.what:
			syns = true
		}
	}
	var before fakenet.Counts
	if syns || datagrams {
		before = c.fn.counts(c.t)
	}
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
	if syns || datagrams {
		after := c.fn.counts(c.t)
		moved := func(watched bool, what string, n int) {
			if watched && n != 0 {
				c.t.Errorf("%s: %d %s packets from the host reached the fake internet:%s", ch.name, n, what, c.fn.Dump(em))
			}
		}
		moved(syns, "syns", after.SYNs-before.SYNs)
		moved(datagrams, "datagrams", after.Datagrams-before.Datagrams)
	}
	for _, s := range ch.never {
		var bad []string
		for _, e := range c.fn.Since(em) {
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
