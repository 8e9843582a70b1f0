package integration

import (
	"bufio"
	"crypto/tls"
	"crypto/x509"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/clawrun/clawrun/test/fakenet"
)

// reloadAPI is the endpoint with request rules that both of
// TestEgressHotReload's generations keep.
const reloadAPI = `  api:
    endpoints:
      - host: allowed.test
        port: 80
        protocol: rest
        rules:
          - allow: {method: GET, path: /ok}
`

// TestEgressHotReload: `clawrun policy apply` switches a running
// container to a new generation, closes the open connections it denies
// (and only those), and rejects an invalid file, keeping the old policy.
func TestEgressHotReload(t *testing.T) {
	r, fn := egressRuntime(t)
	c := fn.startPolicy(r, policyDoc(`  web:
    endpoints:
      - {host: allowed.test, port: 443}
      - {host: other.test, port: 443}
      - {host: svc.test, port: 2222, protocol: tcp}
      - {host: other.test, port: 80}
`+reloadAPI))
	if st := c.egressState(); st != "filtering (generation 1)" {
		t.Errorf("state: egress %q, want filtering (generation 1)", st)
	}
	// Live connections: three the new policy denies (TLS, a TCP stream,
	// HTTP keep-alive), two it keeps (TLS, HTTP keep-alive to an endpoint
	// with request rules). The HTTP clients send their second request, and
	// the kept TLS client says whether its connection is still open, once
	// the test has seen the reload close the denied ones (it creates
	// reloaded in the container then).
	const reloaded = "/tmp/reloaded"
	em, lm := fn.Mark(), c.logMark()
	hold := func(args ...string) *proc {
		return r.startBG(runOpts{Timeout: time.Minute}, append(append(fn.globals(), "exec", c.id, "probe"), args...)...)
	}
	denyTLS := hold("tls", "other.test", "443", "other.test", "30")
	denyTCP := hold("tcp", "svc.test", "2222", "30")
	denyHTTP := hold("http-hold", "other.test", "80", "other.test", reloaded)
	keep := hold("tls", "allowed.test", "443", "allowed.test", reloaded)
	keepHTTP := hold("http-hold", "allowed.test", "80", "allowed.test", reloaded, "/ok")
	fn.waitSaw(t, em, "the held TLS connection", sawTLS("other.test", fn.ip(hOther)).match)
	fn.waitSaw(t, em, "the held HTTP connection", sawHTTP("other.test", fn.ip(hOther)).match)
	fn.waitSaw(t, em, "the kept HTTP connection", sawHTTP("allowed.test", fn.ip(hAllowed)).match)
	fn.waitSaw(t, em, "the held TCP stream", sawConnTo(fn.ip(hSvc), 2222).match)
	fn.waitSaw(t, em, "the kept TLS connection", sawTLS("allowed.test", fn.ip(hAllowed)).match)

	gen2 := writeTemp(t, "gen2.yaml", policyDoc(`  web:
    endpoints:
      - {host: allowed.test, port: 443}
`+reloadAPI))
	applied := time.Now()
	res := r.ok(append(fn.globals(), "policy", "apply", c.id, gen2)...)
	if !strings.Contains(res.Stdout, "generation 2") {
		t.Errorf("policy apply: %q does not name generation 2", res.Stdout)
	}
	for _, p := range []struct {
		name string
		p    *proc
		want string
	}{{"TLS to other.test", denyTLS, "OK CLOSED"}, {"TCP to svc.test", denyTCP, "OK CLOSED"}} {
		out := p.p.wait(15 * time.Second)
		if !strings.HasPrefix(strings.TrimSpace(out.Stdout), p.want) {
			t.Errorf("held %s: got %q, want %q (closed by the reload)", p.name, out.Stdout, p.want)
		}
		if took := time.Since(applied); took > 10*time.Second {
			t.Errorf("held %s: closed %v after the reload", p.name, took)
		}
	}
	writeRootfs(t, c.bundle, reloaded, "", 0o644)
	if out := denyHTTP.wait(20 * time.Second); !strings.HasPrefix(strings.TrimSpace(out.Stdout), "OK 200 host=other.test") ||
		!strings.Contains(out.Stdout, "| ERR ") {
		t.Errorf("held HTTP to other.test: got %q, want its second request cut off by the reload", out.Stdout)
	}
	if out := keep.wait(20 * time.Second); !strings.HasPrefix(strings.TrimSpace(out.Stdout), "OK OPEN") {
		t.Errorf("the TLS connection the new policy allows: got %q, want it left open", out.Stdout)
	}
	kept := "OK 200 host=allowed.test local=" + fn.ip(hAllowed) + " path=/ok proto=HTTP/1.1 | 200 host=allowed.test"
	if out := keepHTTP.wait(20 * time.Second); !strings.HasPrefix(strings.TrimSpace(out.Stdout), kept) {
		t.Errorf("the HTTP connection the new policy allows (an endpoint with request rules): got %q, want %q", out.Stdout, kept)
	}
	for _, w := range []want{
		connWant("tcp", "other.test", 443, "deny", "not_allowed"),
		connWant("tcp", "svc.test", 2222, "deny", "not_allowed"),
		connWant("tcp", "other.test", 80, "deny", "not_allowed"),
	} {
		if d := c.waitDecision(lm, w); d.Generation != 2 {
			t.Errorf("the reload's decision has generation %d, want 2: %s", d.Generation, d)
		}
	}
	if st := c.egressState(); st != "filtering (generation 2)" {
		t.Errorf("state: egress %q, want filtering (generation 2)", st)
	}
	c.checks(
		fn.deniedSNI("generation 2: other.test is denied", fn.ip(hOther), "other.test"),
		echeck{name: "generation 2: other.test does not resolve",
			args:  []string{"dns", fn.ip(hDNS), "other.test"},
			out:   "ERR NXDOMAIN",
			dec:   []want{dnsWant("other.test", "A", "deny", "not_allowed")},
			never: []seen{queryContaining("other.test")}},
	)

	// Invalid files change nothing.
	for _, bad := range []struct{ name, doc, cause string }{
		{"bad port", policyDoc("  web:\n    endpoints:\n      - {host: other.test, port: 70000}\n"), "port"},
		{"not YAML", "network_policies: [\n", "invalid YAML"},
		{"no network_policies", "version: 1\n", "network_policies"},
	} {
		f := writeTemp(t, "bad.yaml", bad.doc)
		res := r.run(append(fn.globals(), "policy", "apply", c.id, f)...)
		assertFailure(t, res, bad.cause)
		if st := c.egressState(); st != "filtering (generation 2)" {
			t.Errorf("%s: state: egress %q, want filtering (generation 2)", bad.name, st)
		}
	}
	lm = c.logMark()
	c.checks(
		fn.allowedTLS("after the rejected files: allowed.test"),
		fn.deniedSNI("after the rejected files: other.test", fn.ip(hOther), "other.test"),
	)
	for _, d := range c.decisions()[lm:] {
		if d.Generation != 2 {
			t.Errorf("after the rejected files, a decision of generation %d: %s", d.Generation, d)
		}
	}

	// A new generation can widen as well.
	gen3 := writeTemp(t, "gen3.yaml", policyDoc(`  web:
    endpoints:
      - {host: allowed.test, port: 443}
      - {host: denied.test, port: 443}
`))
	r.ok(append(fn.globals(), "policy", "apply", c.id, gen3)...)
	c.check(echeck{name: "generation 3: denied.test is allowed",
		args: []string{"tls", "denied.test", "443", "denied.test"},
		out:  "OK cn=denied.test verify=ok hello sni=denied.test local=" + fn.ip(hDenied),
		dec:  []want{connWant("tls", "denied.test", 443, "allow", "allowed")},
		saw:  []seen{sawTLS("denied.test", fn.ip(hDenied))}})
	if st := c.egressState(); st != "filtering (generation 3)" {
		t.Errorf("state: egress %q, want filtering (generation 3)", st)
	}
}

