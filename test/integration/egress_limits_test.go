package integration

// The egress filter against a container that attacks it: its memory,
// its decision log, and version skew between the runtime and a running
// filter.

import (
	"bufio"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/opencontainers/runtime-spec/specs-go"

	"github.com/clawrun/clawrun/test/bundle"
)

// withMemoryLimit caps the container's memory.
func withMemoryLimit(bytes int64) func(*specs.Spec) {
	return func(s *specs.Spec) {
		if s.Linux.Resources == nil {
			s.Linux.Resources = &specs.LinuxResources{}
		}
		s.Linux.Resources.Memory = &specs.LinuxMemory{Limit: &bytes}
	}
}

// withOpenFiles sets the container process's RLIMIT_NOFILE.
func withOpenFiles(n uint64) func(*specs.Spec) {
	return func(s *specs.Spec) {
		var kept []specs.POSIXRlimit
		for _, l := range s.Process.Rlimits {
			if l.Type != "RLIMIT_NOFILE" {
				kept = append(kept, l)
			}
		}
		s.Process.Rlimits = append(kept, specs.POSIXRlimit{Type: "RLIMIT_NOFILE", Hard: n, Soft: n})
	}
}

// procStatusKB is a "Name:  N kB" line of /proc/PID/status, in bytes.
func procStatusKB(t *testing.T, pid int, name string) int64 {
	t.Helper()
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatalf("status of %d: %v", pid, err)
	}
	m := regexp.MustCompile(`(?m)^` + name + `:\s+(\d+) kB$`).FindSubmatch(data)
	if m == nil {
		t.Fatalf("no %s in /proc/%d/status", name, pid)
	}
	kb, _ := strconv.ParseInt(string(m[1]), 10, 64)
	return kb << 10
}

// memoryLimit is the hard memory limit of pid's cgroup (-1: none).
func memoryLimit(t *testing.T, pid int) (dir string, limit int64) {
	t.Helper()
	dir = cgroupDirOf(t, pid, "memory")
	for _, f := range []string{"memory.max", "memory.limit_in_bytes"} {
		data, err := os.ReadFile(filepath.Join(dir, f))
		if err != nil {
			continue
		}
		v := strings.TrimSpace(string(data))
		if v == "max" {
			return dir, -1
		}
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil {
			t.Fatalf("%s/%s: %q", dir, f, v)
		}
		if n >= 1<<62 { // cgroup v1's "unlimited"
			return dir, -1
		}
		return dir, n
	}
	t.Fatalf("no memory limit file in %s", dir)
	return dir, 0
}

// counts parses "key=N" words.
func counts(line string) map[string]int {
	out := map[string]int{}
	for _, w := range strings.Fields(line) {
		if k, v, ok := strings.Cut(w, "="); ok {
			if n, err := strconv.Atoi(v); err == nil {
				out[k] = n
			}
		}
	}
	return out
}

// TestEgressHandshakeFlood: connections that never finish their handshake
// cannot grow the filter's memory. A container limited to 64 MiB opens
// 3,000 connections that each send the first 12,000 bytes of a ClientHello
// and then nothing: the filter holds a bounded number of them, refuses (and
// logs) the rest, keeps its worker's memory small, runs it under a hard
// memory limit of its own, and still serves an allowed connection
// meanwhile, in the place of a stalled one.
func TestEgressHandshakeFlood(t *testing.T) {
	r, fn := egressRuntime(t)
	c := fn.startPolicy(r, policyDoc(`  web:
    endpoints:
      - {host: allowed.test, port: 443}
`), withMemoryLimit(64<<20), withOpenFiles(8192))
	c.check(fn.allowedTLS("before the flood"))
	st := c.status()
	worker := st.Worker

	// A hard limit of its own, which the container's traffic cannot push
	// past: the worker's memory cgroup is not the container's, and has a
	// limit.
	wdir, limit := memoryLimit(t, worker)
	cdir, _ := memoryLimit(t, r.state(c.id).Pid)
	if wdir == cdir || limit <= 0 || limit > 1<<30 {
		t.Errorf("the filter's worker runs in memory cgroup %s with limit %d; want a cgroup of its own (not the container's %s) with a limit", wdir, limit, cdir)
	}

	before := procStatusKB(t, worker, "VmRSS")
	lm := c.logMark()
	const n = 3000
	attack := r.startBG(runOpts{Timeout: 3 * time.Minute},
		append(fn.globals(), "exec", c.id, "probe", "partial-hellos", fn.ip(hDenied), "443", strconv.Itoa(n), "8", "12000")...)
	var open string
	waitFor(t, 2*time.Minute, "the flood's connections to be open", func() bool {
		open = attack.stdout()
		return strings.Contains(open, "OPEN ") || strings.Contains(open, "ERR")
	})
	during := counts(open)
	// The positive control, while the held connections are still held.
	c.check(fn.allowedTLS("during the flood"))
	peak := procStatusKB(t, worker, "VmHWM")
	res := attack.wait(time.Minute)
	t.Logf("worker RSS %d MiB before the flood, peak %d MiB; the filter held %d of %d connections, refused %d (%s)",
		before>>20, peak>>20, during["held"], n, during["refused"], strings.TrimSpace(res.Stdout))

	if now := c.status(); now.Worker != worker || now.Restarts != 0 {
		t.Errorf("the worker was restarted during the flood: %+v (was %d)", now, worker)
	}
	if peak > 64<<20 {
		t.Errorf("the worker's RSS peaked at %d MiB during the flood (%d MiB before): its memory is not bounded", peak>>20, before>>20)
	}
	// At most the filter's cap on connections (1024) held, the rest
	// refused or cut.
	if during["held"]+during["refused"] != n || during["held"] > 1024 || during["refused"] < n-1024 {
		t.Errorf("the filter held %d and refused %d of %d undecided connections: want at most 1024 held, the rest refused", during["held"], during["refused"], n)
	}
	// Past the cap, new connections are refused at once; the allowed one
	// during the flood took the place of a held one (half a ClientHello,
	// stalled for over a second).
	c.waitDecision(lm, connWant("tcp", "", 443, "deny", "conn_limit"))
	c.waitDecision(lm, connWant("tls", "", 443, "deny", "handshake_limit"))
}

