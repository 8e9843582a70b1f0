package integration

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// TestEgressLogDirFaults: the decision log's directory fills up, or is
// read-only. The filter goes on deciding (nothing it denies gets out,
// what it allows works), and says that its log is incomplete; a filter
// that cannot open its log at all refuses to start, and nothing is left.
func TestEgressLogDirFaults(t *testing.T) {
	r, fn := egressRuntime(t)
	doc := withInline(policyDoc("  web:\n    endpoints:\n      - {host: allowed.test, port: 443}\n"))
	configWith := func(logDir string) string {
		cfg := fmt.Sprintf("egress:\n  upstream_dns: [%q]\n  allowed_upstream_ranges: [%q, %q]\n  log_dir: %s\n",
			fn.ip(hDNS)+":53", fn.Prefix(blockLink), fn.Prefix6(blockLink), logDir)
		return writeTemp(t, "config.yaml", cfg)
	}

	t.Run("full", func(t *testing.T) {
		dir := tmpfs(t, "size=64k")
		config := configWith(dir)
		b := fn.egressBundle(r, doc)
		id := newID(t)
		r.track(id)
		r.ok("--config", config, "run", "-d", "--bundle", b, id)
		r.waitStatus(id, "running")
		c := &ectr{t: t, r: r, fn: fn, id: id, bundle: b, log: filepath.Join(dir, id+".egress.jsonl")}
		c.check(fn.allowedTLS("allowed.test")) // logged: the log works
		fill(t, dir)

		// The log file's last page may still take a few lines: denied
		// queries (each its own name, so none is aggregated) until the
		// filter says its writes fail.
		var st string
		for i := 0; ; i++ {
			c.probe("dns", fn.ip(hDNS), fmt.Sprintf("n%d.other.test", i))
			st = r.fullState(id).Clawrun.Egress
			if strings.Contains(st, "decisions are not being recorded") {
				break
			}
			if i == 100 {
				t.Fatalf("after %d decisions on a full log_dir, state says %q", i, st)
			}
		}
		if !strings.Contains(st, "no space left on device") {
			t.Errorf("state while the log is full: %q, want the cause", st)
		}
		t.Logf("state, log full: %s", st)

		// Decided as before, recorded nowhere.
		logged := c.logMark()
		c.checks(
			echeck{name: "allowed TLS, log full", args: []string{"tls", "allowed.test", "443", "allowed.test"},
				out: "OK cn=allowed.test verify=ok", saw: []seen{sawTLS("allowed.test", fn.ip(hAllowed))}},
			echeck{name: "denied SNI, log full", args: []string{"tls", fn.ip(hDenied), "443", "denied.test"},
				out: "ERR EOF|ERR ECONNRESET", never: []seen{sawConnTo(fn.ip(hDenied), 443)}},
			echeck{name: "denied name, log full", args: []string{"dns", fn.ip(hDNS), "other.test"},
				out: "ERR NXDOMAIN", never: []seen{queryContaining("other.test")}},
		)
		if n := c.logMark(); n != logged {
			t.Errorf("the full log took %d more decisions", n-logged)
		}
		audit := r.ok("audit", id)
		if !strings.Contains(audit.Stderr, "this log is incomplete") {
			t.Errorf("audit while the log is full does not say it is incomplete:\n%s", audit)
		}

		// Room again: the log works, and state keeps what was lost.
		if err := os.Remove(filepath.Join(dir, "fill")); err != nil {
			t.Fatal(err)
		}
		c.check(fn.allowedTLS("allowed.test"))
		waitFor(t, 10*time.Second, "state saying how many decisions were lost", func() bool {
			st = r.fullState(id).Clawrun.Egress
			return !strings.Contains(st, "are not being recorded") && strings.Contains(st, "decisions were not recorded")
		})
		t.Logf("state, log writable again: %s", st)
	})

	t.Run("read-only", func(t *testing.T) {
		dir := tmpfs(t, "ro")
		b := fn.egressBundle(r, doc)
		id := newID(t)
		r.track(id)
		res := r.run("--config", configWith(dir), "create", "--bundle", b, id)
		assertFailure(t, res, "egress filter", "read-only file system")
		r.assertGone(id, b)
		if procs := filterProcs(filepath.Join(r.root, id)); len(procs) > 0 {
			t.Errorf("filter processes left: %v", procs)
		}
	})
}

// tmpfs mounts a tmpfs with the given options on a new directory, for the
// test's life.
func tmpfs(t *testing.T, opts string) string {
	t.Helper()
	dir := t.TempDir()
	if err := unix.Mount("tmpfs", dir, "tmpfs", 0, opts); err != nil {
		t.Fatalf("mount tmpfs (%s) on %s: %v", opts, dir, err)
	}
	t.Cleanup(func() {
		if err := unix.Unmount(dir, unix.MNT_DETACH); err != nil {
			t.Errorf("unmount %s: %v", dir, err)
		}
	})
	return dir
}

// fill writes dir/fill until its filesystem is full.
func fill(t *testing.T, dir string) {
	t.Helper()
	f, err := os.Create(filepath.Join(dir, "fill"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	buf := make([]byte, 4096)
	for {
		if _, err := f.Write(buf); err != nil {
			if !errors.Is(err, syscall.ENOSPC) {
				t.Fatalf("filling %s: %v", dir, err)
			}
			return
		}
	}
}
