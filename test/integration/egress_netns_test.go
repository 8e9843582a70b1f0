package integration

// The egress filter and the network namespace it guards: what may leave
// through a real interface, which filter a namespace has, and what is left
// of a filter when its container goes, however it goes.

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/clawrun/clawrun/test/fakenet"
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
// out of a real interface.) The control: without clawrun, each probe's
// own packets reach the fake internet's side of the link, except where
// the kernel itself keeps the connection on loopback (it ignores
// IP_UNICAST_IF for a TCP connect to 127.0.0.1 and refuses it locally).
func TestEgressLoopbackStaysLocal(t *testing.T) {
	r, fn := egressRuntime(t)
	rn := fn.routedNet(t)
	probe := fn.hostProbe(t)
	type attempt struct {
		name        string
		proto, addr string
		port        int
		payload     string // for UDP
		err         bool   // must fail (what the filter redirects may reach its listeners instead)
	}
	var attempts []attempt
	for _, how := range []string{"bind", "unicast-if"} {
		attempts = append(attempts,
			attempt{how + ": UDP to 127.0.0.1", "udp", "127.0.0.1", 7, "leak", true},
			attempt{how + ": TCP to 127.0.0.1", "tcp", "127.0.0.1", 2222, "", true},
			// Redirected by the filter to 127.0.0.1 and ::1: the reroute
			// keeps the socket's interface.
			attempt{how + ": DNS to the resolver", "udp", fn.ip(hDNS), 53, "dns-leak", false},
			attempt{how + ": DNS over IPv6", "udp", fn.ip6(hDNS), 53, "dns-leak6", false},
			attempt{how + ": TCP to an allowed host", "tcp", fn.ip(hAllowed), 443, "", false},
		)
	}
	args := func(a attempt) []string {
		how, _, _ := strings.Cut(a.name, ":")
		cmd := []string{a.proto + "-dev", how, rn.If, a.addr, strconv.Itoa(a.port)}
		if a.proto == "udp" {
			cmd = append(cmd, a.payload)
		}
		return cmd
	}

	// The control: the same probes in the same namespace, without clawrun.
	local := 0
	for _, a := range attempts {
		before := rn.packetsTo(t, a.proto, a.addr, a.port)
		out, _ := runCmd(15*time.Second, "ip", append([]string{"netns", "exec", rn.NS, probe}, args(a)...)...)
		out = strings.TrimSpace(out)
		if a.proto == "tcp" && a.addr == "127.0.0.1" && strings.HasPrefix(out, "ERR ECONNREFUSED") {
			// Refused by the namespace's own loopback, not sent: nothing
			// for the filter to stop, but the probe still runs under it.
			local++
			t.Logf("control: %s is kept on loopback by the kernel itself (%s)", a.name, out)
			continue
		}
		waitFor(t, 5*time.Second, "the control's packets ("+a.name+": "+out+") to reach the fake internet",
			func() bool { return rn.packetsTo(t, a.proto, a.addr, a.port) > before })
	}
	if local > 1 {
		t.Fatalf("control: %d of the TCP probes to 127.0.0.1 never left the namespace; the test shows nothing for them", local)
	}

	c := fn.startPolicy(r, policyDoc(`  web:
    endpoints:
      - {host: allowed.test, port: 443}
`), rn.inNet)
	em := fn.Mark()
	before := rn.packets(t)
	for _, a := range attempts {
		if line := c.probe(args(a)...); a.err && !strings.HasPrefix(line, "ERR ") {
			t.Errorf("%s: probe %s: %q, want an error", a.name, strings.Join(args(a), " "), line)
		}
	}
	time.Sleep(150 * time.Millisecond) // packets in flight
	if after := rn.packets(t); after != before {
		t.Errorf("%d packets from the container's addresses reached the fake internet", after-before)
	}
	for _, e := range fn.Since(em) {
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

// allowedOnly is the policy of these tests: TLS to allowed.test only.
var allowedOnly = policyDoc(`  web:
    endpoints:
      - {host: allowed.test, port: 443}
`)

// netnsRecords are the runtime's records of which container filters a
// network namespace.
func (r *rtest) netnsRecords() []string {
	m, _ := filepath.Glob(filepath.Join(r.root, "egress-netns-*.json"))
	return m
}

// namedNetns is a network namespace with only lo (`ip netns add`), for
// containers to join by path.
func namedNetns(t *testing.T) string {
	t.Helper()
	name := fakenet.NetnsName("named")
	if err := runAll([][]string{{"ip", "netns", "add", name}, {"ip", "-n", name, "link", "set", "lo", "up"}}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if _, err := runCmd(10*time.Second, "ip", "netns", "del", name); err != nil {
			t.Errorf("removing %s: %v", name, err)
		}
	})
	return name
}

// nftTablesInNetns lists the nftables tables of a named namespace.
func nftTablesInNetns(t *testing.T, ns string) string {
	t.Helper()
	out, err := runCmd(10*time.Second, "ip", "netns", "exec", ns, "nft", "list", "tables")
	if err != nil {
		t.Fatalf("nft list tables in %s: %v", ns, err)
	}
	return out
}

// filterListenersInNetns lists the sockets listening on the filter's
// ports (15001, 15053) in a named namespace.
func filterListenersInNetns(t *testing.T, ns string) string {
	t.Helper()
	out, err := runCmd(10*time.Second, "ip", "netns", "exec", ns, "cat", "/proc/net/tcp", "/proc/net/tcp6", "/proc/net/udp", "/proc/net/udp6")
	if err != nil {
		t.Fatalf("sockets of %s: %v", ns, err)
	}
	var found []string
	for _, line := range strings.Split(out, "\n") {
		f := strings.Fields(line)
		if len(f) > 1 && (strings.HasSuffix(f[1], ":3A99") || strings.HasSuffix(f[1], ":3ACD")) {
			found = append(found, f[1])
		}
	}
	return strings.Join(found, " ")
}

// heldBeyondName lists what holds a named namespace besides its name (the
// mount under /run/netns): processes in it, open namespace fds.
func heldBeyondName(t *testing.T, ns string) []string {
	t.Helper()
	var held []string
	for _, h := range netnsHeld(map[netnsID]bool{namedNetnsID(t, ns): true}) {
		if !strings.HasPrefix(h, "mount ") {
			held = append(held, h)
		}
	}
	return held
}

// namedNetnsID is the identity of a named namespace.
func namedNetnsID(t *testing.T, ns string) netnsID {
	t.Helper()
	id, err := netnsAt("/run/netns/" + ns)
	if err != nil {
		t.Fatal(err)
	}
	return id
}

// TestEgressStaleNetnsRecord: the record saying which container filters a
// namespace is trusted only while that container's filter runs there. A
// record left by an owner that is gone (a crash, a reused namespace
// identity) does not make a new container in that namespace join a filter
// that does not exist: it gets its own. A record whose owner is still
// there with its filter down makes the new container fail to create.
func TestEgressStaleNetnsRecord(t *testing.T) {
	r, fn := egressRuntime(t)
	rn := fn.routedNet(t)

	a := fn.startPolicy(r, allowedOnly, rn.inNet)
	recs := r.netnsRecords()
	if len(recs) != 1 {
		t.Fatalf("records after the namespace's first filter: %v, want one", recs)
	}
	saved, err := os.ReadFile(recs[0])
	if err != nil {
		t.Fatal(err)
	}
	r.ok(append(fn.globals(), "delete", "-f", a.id)...)
	if left := r.netnsRecords(); len(left) != 0 {
		t.Fatalf("delete left the records %v", left)
	}
	// What an owner that went without a delete leaves behind.
	if err := os.WriteFile(recs[0], saved, 0o600); err != nil {
		t.Fatal(err)
	}

	b := fn.startPolicy(r, allowedOnly, rn.inNet)
	before := rn.packets(t)
	b.checks(
		echeck{name: "UDP to the echo server", args: []string{"udp", fn.ip(hDNS), "7", "stale"}, out: "ERR EPERM",
			never: []seen{{"a UDP datagram", fakenet.OfKind("udp")}}},
		echeck{name: "a denied name", args: []string{"dns", fn.ip(hDNS), "denied.test"}, out: "ERR NXDOMAIN",
			dec: []want{dnsWant("denied.test", "A", "deny", "not_allowed")}, never: []seen{queryContaining("denied.test")}},
		fn.allowedTLS("allowed TLS"),
	)
	if after := rn.packets(t); after != before {
		t.Errorf("%d packets from the container's addresses reached the fake internet", after-before)
	}
	if st := b.egressState(); !strings.HasPrefix(st, "filtering") {
		t.Errorf("state: egress %q, want its own filter", st)
	}

	// The owner is there, its filter is not: nothing joins it.
	if err := syscall.Kill(b.status().Supervisor, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, "the filter to be gone", func() bool { return len(filterProcs(filepath.Join(r.root, b.id))) == 0 })
	bundle := fn.egressBundle(r, withInline(allowedOnly), rn.inNet)
	id := newID(t)
	r.track(id)
	res := r.run(append(fn.globals(), "create", "--bundle", bundle, id)...)
	assertFailure(t, res, "network_policies: the filter of "+b.id)
	r.assertGone(id, "")
	if !strings.Contains(nftTablesInNetns(t, rn.NS), "table inet clawrun") {
		t.Errorf("the rules of the namespace whose filter is down are gone")
	}
}

// TestEgressForcedDeleteStuckFilter: delete -f of a container whose
// filter does not answer (stopped) succeeds at once and leaves nothing:
// no filter process, rules, listener or record.
func TestEgressForcedDeleteStuckFilter(t *testing.T) {
	r, fn := egressRuntime(t)
	ns := namedNetns(t)
	c := fn.startPolicy(r, allowedOnly, joinNetns("/run/netns/"+ns))
	st := c.status()
	t.Cleanup(func() {
		for _, pid := range filterProcs(r.root) {
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
	})
	if err := syscall.Kill(st.Supervisor, syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	res := r.run(append(fn.globals(), "delete", "-f", c.id)...)
	took := time.Since(start)
	if res.Code != 0 {
		t.Errorf("delete -f with the filter stopped failed after %v:\n%s", took, res)
	}
	if took > 2*time.Second {
		t.Errorf("delete -f with the filter stopped took %v", took)
	}
	t.Logf("delete -f with the filter's supervisor stopped: %v", took.Round(time.Millisecond))
	if procs := filterProcs(r.root); len(procs) > 0 {
		t.Errorf("filter processes left: %v", procs)
	}
	for _, cg := range filterCgroupsLeft(t, st.Supervisor) {
		t.Errorf("the filter's memory cgroup %s is left", cg)
	}
	if tables := nftTablesInNetns(t, ns); strings.Contains(tables, "clawrun") {
		t.Errorf("the namespace's tables after delete -f: %q", tables)
	}
	if l := filterListenersInNetns(t, ns); l != "" {
		t.Errorf("listeners left on the filter's ports: %s", l)
	}
	if recs := r.netnsRecords(); len(recs) > 0 {
		t.Errorf("records left: %v", recs)
	}
	r.assertGone(c.id, c.bundle)
	if held := heldBeyondName(t, ns); len(held) > 0 {
		t.Errorf("the namespace is still held:\n  %s", strings.Join(held, "\n  "))
	}
}

// createKillVariant is one kind of container the create-kill loop makes.
type createKillVariant struct {
	name   string
	filter bool
	named  string // the named namespace it joins ("": one of its own)
	bundle string
	took   time.Duration // how long its create takes, measured
	runs   int
	leaks  int
	phases map[string]int // how far the killed creates got
	// lingered is the longest a killed create's processes took to exit
	// after the delete.
	lingered time.Duration
}

// killRuns is how many runs a kill loop makes (runsVar, default n) and
// the random source of its kill points (seeded from seedVar, or the
// clock), both logged so that a failing run can be replayed.
func killRuns(t *testing.T, runsVar string, n int, seedVar string) (int, *rand.Rand) {
	t.Helper()
	n = envInt(t, runsVar, n)
	seed := uint64(time.Now().UnixNano())
	if os.Getenv(seedVar) != "" {
		seed = uint64(envInt(t, seedVar, 0))
	}
	t.Logf("%d runs, seed %d", n, seed)
	return n, rand.New(rand.NewPCG(seed, 0))
}

// TestEgressCreateKilled: `clawrun create` SIGKILLed at any point of its
// run (as containerd's runc client does when a shim's context is
// cancelled), then `delete -f`, leaves nothing: no filter process, no
// rules or listeners in the namespace, nothing holding the namespace, no
// record; and the next container in the same shared namespace gets its
// filter. With and without an egress filter, in a namespace of its own and
// in a named one it joins. CLAWRUN_CREATE_KILLS sets how many runs in all
// (default 30), CLAWRUN_CREATE_KILL_SEED the random points' seed.
func TestEgressCreateKilled(t *testing.T) {
	r, fn := egressRuntime(t)
	n, rng := killRuns(t, "CLAWRUN_CREATE_KILLS", 30, "CLAWRUN_CREATE_KILL_SEED")

	named := namedNetns(t)
	variants := []*createKillVariant{
		newKillVariant(r, fn, "own namespace, filter", true, ""),
		newKillVariant(r, fn, "own namespace, no filter", false, ""),
		newKillVariant(r, fn, "named namespace, filter", true, named),
		newKillVariant(r, fn, "named namespace, no filter", false, named),
	}
	for _, v := range variants {
		v.took = meanOf3(func() time.Duration {
			id := newID(t)
			r.track(id)
			start := time.Now()
			r.ok(append(fn.globals(), "create", "--bundle", v.bundle, id)...)
			took := time.Since(start)
			r.ok(append(fn.globals(), "delete", "-f", id)...)
			return took
		})
		t.Logf("%s: create takes %v", v.name, v.took.Round(time.Millisecond))
	}

	for i := range n {
		v := variants[i%len(variants)]
		// Spread over the whole create, and a little after it.
		delay := time.Duration(rng.Int64N(int64(v.took) * 5 / 4))
		phase, problems := createKilledAt(t, r, fn, v, delay)
		v.runs++
		v.phases[phase]++
		if len(problems) > 0 {
			v.leaks++
			t.Errorf("%s, killed after %v (%s):\n  %s", v.name, delay.Round(time.Millisecond), phase, strings.Join(problems, "\n  "))
		}
	}
	for _, v := range variants {
		t.Logf("%s: %d runs, %d with leftovers; killed %v; its processes exited within %v of the delete",
			v.name, v.runs, v.leaks, v.phases, v.lingered.Round(time.Millisecond))
	}

	stillFiltered(r, fn, named)
}

// newKillVariant is a container of the kill tests: with a filter
// (allowedOnly) or none, in a network namespace of its own or in named.
func newKillVariant(r *rtest, fn *fakeNet, name string, filter bool, named string) *createKillVariant {
	var edits []func(*specs.Spec)
	if filter {
		edits = append(edits, withInline(allowedOnly))
	}
	if named != "" {
		edits = append(edits, joinNetns("/run/netns/"+named))
	}
	return &createKillVariant{name: name, filter: filter, named: named, bundle: fn.egressBundle(r, edits...), phases: map[string]int{}}
}

// meanOf3 is the mean of three runs of f.
func meanOf3(f func() time.Duration) time.Duration {
	return (f() + f() + f()) / 3
}

// namespaces is the network namespace of a run of the variant: the named
// one, or that of its init pid (none if 0 or gone).
func (v *createKillVariant) namespaces(t *testing.T, pid int) map[netnsID]bool {
	t.Helper()
	ns := map[netnsID]bool{}
	if v.named != "" {
		ns[namedNetnsID(t, v.named)] = true
	} else if id, err := netnsOf(pid); pid > 0 && err == nil {
		ns[id] = true
	}
	return ns
}

// killAfter SIGKILLs p after delay unless it has exited by then, and
// waits for it.
func killAfter(p *proc, delay time.Duration) {
	select {
	case <-p.done:
	case <-time.After(delay):
		_ = p.cmd.Process.Signal(syscall.SIGKILL)
		<-p.done
	}
}

// stillFiltered: the shared namespace named, after the kills, still takes
// a filtered container.
func stillFiltered(r *rtest, fn *fakeNet, named string) {
	r.t.Helper()
	c := fn.startPolicy(r, allowedOnly, joinNetns("/run/netns/"+named))
	c.checks(
		echeck{name: "UDP after the kills", args: []string{"udp", fn.ip(hDNS), "7", "after"}, out: "ERR ",
			never: []seen{{"a UDP datagram", fakenet.OfKind("udp")}}},
		fn.allowedTLS("allowed TLS after the kills"),
	)
}

// createKillPhase tells how far a create got from what it left in its
// state dir.
func createKillPhase(stateDir string, finished bool) string {
	has := func(name string) bool {
		_, err := os.Stat(filepath.Join(stateDir, name))
		return err == nil
	}
	switch {
	case finished:
		return "after create"
	case has("egress-status.json"):
		return "filter running"
	case has("egress-filter.json"):
		return "filter starting"
	case has("state.json"):
		return "container created"
	case has(""):
		return "state dir only"
	}
	return "before anything"
}

// createKilledAt runs create, SIGKILLs it after delay, deletes the
// container with -f and returns how far the create got and what was left.
func createKilledAt(t *testing.T, r *rtest, fn *fakeNet, v *createKillVariant, delay time.Duration) (string, []string) {
	t.Helper()
	id := newID(t)
	r.track(id)
	stateDir := filepath.Join(r.root, id)
	p, err := r.start(runOpts{}, append(fn.globals(), "create", "--bundle", v.bundle, id)...)
	if err != nil {
		t.Fatal(err)
	}
	killAfter(p, delay)
	phase := createKillPhase(stateDir, p.cmd.ProcessState.Success())
	// The namespace of its own, if the create got that far.
	pid := 0
	if data, err := os.ReadFile(filepath.Join(stateDir, "state.json")); err == nil {
		pid, _ = initPid(data)
	}
	namespaces := v.namespaces(t, pid)

	// Its filter's supervisor, if the create got as far as recording it.
	supervisor := recordedSupervisor(stateDir)

	var problems []string
	if res := r.run(append(fn.globals(), "delete", "-f", id)...); res.Code != 0 {
		problems = append(problems, "delete -f failed: "+res.String())
	}
	return phase, append(problems, leftovers(t, r, v, stateDir, namespaces, supervisor)...)
}

// leftovers lists what a container deleted with -f left behind: its
// filter's processes and memory cgroup (supervisor: the filter's pid, 0 if
// unknown), its state dir, namespace records, processes in its rootfs,
// holders of its namespaces, and in a named namespace the filter's table
// and listeners.
func leftovers(t *testing.T, r *rtest, v *createKillVariant, stateDir string, namespaces map[netnsID]bool, supervisor int) []string {
	t.Helper()
	var problems []string
	// What a runtime killed before it recorded them started exits by
	// itself as soon as it runs: a filter that never got to filter, an
	// init still being set up (which holds the namespace it joined).
	start := time.Now()
	for len(filterProcs(stateDir))+len(procsInRootfs(t, v.bundle)) > 0 && time.Since(start) < 5*time.Second {
		time.Sleep(10 * time.Millisecond)
	}
	v.lingered = max(v.lingered, time.Since(start))
	if procs := filterProcs(stateDir); len(procs) > 0 {
		problems = append(problems, fmt.Sprintf("filter processes left: %v", procs))
	}
	if supervisor > 0 {
		for _, cg := range filterCgroupsLeft(t, supervisor) {
			problems = append(problems, "the filter's memory cgroup is left: "+cg)
		}
	}
	if _, err := os.Lstat(stateDir); err == nil {
		problems = append(problems, "state dir left")
	}
	if recs := r.netnsRecords(); len(recs) > 0 {
		problems = append(problems, fmt.Sprintf("records left: %v", recs))
	}
	if pids := procsInRootfs(t, v.bundle); len(pids) > 0 {
		problems = append(problems, fmt.Sprintf("processes left in the rootfs: %v", pids))
	}
	for _, h := range netnsHeld(namespaces) {
		if !strings.HasPrefix(h, "mount ") {
			problems = append(problems, "namespace held: "+h)
		}
	}
	if v.named != "" {
		if tables := nftTablesInNetns(t, v.named); strings.Contains(tables, "clawrun") {
			problems = append(problems, "tables left in the namespace: "+strings.TrimSpace(tables))
		}
		if l := filterListenersInNetns(t, v.named); l != "" {
			problems = append(problems, "listeners left on the filter's ports: "+l)
		}
	}
	return problems
}

// TestEgressDeleteKilled: `clawrun delete` (of a running container, with
// -f, and of a stopped one) SIGKILLed at any point of its run, then
// `delete -f` as a caller retries: nothing is left, the filter included,
// in a namespace of the container's own and in a shared named one, which
// still takes a filtered container afterwards.
func TestEgressDeleteKilled(t *testing.T) {
	r, fn := egressRuntime(t)
	n, rng := killRuns(t, "CLAWRUN_DELETE_KILLS", 24, "CLAWRUN_DELETE_KILL_SEED")

	named := namedNetns(t)
	variants := []*createKillVariant{
		newKillVariant(r, fn, "own namespace", true, ""),
		newKillVariant(r, fn, "named namespace", true, named),
	}
	for _, v := range variants {
		v.took = meanOf3(func() time.Duration {
			id := newID(t)
			r.track(id)
			r.ok(append(fn.globals(), "run", "-d", "--bundle", v.bundle, id)...)
			start := time.Now()
			r.ok(append(fn.globals(), "delete", "-f", id)...)
			return time.Since(start)
		})
		t.Logf("%s: delete -f takes %v", v.name, v.took.Round(time.Millisecond))
	}
	for i := range n {
		v := variants[i%len(variants)]
		stopped := i%4 >= 2 // half the runs delete a stopped container
		delay := time.Duration(rng.Int64N(int64(v.took) * 5 / 4))
		if problems := deleteKilledAt(t, r, fn, v, delay, stopped); len(problems) > 0 {
			v.leaks++
			t.Errorf("%s (stopped %v), delete killed after %v:\n  %s", v.name, stopped, delay.Round(time.Millisecond), strings.Join(problems, "\n  "))
		}
		v.runs++
	}
	for _, v := range variants {
		t.Logf("%s: %d runs, %d with leftovers", v.name, v.runs, v.leaks)
	}

	stillFiltered(r, fn, named)
}

// deleteKilledAt runs a container, deletes it (stopped first, or with -f
// while it runs), SIGKILLs the delete after delay, then deletes it with
// -f, and returns what was left.
func deleteKilledAt(t *testing.T, r *rtest, fn *fakeNet, v *createKillVariant, delay time.Duration, stopped bool) []string {
	t.Helper()
	id := newID(t)
	r.track(id)
	stateDir := filepath.Join(r.root, id)
	r.ok(append(fn.globals(), "run", "-d", "--bundle", v.bundle, id)...)
	namespaces := v.namespaces(t, r.state(id).Pid)
	supervisor := recordedSupervisor(stateDir)
	if supervisor == 0 {
		t.Fatalf("%s runs with no filter recorded", id)
	}
	args := []string{"delete", "-f", id}
	if stopped {
		r.ok(append(fn.globals(), "kill", id, "KILL")...)
		r.waitStatus(id, "stopped")
		args = []string{"delete", id}
	}
	p, err := r.start(runOpts{}, append(fn.globals(), args...)...)
	if err != nil {
		t.Fatal(err)
	}
	killAfter(p, delay)
	var problems []string
	if res := r.run(append(fn.globals(), "delete", "-f", id)...); res.Code != 0 {
		problems = append(problems, "delete -f after the killed delete failed: "+res.String())
	}
	return append(problems, leftovers(t, r, v, stateDir, namespaces, supervisor)...)
}

// TestEgressReloadWhileExiting: a hot reload (`policy apply`) racing the
// container's exit and delete. The apply neither hangs nor succeeds
// silently on a filter that is gone (it loads the generation, or fails
// saying why), and the delete leaves nothing.
func TestEgressReloadWhileExiting(t *testing.T) {
	r, fn := egressRuntime(t)
	n := envInt(t, "CLAWRUN_RELOAD_EXITS", 12)
	v := &createKillVariant{name: "own namespace", filter: true, bundle: fn.egressBundle(r, withInline(allowedOnly))}
	gen2 := writeTemp(t, "gen2.yaml", policyDoc("  web:\n    endpoints:\n      - {host: allowed.test, port: 443}\n      - {host: other.test, port: 443}\n"))
	outcomes := map[string]int{}
	for i := range n {
		id := newID(t)
		r.track(id)
		stateDir := filepath.Join(r.root, id)
		r.ok(append(fn.globals(), "run", "-d", "--bundle", v.bundle, id)...)
		pid := r.state(id).Pid
		namespaces := map[netnsID]bool{}
		if ns, err := netnsOf(pid); err == nil {
			namespaces[ns] = true
		}
		supervisor := recordedSupervisor(stateDir)
		apply, err := r.start(runOpts{}, append(fn.globals(), "policy", "apply", id, gen2)...)
		if err != nil {
			t.Fatal(err)
		}
		// The container exits while the apply runs: at once, or a little
		// later; every other run it is deleted as well.
		time.Sleep(time.Duration(i%4) * 5 * time.Millisecond)
		_ = syscall.Kill(pid, syscall.SIGKILL)
		var del *proc
		if i%2 == 1 {
			if del, err = r.start(runOpts{}, append(fn.globals(), "delete", "-f", id)...); err != nil {
				t.Fatal(err)
			}
		}
		res, err := apply.waitErrOK(20 * time.Second)
		if del != nil {
			if dres, err := del.waitErrOK(20 * time.Second); err != nil || dres.Code != 0 {
				t.Errorf("run %d: delete -f during the apply: %v\n%s", i, err, dres)
			}
		}
		switch {
		case err != nil:
			t.Errorf("run %d: policy apply while the container exits: %v\n%s", i, err, res)
		case res.Code == 0:
			outcomes["applied"]++
			if !strings.Contains(res.Stdout, "generation 2") {
				t.Errorf("run %d: policy apply succeeded without naming the generation it loaded:\n%s", i, res)
			}
		case strings.TrimSpace(res.Stderr) == "":
			t.Errorf("run %d: policy apply failed without saying why:\n%s", i, res)
		default:
			outcomes["refused"]++
		}
		var problems []string
		if res := r.run(append(fn.globals(), "delete", "-f", id)...); res.Code != 0 {
			problems = append(problems, "delete -f failed: "+res.String())
		}
		if problems = append(problems, leftovers(t, r, v, stateDir, namespaces, supervisor)...); len(problems) > 0 {
			t.Errorf("run %d:\n  %s", i, strings.Join(problems, "\n  "))
		}
	}
	t.Logf("%d reloads racing an exit: %v", n, outcomes)
}

// recordedSupervisor is the pid of the filter's supervisor that the
// container's egress.json records (0: none).
func recordedSupervisor(stateDir string) int {
	data, err := os.ReadFile(filepath.Join(stateDir, "egress.json"))
	if err != nil {
		return 0
	}
	var rec struct {
		Pid int `json:"supervisor_pid"`
	}
	if json.Unmarshal(data, &rec) != nil {
		return 0
	}
	return rec.Pid
}

// TestEgressStartNeedsFilter: a created container whose filter is not
// running (killed, or never started by a create that was cut short) does
// not start: its agent would run with no filter behind the rules, or
// with no rules at all.
func TestEgressStartNeedsFilter(t *testing.T) {
	r, fn := egressRuntime(t)
	b := fn.egressBundle(r, withInline(allowedOnly))
	id := newID(t)
	r.track(id)
	r.ok(append(fn.globals(), "create", "--bundle", b, id)...)
	sup := 0
	if data, err := os.ReadFile(filepath.Join(r.root, id, "egress-status.json")); err == nil {
		var st egressStatus
		if json.Unmarshal(data, &st) == nil {
			sup = st.Supervisor
		}
	}
	if sup == 0 {
		t.Fatal("no filter supervisor in the created container's status")
	}
	if err := syscall.Kill(sup, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, "the filter to be gone", func() bool { return len(filterProcs(filepath.Join(r.root, id))) == 0 })
	res := r.run(append(fn.globals(), "start", id)...)
	assertFailure(t, res, "egress filter is not running")
	if st := r.state(id); st.Status != "created" {
		t.Errorf("after the refused start the container is %s", st.Status)
	}

	// The control: with its filter, the same container starts.
	id2 := newID(t)
	r.track(id2)
	r.ok(append(fn.globals(), "create", "--bundle", b, id2)...)
	r.ok(append(fn.globals(), "start", id2)...)
	r.waitStatus(id2, "running")
}