// TestEgressLogFlood: a container cannot rotate the decision log's
// evidence away by producing denials as fast as it can. After 100,000
// denied DNS queries and 40,000 denied connections with a long server
// name (each a large line), an allowed decision logged before the flood is
// still in the log, and audit says how many decisions were aggregated.
func TestEgressLogFlood(t *testing.T) {
	r, fn := egressRuntime(t)
	c := fn.startPolicy(r, policyDoc(`  web:
    endpoints:
      - {host: allowed.test, port: 443}
`), withOpenFiles(8192))
	lm := c.logMark()
	c.check(fn.allowedTLS("before the flood"))
	allowed := c.waitDecision(lm, connWant("tls", "allowed.test", 443, "allow", "allowed"))

	em := fn.Mark()
	dnsRes := counts(c.probe("flood-dns", fn.ip(hDNS), "flood.denied.test", "100000"))
	longName := strings.Repeat("x", 60) + "." + strings.Repeat("exfil", 250) + ".denied.test"
	tlsRes := counts(c.probe("flood-tls", fn.ip(hDenied), "443", longName, "40000"))
	t.Logf("DNS flood: %v; TLS flood: %v", dnsRes, tlsRes)
	if got := fn.Since(em); len(got) > 0 {
		t.Fatalf("the flood reached the fake internet:%s", fn.Dump(em))
	}

	// The repeats of the last window are logged when the window ends (at
	// most 10 s after the flood): read the log until it accounts for every
	// query answered, or the window has surely ended.
	var found bool
	var full, aggregated, allAggregated int64
	deadline := time.Now().Add(15 * time.Second)
	for {
		found, full, aggregated, allAggregated = false, 0, 0, 0
		res := r.ok(append(fn.globals(), "audit", "--json", c.id)...)
		sc := bufio.NewScanner(strings.NewReader(res.Stdout))
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			var d struct {
				decision
				Aggregated int64 `json:"aggregated"`
			}
			if err := json.Unmarshal(sc.Bytes(), &d); err != nil {
				t.Fatalf("audit --json: %v: %q", err, sc.Text())
			}
			allAggregated += d.Aggregated
			if d.Time.Equal(allowed.Time) && d.Host == "allowed.test" && d.Decision == "allow" {
				found = true
			}
			if d.Protocol == "dns" && d.Host == "flood.denied.test" {
				if d.Aggregated > 0 {
					aggregated += d.Aggregated
				} else {
					full++
				}
			}
		}
		if full+aggregated >= int64(dnsRes["answered"]) || time.Now().After(deadline) {
			break
		}
		time.Sleep(500 * time.Millisecond)
	}
	if !found {
		t.Errorf("the allowed decision logged before the flood is gone from the log: %s", allowed)
	}
	if total := full + aggregated; total < int64(dnsRes["answered"]) || total > 100000 || full > 100 {
		t.Errorf("the log accounts for %d denied queries of flood.denied.test (%d lines, %d aggregated); %d were answered: want each one counted, in few lines",
			total, full, aggregated, dnsRes["answered"])
	}
	text := r.ok(append(fn.globals(), "audit", c.id)...)
	if want := fmt.Sprintf("%d aggregated", allAggregated); allAggregated == 0 || !strings.Contains(text.Stderr, want) {
		t.Errorf("audit does not say that %d decisions were aggregated (%q); its stderr:\n%s", allAggregated, want, text.Stderr)
	}
}

