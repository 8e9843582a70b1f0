package integration

import (
	"fmt"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/opencontainers/runtime-spec/specs-go"

	"github.com/clawrun/clawrun/landlock"
)

// auditOff is what audit says of file denials while the host's audit is off.
const auditOff = "file denials: not reported: the host's audit is off (auditctl -e 1 turns it on)"

// TestPolicyAuditFileDenials: with the host's audit on, `clawrun audit`
// shows the Landlock denials of a container's init and of a process exec'd
// in it (the path and the access refused), not its allowed writes, and not
// another container's denials. With audit off it says so in one line.
func TestPolicyAuditFileDenials(t *testing.T) {
	if abi := landlock.ABI(); abi < 7 {
		t.Skipf("kernel lacks Landlock ABI 7 (it has %d): denials are logged from ABI 7 (Linux 6.15) on", abi)
	}
	r := policyRuntime(t)
	setAudit(t, 1)
	// Without an audit daemon the kernel prints the records to its log
	// under printk's rate limit (10 in 5 s), which a few denials and the
	// machine's other audit records exceed.
	setSysctl(t, "/proc/sys/kernel/printk_ratelimit_burst", "10000")

	a, b := newID(t), newID(t)
	bundleA := r.probeBundle(withPolicy("agent-default"), func(s *specs.Spec) {
		s.Process.Args = []string{"sh", "-c", "echo no > /srv/denied-init.txt; echo yes > /tmp/allowed-init.txt; echo ready; sleep 60"}
	})
	writeRootfs(t, bundleA, "/srv/denied-init.txt", "", 0o644)
	writeRootfs(t, bundleA, "/srv/denied-exec.txt", "", 0o644)
	r.runReady(a, bundleA, "ready")
	r.ok("exec", a, "sh", "-c", "echo no > /srv/denied-exec.txt; echo yes > /tmp/allowed-exec.txt; true")
	if got := readFile(inRootfs(bundleA, "/tmp/allowed-exec.txt")); got != "yes\n" {
		t.Fatalf("the allowed write of the exec'd process did not happen: %q", got)
	}
	if got := readFile(inRootfs(bundleA, "/srv/denied-exec.txt")); got != "" {
		t.Fatalf("the denied write happened: %q", got)
	}

	bundleB := r.probeBundle(withPolicy("agent-default"), func(s *specs.Spec) {
		s.Process.Args = []string{"sh", "-c", "echo no > /srv/denied-other.txt; echo ready; sleep 60"}
	})
	writeRootfs(t, bundleB, "/srv/denied-other.txt", "", 0o644)
	r.runReady(b, bundleB, "ready")

	// The kernel's audit thread prints the records asynchronously: a
	// denial just made may not be in the kernel's log yet.
	deniedWrites := func(out string, paths ...string) bool {
		for _, path := range paths {
			if line := lineWith(out, path); !strings.Contains(line, "deny") || !strings.Contains(line, "fs.write_file") {
				return false
			}
		}
		return true
	}
	res := auditUntil(t, 10*time.Second, "the denied writes of its init and of its exec'd process", func() result { return r.ok("audit", a) },
		func(res result) bool { return deniedWrites(res.Stdout, "/srv/denied-init.txt", "/srv/denied-exec.txt") })
	t.Logf("audit %s:\n%s%s", a, res.Stdout, res.Stderr)
	for _, absent := range []string{"allowed", "denied-other"} {
		if strings.Contains(res.Stdout, absent) {
			t.Errorf("audit of %s shows %q:\n%s", a, absent, res.Stdout)
		}
	}
	if strings.Contains(res.Stderr, "not reported") {
		t.Errorf("audit says file denials are not reported while audit is on:\n%s", res.Stderr)
	}
	resB := auditUntil(t, 10*time.Second, "its denied write", func() result { return r.ok("audit", b) },
		func(res result) bool { return deniedWrites(res.Stdout, "/srv/denied-other.txt") })
	if strings.Contains(resB.Stdout, "denied-init") {
		t.Errorf("audit of %s shows another container's denial:\n%s", b, resB)
	}

	setAudit(t, 0)
	if res := r.ok("audit", a); !strings.Contains(res.Stderr, auditOff) {
		t.Errorf("audit with the host's audit off does not say so:\n%s", res)
	}
}

// TestPolicyAuditFileDenialsBesideEgress: a container with an egress filter
// gets its file denials and its egress decisions on one list, in time
// order.
func TestPolicyAuditFileDenialsBesideEgress(t *testing.T) {
	if abi := landlock.ABI(); abi < 7 {
		t.Skipf("kernel lacks Landlock ABI 7 (it has %d): denials are logged from ABI 7 (Linux 6.15) on", abi)
	}
	r, fn := egressRuntime(t)
	setAudit(t, 1)
	setSysctl(t, "/proc/sys/kernel/printk_ratelimit_burst", "10000")
	doc := "version: 1\nfilesystem_policy:\n  read_only: [/]\n  read_write: [/tmp, /dev/null]\n" +
		"network_policies:\n  web:\n    endpoints:\n      - {host: allowed.test, port: 443}\n"
	b := fn.egressBundle(r, withInline(doc))
	writeRootfs(t, b, "/srv/denied.txt", "", 0o644)
	c := fn.start(r, b)
	c.expect("ERR NXDOMAIN", "dns", fn.ip(hDNS), "before.test")
	if out := c.exec("sh", "-c", "echo no > /srv/denied.txt; echo yes > /tmp/allowed.txt; echo done"); out != "done" {
		t.Fatalf("exec: %q", out)
	}
	c.expect("ERR NXDOMAIN", "dns", fn.ip(hDNS), "after.test")

	// The file denial reaches the kernel's log asynchronously.
	res := auditUntil(t, 10*time.Second, "the file denial", func() result { return r.ok(append(fn.globals(), "audit", c.id)...) },
		func(res result) bool { return strings.Contains(res.Stdout, "/srv/denied.txt") })
	t.Logf("audit %s:\n%s%s", c.id, res.Stdout, res.Stderr)
	order := []string{"before.test", "/srv/denied.txt", "after.test"}
	last := -1
	for _, s := range order {
		i := strings.Index(res.Stdout, s)
		if i < 0 || i < last {
			t.Fatalf("audit does not list %q in time order %q:\n%s", s, order, res.Stdout)
		}
		last = i
	}
	if !strings.Contains(lineWith(res.Stdout, "/srv/denied.txt"), "fs.write_file") || strings.Contains(res.Stdout, "allowed.txt") {
		t.Errorf("audit's file denials:\n%s", res.Stdout)
	}
}

