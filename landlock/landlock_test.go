package landlock

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// onRestrictedThread runs fn on a fresh OS thread restricted by layer. The
// thread is never unlocked, so the Go runtime discards it afterwards and
// the restriction cannot leak into the rest of the test binary.
func onRestrictedThread(t *testing.T, layer Layer, strict bool, fn func(Result, error)) {
	t.Helper()
	done := make(chan struct{})
	go func() {
		defer close(done)
		runtime.LockOSThread()
		res, err := Restrict(layer, strict)
		fn(res, err)
	}()
	<-done
}

func requireLandlock(t *testing.T) {
	if ABI() < 1 {
		t.Skip("kernel lacks Landlock")
	}
}

func TestRestrictReadOnlyAndReadWrite(t *testing.T) {
	requireLandlock(t)
	ro, rw, other := t.TempDir(), t.TempDir(), t.TempDir()
	for _, d := range []string{ro, rw, other} {
		if err := os.WriteFile(filepath.Join(d, "f"), []byte("x"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	onRestrictedThread(t, Layer{ReadOnly: []string{ro}, ReadWrite: []string{rw, "/dev/null"}}, true, func(res Result, err error) {
		if err != nil {
			t.Errorf("Restrict: %v", err)
			return
		}
		if res.Rules != 3 || len(res.Skipped) != 0 {
			t.Errorf("result = %+v, want 3 rules and nothing skipped", res)
		}
		// Positive controls.
		if _, err := os.ReadFile(filepath.Join(ro, "f")); err != nil {
			t.Errorf("read under read_only: %v", err)
		}
		if err := os.WriteFile(filepath.Join(rw, "new"), []byte("y"), 0o644); err != nil {
			t.Errorf("write under read_write: %v", err)
		}
		if f, err := os.OpenFile("/dev/null", os.O_WRONLY, 0); err != nil {
			t.Errorf("write /dev/null (a file rule): %v", err)
		} else {
			f.Close()
		}
		// The forbidden things fail with EACCES.
		for name, op := range map[string]func() error{
			"write under read_only":    func() error { return os.WriteFile(filepath.Join(ro, "f"), []byte("z"), 0o644) },
			"create under read_only":   func() error { return os.WriteFile(filepath.Join(ro, "n"), nil, 0o644) },
			"remove under read_only":   func() error { return os.Remove(filepath.Join(ro, "f")) },
			"truncate under read_only": func() error { return os.Truncate(filepath.Join(ro, "f"), 0) },
			"read unlisted":            func() error { _, err := os.ReadFile(filepath.Join(other, "f")); return err },
			"rename rw into ro":        func() error { return os.Rename(filepath.Join(rw, "new"), filepath.Join(ro, "moved")) },
			"hardlink rw into ro":      func() error { return os.Link(filepath.Join(rw, "new"), filepath.Join(ro, "link")) },
			"symlink in ro":            func() error { return os.Symlink("/etc/passwd", filepath.Join(ro, "sym")) },
		} {
			err := op()
			if !errors.Is(err, unix.EACCES) && !errors.Is(err, unix.EXDEV) {
				t.Errorf("%s: got %v, want EACCES or EXDEV", name, err)
			}
		}
	})
	// The rest of the process is untouched.
	if _, err := os.ReadFile(filepath.Join(other, "f")); err != nil {
		t.Fatalf("restriction leaked out of its thread: %v", err)
	}
}

func TestRestrictSkipsMissingPathsUnlessStrict(t *testing.T) {
	requireLandlock(t)
	dir := t.TempDir()
	missing := filepath.Join(dir, "missing")
	onRestrictedThread(t, Layer{ReadOnly: []string{dir, missing}}, false, func(res Result, err error) {
		if err != nil {
			t.Errorf("best effort: %v", err)
		}
		if len(res.Skipped) != 1 || res.Skipped[0].Path != missing {
			t.Errorf("skipped = %+v, want %s", res.Skipped, missing)
		}
	})
	onRestrictedThread(t, Layer{ReadOnly: []string{dir, missing}}, true, func(res Result, err error) {
		if err == nil {
			t.Error("strict: a missing path must fail")
		}
		// Nothing was enforced: the thread can still write anywhere.
		if werr := os.WriteFile(filepath.Join(dir, "w"), nil, 0o644); werr != nil {
			t.Errorf("a failed strict restrict enforced something: %v", werr)
		}
	})
}

func TestRestrictTCPConnect(t *testing.T) {
	if ABI() < 4 {
		t.Skipf("kernel lacks Landlock ABI 4 (TCP rules): it has ABI %d", ABI())
	}
	ln, err := newListener(t)
	if err != nil {
		t.Fatal(err)
	}
	onRestrictedThread(t, Layer{ReadWrite: []string{"/"}, TCPConnect: []uint16{1}}, true, func(_ Result, err error) {
		if err != nil {
			t.Errorf("Restrict: %v", err)
			return
		}
		if err := dialRaw(ln); !errors.Is(err, unix.EACCES) {
			t.Errorf("connect to a port not in tcp_connect: got %v, want EACCES", err)
		}
	})
	if err := dialRaw(ln); err != nil {
		t.Fatalf("positive control: %v", err)
	}
}

// mkTree makes directories (ending in "/"), files and symlinks ("name ->
// target") under dir.
func mkTree(t *testing.T, dir string, entries ...string) {
	t.Helper()
	for _, e := range entries {
		name, target, isLink := strings.Cut(e, " -> ")
		p := filepath.Join(dir, name)
		var err error
		switch {
		case isLink:
			err = os.Symlink(target, p)
		case strings.HasSuffix(name, "/"):
			err = os.MkdirAll(p, 0o755)
		default:
			err = os.WriteFile(p, []byte("x"), 0o644)
		}
		if err != nil {
			t.Fatal(err)
		}
	}
}

func skippedOf(res Result, path string) (SkippedPath, bool) {
	for _, s := range res.Skipped {
		if s.Path == path {
			return s, true
		}
	}
	return SkippedPath{}, false
}

// A path that is, or passes through, a symlink gets no rule: "read-write
// DIR/link" with link -> / must not become read-write /.
func TestRestrictRefusesSymlinks(t *testing.T) {
	requireLandlock(t)
	dir, other := t.TempDir(), t.TempDir()
	mkTree(t, dir, "real/", "elsewhere/sub/", "toroot -> /", "linkdir -> elsewhere")
	toRoot, via, real := filepath.Join(dir, "toroot"), filepath.Join(dir, "linkdir", "sub"), filepath.Join(dir, "real")
	// /proc/1/root may not be readable (ptrace access): its target is
	// then "?".
	layer := Layer{ReadOnly: []string{"/proc/self/root", "/proc/1/root"}, ReadWrite: []string{real, toRoot, via}}
	onRestrictedThread(t, layer, false, func(res Result, err error) {
		if err != nil {
			t.Errorf("best effort: %v", err)
			return
		}
		for path, link := range map[string]string{toRoot: toRoot + " -> /", via: filepath.Join(dir, "linkdir") + " -> elsewhere", "/proc/self/root": "/proc/self -> ", "/proc/1/root": "/proc/1/root -> "} {
			if s, ok := skippedOf(res, path); !ok || s.Covered || !strings.Contains(s.Reason, "symlink "+link) {
				t.Errorf("%s: skipped as %+v, want a reason naming the symlink %q, not covered", path, s, link)
			}
		}
		if res.Rules != 1 || !res.Degraded() {
			t.Errorf("result %+v: want 1 rule (%s) and degraded", res, real)
		}
		if err := os.WriteFile(filepath.Join(other, "x"), nil, 0o644); !errors.Is(err, unix.EACCES) {
			t.Errorf("write outside the policy through the symlinks: got %v, want EACCES", err)
		}
		if err := os.WriteFile(filepath.Join(real, "x"), nil, 0o644); err != nil {
			t.Errorf("positive control, write under %s: %v", real, err)
		}
	})
	onRestrictedThread(t, Layer{ReadWrite: []string{real, toRoot}}, true, func(_ Result, err error) {
		if err == nil || !strings.Contains(err.Error(), "path "+toRoot+": symlink "+toRoot+" -> /") {
			t.Errorf("strict: got %v, want an error naming %s", err, toRoot)
		}
	})
}

// A symlink whose target other rules of the layer already grant, with at
// least its rights, weakens nothing (merged /usr: /bin -> usr/bin).
func TestRestrictCoveredSymlinks(t *testing.T) {
	requireLandlock(t)
	dir := t.TempDir()
	mkTree(t, dir, "usr/bin/", "usr/bin/f", "tmp/", "bin -> usr/bin", "lib -> usr/..", "rwbin -> usr/bin", "tmplink -> tmp",
		"pts/", "pts/ptmx", "ptmx -> pts/ptmx", "null", "stdnull -> null", "binf -> bin/f")
	p := func(name string) string { return filepath.Join(dir, name) }
	layer := Layer{ReadOnly: []string{p("usr"), p("bin"), p("lib"), p("binf")},
		ReadWrite: []string{p("tmp"), p("tmplink"), p("rwbin"), p("pts"), p("ptmx"), p("null"), p("stdnull")}}
	onRestrictedThread(t, layer, false, func(res Result, err error) {
		if err != nil {
			t.Errorf("best effort: %v", err)
			return
		}
		for name, covered := range map[string]bool{
			"bin": true, "tmplink": true,
			// Files: by the directory above, by a rule on the file, and
			// through a symlinked directory.
			"ptmx": true, "stdnull": true, "binf": true,
			// "usr/.." is dir, not beneath usr; read-write is more than
			// read-only usr grants.
			"lib": false, "rwbin": false,
		} {
			s, ok := skippedOf(res, p(name))
			if !ok || s.Covered != covered {
				t.Errorf("%s: skipped as %+v, want covered %v", name, s, covered)
			}
		}
		if s, _ := skippedOf(res, p("bin")); !strings.Contains(s.Reason, "already granted by "+p("usr")) {
			t.Errorf("bin: reason %q does not name %s", s.Reason, p("usr"))
		}
		if _, err := os.ReadFile(p("bin/f")); err != nil {
			t.Errorf("read through the covered symlink: %v", err)
		}
		if err := os.WriteFile(p("rwbin/f"), nil, 0o644); !errors.Is(err, unix.EACCES) {
			t.Errorf("write through the read-write symlink to read-only usr/bin: got %v, want EACCES", err)
		}
	})
	onRestrictedThread(t, Layer{ReadOnly: []string{p("usr"), p("bin")}, ReadWrite: []string{p("tmp"), p("tmplink")}}, true, func(res Result, err error) {
		if err != nil || res.Degraded() {
			t.Errorf("strict with only covered symlinks: %v, %+v", err, res)
		}
	})
}

// Pin resolves beneath the container's root: an absolute symlink there
// points into that root, not the host's.
func TestPinResolvesInRoot(t *testing.T) {
	requireLandlock(t)
	rootfs := t.TempDir()
	mkTree(t, rootfs, "usr/lib/", "tmp/", "lib -> /usr/lib", "sandbox -> /")
	root, err := unix.Open(rootfs, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(root)
	layer := Layer{ReadOnly: []string{"/usr", "/lib"}, ReadWrite: []string{"/tmp"}}
	pinned, err := Pin(root, Layer{ReadOnly: append(layer.ReadOnly, "/missing"), ReadWrite: layer.ReadWrite}, false)
	if err != nil {
		t.Fatal(err)
	}
	var usr unix.Stat_t
	if err := unix.Stat(filepath.Join(rootfs, "usr"), &usr); err != nil {
		t.Fatal(err)
	}
	if got := pinned.Pinned["/usr"]; got != (FileID{Dev: usr.Dev, Ino: usr.Ino}) {
		t.Errorf("/usr pinned to %+v, want the rootfs's usr", got)
	}
	for _, p := range []string{"/lib", "/missing"} {
		if got, ok := pinned.Pinned[p]; !ok || got != (FileID{}) {
			t.Errorf("%s pinned to %+v (%v), want the zero FileID: it gets no rule", p, got, ok)
		}
	}
	// /lib -> /usr/lib is covered by the rootfs's /usr, even under strict.
	if _, err := Pin(root, layer, true); err != nil {
		t.Errorf("strict, /lib covered: %v", err)
	}
	layer.ReadWrite = append(layer.ReadWrite, "/sandbox")
	if _, err := Pin(root, layer, true); err == nil || !strings.Contains(err.Error(), "path /sandbox: symlink /sandbox -> /") {
		t.Errorf("strict, /sandbox -> /: got %v, want an error naming /sandbox", err)
	}
}

// A pinned path gets its rule only while it is the file it was pinned to.
func TestRestrictPinned(t *testing.T) {
	requireLandlock(t)
	dir := t.TempDir()
	mkTree(t, dir, "work/", "other/", "gone/")
	work, gone := filepath.Join(dir, "work"), filepath.Join(dir, "gone")
	root, err := openRoot()
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(root)
	layer, err := Pin(root, Layer{ReadWrite: []string{work, gone}}, true)
	if err != nil {
		t.Fatal(err)
	}
	// JSON carries the pins to the launcher.
	data, err := json.Marshal(layer)
	if err != nil {
		t.Fatal(err)
	}
	var decoded Layer
	if err := json.Unmarshal(data, &decoded); err != nil || len(decoded.Pinned) != 2 {
		t.Fatalf("pins after JSON: %+v, %v", decoded.Pinned, err)
	}
	onRestrictedThread(t, decoded, true, func(res Result, err error) {
		if err != nil || res.Rules != 2 {
			t.Errorf("unchanged paths: %+v, %v", res, err)
		}
		if err := os.WriteFile(filepath.Join(work, "x"), nil, 0o644); err != nil {
			t.Errorf("positive control, write the pinned directory: %v", err)
		}
	})
	// work replaced by another directory, gone by a new one.
	for _, mv := range [][2]string{{work, work + ".old"}, {filepath.Join(dir, "other"), work}} {
		if err := os.Rename(mv[0], mv[1]); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Remove(gone); err != nil {
		t.Fatal(err)
	}
	onRestrictedThread(t, decoded, false, func(res Result, err error) {
		if s, ok := skippedOf(res, work); err != nil || !ok || !strings.Contains(s.Reason, "replaced") || !res.Degraded() {
			t.Errorf("replaced path: %+v, %v", res, err)
		}
		if err := os.WriteFile(filepath.Join(work, "x"), nil, 0o644); !errors.Is(err, unix.EACCES) {
			t.Errorf("write the directory moved into the pinned path: got %v, want EACCES", err)
		}
	})
	onRestrictedThread(t, decoded, true, func(_ Result, err error) {
		if err == nil || !strings.Contains(err.Error(), "path "+work+": replaced") {
			t.Errorf("strict: got %v, want an error naming %s", err, work)
		}
	})
}