// tail is the last n lines of s.
func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}

// buildNewerClawrun builds clawrun from this tree with one more field in
// the egress rules it writes, as a newer clawrun would: a filter started
// by this clawrun must refuse its rules, not apply half of them.
func buildNewerClawrun(t *testing.T) string {
	t.Helper()
	repo := bundle.RepoRoot(t)
	src, err := os.ReadFile(filepath.Join(repo, "egress", "rules", "types.go"))
	if err != nil {
		t.Fatal(err)
	}
	const anchor = "type Rules struct {\n"
	if !strings.Contains(string(src), anchor) {
		t.Fatalf("egress/rules/types.go has no %q", anchor)
	}
	newer := strings.Replace(string(src), anchor, anchor+"\tTLSInspection bool `json:\"tls_inspection\"`\n", 1)
	dir := t.TempDir()
	types := filepath.Join(dir, "types.go")
	writeFile(t, types, newer)
	overlay, _ := json.Marshal(map[string]any{"Replace": map[string]string{filepath.Join(repo, "egress", "rules", "types.go"): types}})
	writeFile(t, filepath.Join(dir, "overlay.json"), string(overlay))
	out := filepath.Join(dir, "clawrun")
	cmd := exec.Command("go", "build", "-overlay", filepath.Join(dir, "overlay.json"),
		"-tags", "seccomp netgo osusergo urfave_cli_no_docs", "-o", out, "./cmd/clawrun")
	cmd.Dir = repo
	cmd.Env = append(os.Environ(), "CGO_ENABLED=1")
	if msg, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("building a newer clawrun: %v\n%s", err, msg)
	}
	return out
}

// TestEgressRulesVersionSkew: a newer clawrun's rules, with a field the
// running filter does not know, are refused whole: `policy apply` fails
// and says why, the old generation still decides (an allowed name still
// works, the new one is still denied), state and audit show the refusal,
// and a later valid generation still applies.
func TestEgressRulesVersionSkew(t *testing.T) {
	r, fn := egressRuntime(t)
	newer := buildNewerClawrun(t)
	c := fn.startPolicy(r, policyDoc(`  web:
    endpoints:
      - {host: allowed.test, port: 443}
`))
	gen2 := writeTemp(t, "gen2.yaml", policyDoc(`  web:
    endpoints:
      - {host: allowed.test, port: 443}
      - {host: denied.test, port: 443}
`))
	rn := *r
	rn.bin = newer
	res := rn.run(append(fn.globals(), "policy", "apply", c.id, gen2)...)
	assertFailure(t, res, "tls_inspection")

	lm := c.logMark()
	c.checks(
		fn.allowedTLS("after the refused generation: allowed.test"),
		fn.deniedSNI("after the refused generation: denied.test", fn.ip(hDenied), "denied.test"),
	)
	for _, d := range c.decisions()[lm:] {
		if d.Generation != 1 {
			t.Errorf("after the refused generation, a decision of generation %d: %s", d.Generation, d)
		}
	}
	if st := c.egressState(); !strings.HasPrefix(st, "filtering (generation 1)") || !strings.Contains(st, "tls_inspection") {
		t.Errorf("state: egress %q, want generation 1 and the refusal's cause", st)
	}
	audit := r.ok(append(fn.globals(), "audit", c.id)...)
	if !strings.Contains(audit.Stderr, "tls_inspection") {
		t.Errorf("audit does not show the filter's last failure:\nstdout:\n%s\nstderr:\n%s", tail(audit.Stdout, 5), audit.Stderr)
	}

	// This clawrun's rules of the same policy load.
	res = r.ok(append(fn.globals(), "policy", "apply", c.id, gen2)...)
	if !strings.Contains(res.Stdout, "generation 2") {
		t.Errorf("policy apply: %q does not name generation 2", res.Stdout)
	}
	if st := c.egressState(); !strings.HasPrefix(st, "filtering (generation 2)") {
		t.Errorf("state: egress %q, want filtering (generation 2)", st)
	}
	c.check(echeck{name: "generation 2: denied.test is allowed",
		args: []string{"tls", "denied.test", "443", "denied.test"},
		out:  "OK cn=denied.test verify=ok",
		dec:  []want{connWant("tls", "denied.test", 443, "allow", "allowed")},
		saw:  []seen{sawTLS("denied.test", fn.ip(hDenied))}})
}