// TestPolicyAuditFileDenialsFromAuditd: while an audit daemon runs, the
// kernel hands it the records instead of printing them, and audit reads
// them from its log.
func TestPolicyAuditFileDenialsFromAuditd(t *testing.T) {
	if abi := landlock.ABI(); abi < 7 {
		t.Skipf("kernel lacks Landlock ABI 7 (it has %d): denials are logged from ABI 7 (Linux 6.15) on", abi)
	}
	r := policyRuntime(t)
	setAudit(t, 1)
	runAuditd(t)
	id := newID(t)
	b := r.probeBundle(withPolicy("agent-default"), func(s *specs.Spec) {
		s.Process.Args = []string{"sh", "-c", "echo no > /srv/denied-auditd.txt; echo ready; sleep 60"}
	})
	writeRootfs(t, b, "/srv/denied-auditd.txt", "", 0o644)
	r.runReady(id, b, "ready")
	// auditd writes asynchronously.
	var res result
	waitFor(t, 10*time.Second, "audit to show the denial from auditd's log", func() bool {
		res = r.ok("audit", id)
		return strings.Contains(lineWith(res.Stdout, "/srv/denied-auditd.txt"), "fs.write_file")
	})
	t.Logf("audit %s:\n%s%s", id, res.Stdout, res.Stderr)
}

// auditUntil runs audit until its result shows what ok looks for, and
// fails with the last result and the kernel's audit records after timeout:
// the kernel writes the records asynchronously.
func auditUntil(t *testing.T, timeout time.Duration, what string, audit func() result, ok func(result) bool) result {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		res := audit()
		if ok(res) {
			return res
		}
		if time.Now().After(deadline) {
			kmsg, _ := exec.Command("dmesg").CombinedOutput()
			var records []string
			for _, line := range strings.Split(string(kmsg), "\n") {
				if strings.Contains(line, "type=142") {
					records = append(records, line)
				}
			}
			t.Fatalf("audit does not show %s after %v:\n%s\nthe kernel's Landlock records:\n%s", what, timeout, res, strings.Join(records[max(0, len(records)-10):], "\n"))
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// runAuditd runs an audit daemon (auditd's own configuration: its log in
// /var/log/audit) until the end of the test, unless one runs already.
func runAuditd(t *testing.T) {
	t.Helper()
	if auditdPid(t) != 0 {
		return
	}
	if err := os.MkdirAll("/var/log/audit", 0o750); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("auditd", "-n")
	if err := cmd.Start(); err != nil {
		t.Fatalf("auditd (contrib/install-deps.sh installs it): %v", err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		_ = cmd.Wait()
	})
	waitFor(t, 10*time.Second, "auditd to register with the kernel", func() bool { return auditdPid(t) == cmd.Process.Pid })
}

// auditdPid is the pid of the audit daemon the kernel knows, 0 for none.
func auditdPid(t *testing.T) int {
	t.Helper()
	return auditStatusField(t, "pid")
}

// auditStatusField is a number of auditctl -s.
func auditStatusField(t *testing.T, name string) int {
	t.Helper()
	out, err := exec.Command("auditctl", "-s").CombinedOutput()
	if err != nil {
		t.Fatalf("auditctl -s (contrib/install-deps.sh installs auditd): %v\n%s", err, out)
	}
	for _, line := range strings.Split(string(out), "\n") {
		if v, ok := strings.CutPrefix(line, name+" "); ok {
			var n int
			if _, err := fmt.Sscan(v, &n); err == nil {
				return n
			}
		}
	}
	t.Fatalf("auditctl -s has no %s:\n%s", name, out)
	return 0
}

// lineWith is the first line of text that contains s.
func lineWith(text, s string) string {
	for _, line := range strings.Split(text, "\n") {
		if strings.Contains(line, s) {
			return line
		}
	}
	return ""
}

// setAudit turns the host's audit on or off (auditctl -e), and back to
// what it was at the end of the test.
func setAudit(t *testing.T, enabled int) {
	t.Helper()
	was := auditStatusField(t, "enabled")
	if was == 2 {
		t.Fatal("the host's audit configuration is locked (enabled 2): it cannot be turned off and back")
	}
	auditctl := func(v int) error {
		out, err := exec.Command("auditctl", "-e", fmt.Sprint(v)).CombinedOutput()
		if err != nil {
			return fmt.Errorf("auditctl -e %d: %v\n%s", v, err, out)
		}
		return nil
	}
	if err := auditctl(enabled); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := auditctl(was); err != nil {
			t.Error(err)
		}
	})
}

// setSysctl writes a /proc/sys file until the end of the test.
func setSysctl(t *testing.T, path, value string) {
	t.Helper()
	was, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(value), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := os.WriteFile(path, was, 0o644); err != nil {
			t.Error(err)
		}
	})
}