// TestEgressFilterKilled: a killed worker is restarted by the supervisor;
// with the supervisor killed too, nothing gets out and state says so. The
// container's namespace has a real route into the fake internet: the
// control, the same container without a policy, gets DNS, TLS and UDP out
// through it, so only the rules the dead filter left can stop them.
func TestEgressFilterKilled(t *testing.T) {
	r, fn := egressRuntime(t)
	rn := fn.routedNet(t)
	deadFilter := []echeck{
		getsNothingOut("allowed TLS, filter dead", "tls", "allowed.test", "443", "allowed.test"),
		{name: "TLS to an address, filter dead",
			args:  []string{"tls", fn.ip(hAllowed), "443", "allowed.test"},
			out:   "ERR ECONNREFUSED|ERR EOF|ERR ECONNRESET|ERR ETIMEDOUT",
			never: []seen{nothing}},
		getsNothingOut("DNS, filter dead", "dns", fn.ip(hDNS), "allowed.test"),
		getsNothingOut("UDP, filter dead", "udp", fn.ip(hDNS), "7"),
	}
	base := fn.start(r, fn.egressBundle(r, rn.inNet))
	em, before := fn.Mark(), rn.packets(t)
	for _, ch := range deadFilter {
		base.expect("OK", ch.args...)
	}
	fn.waitSaw(t, em, "the control's TLS handshake", func(e fakenet.Event) bool { return e.Kind == "tls" && e.RemoteIP() == rn.IP })
	fn.waitSaw(t, em, "the control's datagram", func(e fakenet.Event) bool { return e.Kind == "udp" && e.RemoteIP() == rn.IP })
	if rn.packets(t) == before {
		t.Fatal("control: no packet from the container was counted")
	}
	r.ok(append(fn.globals(), "delete", "-f", base.id)...)

	c := fn.startPolicy(r, policyDoc(`  web:
    endpoints:
      - {host: allowed.test, port: 443}
      - {host: svc.test, port: 2222, protocol: tcp}
`), rn.inNet)
	line := c.check(echeck{name: "synthetic address",
		args: []string{"dns", fn.ip(hDNS), "svc.test"},
		out:  "OK A:100.127.",
		dec:  []want{dnsWant("svc.test", "A", "allow", "allowed")}})
	synthetic := strings.TrimPrefix(strings.Fields(line)[1], "A:")
	tcpWorks := echeck{name: "TCP to the synthetic address (cached by the client)",
		args: []string{"tcp", synthetic, "2222"},
		out:  "OK BANNER " + fn.ip(hSvc),
		dec:  []want{connWant("tcp", "svc.test", 2222, "allow", "allowed")},
		saw:  []seen{sawConnTo(fn.ip(hSvc), 2222)}}
	c.check(tcpWorks)
	works := fn.allowedTLS("allowed TLS")
	c.check(works)
	st := c.status()
	if st.State != "running" || !pidAlive(st.Supervisor) || !pidAlive(st.Worker) {
		t.Fatalf("filter status %+v: want running with a live supervisor and worker", st)
	}

	// kill -9 the worker: the supervisor starts another on the same sockets.
	if err := syscall.Kill(st.Worker, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	var now egressStatus
	waitFor(t, 10*time.Second, "a new worker", func() bool {
		now = c.status()
		return now.State == "running" && now.Worker != st.Worker && now.Restarts >= 1 && pidAlive(now.Worker)
	})
	if now.Supervisor != st.Supervisor {
		t.Errorf("the supervisor changed: %d -> %d", st.Supervisor, now.Supervisor)
	}
	if s := c.egressState(); !strings.HasPrefix(s, "filtering (generation 1); last failure ") || !strings.Contains(s, "worker killed by SIGKILL") {
		t.Errorf("after the worker's restart, state says egress %q, want filtering (generation 1) and the last failure: killed", s)
	}
	c.check(works)
	// The client still holds the synthetic address (its TTL is 60 s): the
	// new worker must map it back to the same name.
	c.check(tcpWorks)
	c.check(echeck{name: "DNS after the restart",
		args: []string{"dns", fn.ip(hDNS), "allowed.test"},
		out:  "OK A:" + fn.ip(hAllowed),
		dec:  []want{dnsWant("allowed.test", "A", "allow", "allowed")}})

	// kill -9 the supervisor: the worker dies with it, the rules stay.
	pid := r.state(c.id).Pid
	if err := syscall.Kill(now.Supervisor, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, "the filter to be gone", func() bool {
		return !pidAlive(now.Supervisor) && !pidAlive(now.Worker)
	})
	if tables := nftTables(t, pid); !strings.Contains(tables, "table inet clawrun") {
		t.Errorf("the rules went with the filter:\n%s", tables)
	}
	before = rn.packets(t)
	c.checks(deadFilter...)
	if n := rn.packets(t) - before; n != 0 {
		t.Errorf("the filter dead, %d packets from the container reached the fake internet", n)
	}
	if s := c.egressState(); strings.HasPrefix(s, "filtering") {
		t.Errorf("the filter's supervisor and worker are dead, yet state says egress %q", s)
	}
}

// TestEgressNoLeftovers: creating and deleting containers with egress
// policies leaves no filter process, namespace, nftables table or
// listener behind. CLAWRUN_EGRESS_CHURN sets how many (default 20).
func TestEgressNoLeftovers(t *testing.T) {
	r, fn := egressRuntime(t)
	n := 20
	if v := os.Getenv("CLAWRUN_EGRESS_CHURN"); v != "" {
		var err error
		if n, err = strconv.Atoi(v); err != nil || n < 1 {
			t.Fatalf("CLAWRUN_EGRESS_CHURN=%q: want a positive number", v)
		}
	}
	b := fn.egressBundle(r, withInline(policyDoc(`  web:
    endpoints:
      - {host: allowed.test, port: 443}
      - {host: svc.test, port: 2222, protocol: tcp}
`)))
	hostTables, err := runCmd(cmdTimeout, "nft", "list", "tables")
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	namespaces := map[netnsID]bool{}
	var ids []string
	for i := range n {
		id := newID(t)
		r.track(id)
		r.ok(append(fn.globals(), "create", "--bundle", b, id)...)
		ids = append(ids, id)
		pid := r.state(id).Pid
		ns, err := netnsOf(pid)
		if err != nil {
			t.Fatal(err)
		}
		namespaces[ns] = true
		// Check a few in depth: rules, listeners, filter processes.
		if i < 3 || i == n-1 {
			if tables := nftTables(t, pid); !strings.Contains(tables, "table inet clawrun") {
				t.Errorf("%s: no clawrun table in its namespace:\n%s", id, tables)
			}
			if l := listenersIn(t, pid); !strings.Contains(l, "0100007F:3A99") || !strings.Contains(l, "0100007F:3ACD") {
				t.Errorf("%s: the filter's listeners (127.0.0.1:15001 and :15053) are not in its namespace:\n%s", id, l)
			}
			if procs := filterProcs(filepath.Join(r.root, id)); len(procs) != 2 {
				t.Errorf("%s: %d filter processes, want a supervisor and a worker", id, len(procs))
			}
		}
	}
	created := time.Since(start)
	procs := filterProcs(r.root)
	if len(procs) != 2*n {
		t.Errorf("%d filter processes for %d containers", len(procs), n)
	}
	for _, id := range ids {
		r.ok(append(fn.globals(), "delete", id)...)
	}
	total := time.Since(start)
	t.Logf("%d containers with egress policies: created in %v, created and deleted in %v (%.0f ms per container)",
		n, created.Round(time.Millisecond), total.Round(time.Millisecond), float64(total.Milliseconds())/float64(n))

	waitFor(t, 10*time.Second, "no filter process left", func() bool { return len(filterProcs(r.root)) == 0 })
	for _, pid := range procs {
		for _, cg := range filterCgroupsLeft(t, pid) {
			t.Errorf("the filter's memory cgroup %s is left", cg)
		}
	}
	if held := netnsHeld(namespaces); len(held) > 0 {
		t.Errorf("the containers' network namespaces are still held:\n  %s", strings.Join(held, "\n  "))
	}
	for _, id := range ids {
		if _, err := os.Stat(filepath.Join(r.root, id)); !os.IsNotExist(err) {
			t.Errorf("%s: state dir left (%v)", id, err)
		}
	}
	if pids := procsInRootfs(t, b); len(pids) > 0 {
		t.Errorf("processes left in the containers' rootfs: %v", pids)
	}
	if out, err := runCmd(cmdTimeout, "nft", "list", "tables"); err != nil || out != hostTables {
		t.Errorf("the host's nftables tables changed: %q -> %q (%v)", hostTables, out, err)
	}
}

// TestEgressFilterBinary: the filter's supervisor runs from clawrun-egress
// and its worker from clawrun-egress-worker when both are installed next
// to clawrun, and both from clawrun's own binary when either is missing;
// either way the policy is enforced.
func TestEgressFilterBinary(t *testing.T) {
	r, fn := egressRuntime(t)
	bin := filepath.Dir(r.bin)
	for _, name := range []string{"clawrun-egress", "clawrun-egress-worker"} {
		if _, err := os.Stat(filepath.Join(bin, name)); err != nil {
			t.Fatalf("%v: make build puts %s next to clawrun", err, name)
		}
	}
	doc := policyDoc(`  web:
    endpoints:
      - {host: allowed.test, port: 443}
`)
	for _, tc := range []struct {
		name    string
		helpers []string // installed next to clawrun
		sup     string   // the programs the filter's processes run
		worker  string
	}{
		{"helpers installed", []string{"clawrun-egress", "clawrun-egress-worker"}, "clawrun-egress", "clawrun-egress-worker"},
		{"clawrun alone", nil, "clawrun", "clawrun"},
		{"the worker's program missing", []string{"clawrun-egress"}, "clawrun", "clawrun"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			copyExecutable(t, r.bin, filepath.Join(dir, "clawrun"))
			for _, name := range tc.helpers {
				copyExecutable(t, filepath.Join(bin, name), filepath.Join(dir, name))
			}
			rr := *r
			rr.t, rr.bin = t, filepath.Join(dir, "clawrun")
			c := fn.startPolicy(&rr, doc)
			st := c.status()
			for _, p := range []struct {
				pid  int
				want string
			}{{st.Supervisor, tc.sup}, {st.Worker, tc.worker}} {
				if got, err := os.Readlink("/proc/" + strconv.Itoa(p.pid) + "/exe"); err != nil || got != filepath.Join(dir, p.want) {
					t.Errorf("filter process %d runs %q (%v), want %s", p.pid, got, err, filepath.Join(dir, p.want))
				}
			}
			c.checks(
				fn.allowedTLS("allowed TLS"),
				fn.deniedSNI("denied SNI aimed at an allowed host's address", fn.ip(hAllowed), "denied.test"),
			)
			if tc.worker != "clawrun-egress-worker" {
				return
			}
			// An upgrade replaces the worker's program; a worker that dies
			// then is restarted from the program its supervisor started
			// with, not from whatever now has its name.
			replaced := filepath.Join(dir, "clawrun-egress-worker.new")
			if err := os.WriteFile(replaced, []byte("#!/bin/sh\nexit 1\n"), 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.Rename(replaced, filepath.Join(dir, "clawrun-egress-worker")); err != nil {
				t.Fatal(err)
			}
			if err := syscall.Kill(st.Worker, syscall.SIGKILL); err != nil {
				t.Fatal(err)
			}
			var now egressStatus
			waitFor(t, 10*time.Second, "a new worker", func() bool {
				now = c.status()
				return now.State == "running" && now.Worker != st.Worker && pidAlive(now.Worker)
			})
			want := filepath.Join(dir, "clawrun-egress-worker") + " (deleted)"
			if got, err := os.Readlink("/proc/" + strconv.Itoa(now.Worker) + "/exe"); err != nil || got != want {
				t.Errorf("the restarted worker %d runs %q (%v), want %s", now.Worker, got, err, want)
			}
			c.checks(fn.allowedTLS("allowed TLS, restarted worker"))
		})
	}
}

func copyExecutable(t *testing.T, from, to string) {
	t.Helper()
	data, err := os.ReadFile(from)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(to, data, 0o755); err != nil {
		t.Fatal(err)
	}
}

// TestEgressHotReloadUndecided: a reload reaches the connections that
// have not been decided yet. One accepted before `clawrun policy apply`
// whose ClientHello comes after it is decided with the new policy (and
// logged with its generation); one whose upstream dial is still pending
// is cut and its dial cancelled; a host the new policy keeps works.
func TestEgressHotReloadUndecided(t *testing.T) {
	r, fn := egressRuntime(t)
	c := fn.startPolicy(r, policyDoc(`  web:
    endpoints:
      - {host: allowed.test, port: 443}
      - {host: other.test, ports: [443, 81]}
`))
	// other.test:81 never accepts until the test lets it: a dial to it
	// stays pending.
	slow, queued := fn.fullListener(t, fn.ip(hOther), 81)
	em, lm := fn.Mark(), c.logMark()

	// Decided, dialling: a ClientHello for other.test:81.
	pending := c.netnsDial(fn.ip(hOther), 81)
	pendingDone := make(chan error, 1)
	go func() {
		pendingDone <- tls.Client(pending, &tls.Config{ServerName: "other.test", InsecureSkipVerify: true}).Handshake()
	}()
	for deadline := time.Now().Add(5 * time.Second); dialsTo(fn.ip(hOther), 81) == 0; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the filter never started dialling other.test:81")
		}
	}

	// Undecided: connected, only the first byte of a ClientHello sent
	// (and read by the filter, which waits 10 s for the rest: last).
	removed := &sentAhead{Conn: c.netnsDial(fn.ip(hOther), 443), ahead: []byte{0x16}}
	kept := &sentAhead{Conn: c.netnsDial(fn.ip(hAllowed), 443), ahead: []byte{0x16}}
	for _, conn := range []*sentAhead{removed, kept} {
		if _, err := conn.Conn.Write(conn.ahead); err != nil {
			t.Fatal(err)
		}
		c.waitFilterRead(conn.Conn)
	}
	gen2 := writeTemp(t, "gen2.yaml", policyDoc(`  web:
    endpoints:
      - {host: allowed.test, port: 443}
`))
	r.ok(append(fn.globals(), "policy", "apply", c.id, gen2)...)
	c.waitUnresolvable("other.test")

	// The ClientHellos sent after the reload are decided by it (before
	// the filter's wait for them ends).
	pool := x509.NewCertPool()
	pool.AddCert(fn.CA())
	if err := tls.Client(removed, &tls.Config{ServerName: "other.test", RootCAs: pool}).Handshake(); err == nil {
		t.Error("the handshake with other.test succeeded after the reload removed it")
	}
	removed.Close()
	// Positive control: the host the new policy keeps.
	tc := tls.Client(kept, &tls.Config{ServerName: "allowed.test", RootCAs: pool})
	if err := tc.Handshake(); err != nil {
		t.Errorf("the handshake with allowed.test, still allowed, failed: %v", err)
	} else if line, err := bufio.NewReader(tc).ReadString('\n'); !strings.HasPrefix(line, "hello sni=allowed.test") {
		t.Errorf("allowed.test's greeting: %q %v", line, err)
	}
	tc.Close()
	if d := c.waitDecision(lm, connWant("tls", "other.test", 443, "deny", "not_allowed")); d.Generation != 2 {
		t.Errorf("other.test's ClientHello, sent after the reload, was decided by generation %d: %s", d.Generation, d)
	}
	if d := c.waitDecision(lm, connWant("tls", "allowed.test", 443, "allow", "allowed")); d.Generation != 2 {
		t.Errorf("allowed.test's ClientHello, sent after the reload, was decided by generation %d: %s", d.Generation, d)
	}
	// The pending dial is cancelled: the client is cut, the SYN is no
	// longer sent, and with the server's queue drained nothing arrives.
	select {
	case err := <-pendingDone:
		if err == nil {
			t.Error("the handshake with other.test:81 succeeded after the reload removed it")
		}
	case <-time.After(5 * time.Second):
		t.Error("the connection dialling other.test:81 was not cut by the reload")
	}
	if d := c.waitDecision(lm, connWant("tcp", "other.test", 81, "deny", "not_allowed")); d.Generation != 2 {
		t.Errorf("the reload's decision has generation %d, want 2: %s", d.Generation, d)
	}
	for deadline := time.Now().Add(5 * time.Second); dialsTo(fn.ip(hOther), 81) != 0; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Error("the filter still dials other.test:81 after the reload removed it")
			break
		}
	}
	for i := 0; i < queued; i++ {
		if conn, err := slow.Accept(); err == nil {
			conn.Close()
		}
	}
	_ = slow.(*net.TCPListener).SetDeadline(time.Now().Add(300 * time.Millisecond))
	if conn, err := slow.Accept(); err == nil {
		t.Errorf("other.test:81 received a connection from %s after the reload removed it", conn.RemoteAddr())
		conn.Close()
	}

	for _, e := range fn.Since(em) {
		if e.LocalIP() == fn.ip(hOther) {
			t.Errorf("other.test received something after the reload removed it: %s", e)
		}
	}
}