// TestEgressFilterFailureCause: when the filter's worker dies, state says
// why in the worker's own words (not "exit status 1"), and `policy apply`
// fails while no worker can load the new generation.
func TestEgressFilterFailureCause(t *testing.T) {
	r, fn := egressRuntime(t)
	c := fn.startPolicy(r, policyDoc(`  web:
    endpoints:
      - {host: allowed.test, port: 443}
`))
	st := c.status()

	// Killed: the signal is the cause.
	if err := syscall.Kill(st.Worker, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	var now egressStatus
	waitFor(t, 10*time.Second, "a new worker", func() bool {
		now = c.status()
		return now.State == "running" && now.Worker != st.Worker && pidAlive(now.Worker)
	})
	if s := c.egressState(); !strings.HasPrefix(s, "filtering (generation 1)") || !strings.Contains(s, "SIGKILL") {
		t.Errorf("after the worker was killed, state says egress %q: want filtering, and that it was killed by SIGKILL", s)
	}

	// A worker that cannot start: its decision log cannot be opened.
	if err := os.Remove(c.log); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(c.log, 0o700); err != nil {
		t.Fatal(err)
	}
	defer os.Remove(c.log)
	if err := syscall.Kill(now.Worker, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	var s string
	waitFor(t, 10*time.Second, "state to say why the worker cannot start", func() bool {
		s = c.egressState()
		return strings.Contains(s, "is a directory")
	})
	if !strings.HasPrefix(s, "down") {
		t.Errorf("state: egress %q, want down", s)
	}
	gen2 := writeTemp(t, "gen2.yaml", policyDoc(`  web:
    endpoints:
      - {host: denied.test, port: 443}
`))
	res := r.run(append(fn.globals(), "policy", "apply", c.id, gen2)...)
	assertFailure(t, res, "is a directory")
	// No worker: nothing gets out (the decision log cannot be read here).
	em := fn.Mark()
	if line := c.probe("tls", "allowed.test", "443", "allowed.test"); !strings.HasPrefix(line, "ERR ") {
		t.Errorf("worker down: allowed TLS: got %q, want an error", line)
	}
	if len(fn.Since(em)) > 0 {
		t.Errorf("worker down: the fake internet received:%s", fn.Dump(em))
	}

	// Once it can start again, it does, with generation 1.
	if err := os.Remove(c.log); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 15*time.Second, "the worker to run again", func() bool {
		s = c.egressState()
		return strings.HasPrefix(s, "filtering (generation 1)")
	})
	c.check(fn.allowedTLS("worker back: allowed TLS"))
}

// withPidsLimit caps the number of tasks in the container's cgroup.
func withPidsLimit(n int64) func(*specs.Spec) {
	return func(s *specs.Spec) {
		if s.Linux.Resources == nil {
			s.Linux.Resources = &specs.LinuxResources{}
		}
		s.Linux.Resources.Pids = &specs.LinuxPids{Limit: &n}
	}
}

// TestEgressFilterOutsideCgroup: the filter runs outside the container's
// cgroup, so the container's limits neither bound it nor count it. None of
// the filter's processes is in any of the container's cgroups; it has more
// tasks than the container's pids limit allows; with the container at that
// limit (it cannot start a process) the supervisor still starts a new
// worker, which decides new connections; and memory the worker takes
// (half-sent ClientHellos it holds) is charged to its own memory cgroup,
// limited to 256 MiB, not to the container's (limited to 64 MiB).
func TestEgressFilterOutsideCgroup(t *testing.T) {
	r, fn := egressRuntime(t)
	const pidsMax = 10
	c := fn.startPolicy(r, policyDoc(`  web:
    endpoints:
      - {host: allowed.test, port: 443}
`), withPidsLimit(pidsMax), withMemoryLimit(64<<20))
	init := r.state(c.id).Pid
	st := c.status()
	tasks := 0
	for _, pid := range []int{st.Supervisor, st.Worker} {
		tasks += taskCount(t, pid)
		for _, ctl := range []string{"pids", "memory", "cpu", "freezer"} {
			if cg, own := cgroupDirOf(t, pid, ctl), cgroupDirOf(t, init, ctl); cg == own || strings.HasPrefix(cg, own+"/") {
				t.Errorf("filter process %d is in the container's %s cgroup %s", pid, ctl, cg)
			}
		}
	}
	if tasks <= pidsMax {
		t.Fatalf("the filter has %d tasks, not more than the container's pids limit %d: the numbers cannot tell whether the limit bounds it", tasks, pidsMax)
	}

	// The container at its pids limit: it cannot start a process.
	pidsDir := cgroupDirOf(t, init, "pids")
	r.ok(append(fn.globals(), "exec", "-d", c.id, "sh", "-c", "i=0; while [ $i -lt 50 ]; do sleep 1000 & i=$((i+1)); done 2>/dev/null; wait")...)
	waitFor(t, 10*time.Second, "the container to reach its pids limit", func() bool {
		return readTrim(t, filepath.Join(pidsDir, "pids.current")) == strconv.Itoa(pidsMax)
	})
	if res := r.run(append(fn.globals(), "exec", c.id, "true")...); res.Code == 0 {
		t.Fatalf("control: the container at its pids limit still started a process:\n%s", res)
	}

	// The filter is not: a killed worker is replaced and decides.
	if err := syscall.Kill(st.Worker, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	var now egressStatus
	waitFor(t, 10*time.Second, "a new worker", func() bool {
		now = c.status()
		return now.State == "running" && now.Worker != st.Worker && pidAlive(now.Worker)
	})
	lm := c.logMark()
	pool := x509.NewCertPool()
	pool.AddCert(fn.CA())
	conn := tls.Client(c.netnsDial(fn.ip(hAllowed), 443), &tls.Config{ServerName: "allowed.test", RootCAs: pool})
	if err := conn.Handshake(); err != nil {
		t.Errorf("the new worker, the container at its pids limit: TLS to allowed.test: %v", err)
	}
	conn.Close()
	c.waitDecision(lm, connWant("tls", "allowed.test", 443, "allow", "allowed"))
	t.Logf("container: pids %s of %d; filter: %d tasks, worker %d replaced by %d",
		readTrim(t, filepath.Join(pidsDir, "pids.current")), pidsMax, tasks, st.Worker, now.Worker)

	// Memory: what the worker holds is charged to its cgroup only.
	wdir, wlimit := memoryLimit(t, now.Worker)
	cdir, climit := memoryLimit(t, init)
	if wlimit != 256<<20 || climit != 64<<20 {
		t.Errorf("memory limits: the worker's %d (%s), the container's %d (%s); want 256 MiB and 64 MiB", wlimit, wdir, climit, cdir)
	}
	wBefore, cBefore := memoryUsage(t, wdir), memoryUsage(t, cdir)
	// The start of a ClientHello of 60 KiB (its first record, of 16 KiB,
	// not all sent): the filter keeps what it read and waits for the rest.
	const held, each = 200, 12 << 10
	hello := append([]byte{0x16, 0x03, 0x01, 0x40, 0x00, 0x01, 0x00, 0xf0, 0x00}, make([]byte, each)...)
	for range held {
		conn := c.netnsDial(fn.ip(hDenied), 443)
		if _, err := conn.Write(hello); err != nil {
			t.Fatal(err)
		}
		c.waitFilterRead(conn)
	}
	wGrew, cGrew := memoryUsage(t, wdir)-wBefore, memoryUsage(t, cdir)-cBefore
	t.Logf("%d half-sent ClientHellos of %d KiB held: the worker's cgroup grew by %d KiB, the container's by %d KiB", held, each>>10, wGrew>>10, cGrew>>10)
	if wGrew < held*each/2 || cGrew > held*each/8 {
		t.Errorf("the worker's cgroup grew by %d KiB and the container's by %d KiB: want the worker charged for the %d KiB it holds, not the container", wGrew>>10, cGrew>>10, held*each>>10)
	}
}

// taskCount is how many threads process pid has.
func taskCount(t *testing.T, pid int) int {
	t.Helper()
	ents, err := os.ReadDir(fmt.Sprintf("/proc/%d/task", pid))
	if err != nil {
		t.Fatal(err)
	}
	return len(ents)
}

// memoryUsage is a memory cgroup's current usage in bytes.
func memoryUsage(t *testing.T, dir string) int64 {
	t.Helper()
	for _, f := range []string{"memory.current", "memory.usage_in_bytes"} {
		if data, err := os.ReadFile(filepath.Join(dir, f)); err == nil {
			n, err := strconv.ParseInt(strings.TrimSpace(string(data)), 10, 64)
			if err != nil {
				t.Fatalf("%s/%s: %q", dir, f, data)
			}
			return n
		}
	}
	t.Fatalf("no memory usage file in %s", dir)
	return 0
}
