package landlock

import (
	"errors"
	"os"
	"path/filepath"
	"runtime"
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
