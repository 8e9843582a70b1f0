package runtime

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/opencontainers/runc/libcontainer/exeseal"
	"golang.org/x/sys/unix"
)

// copyExecutable copies /bin/true into a directory of its own, as an
// installed launcher stands next to clawrun.
func copyExecutable(t testing.TB) string {
	t.Helper()
	data, err := os.ReadFile("/bin/true")
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "clawrun-launch")
	if err := os.WriteFile(path, data, 0o755); err != nil {
		t.Fatal(err)
	}
	return path
}

// A read-only view of a binary runs as the binary does, and nobody can
// write it through its descriptor, not even root through /proc: opened
// for writing, it is refused; the file on the host is untouched. The
// control: the installed file itself opens for writing.
func TestReadOnlyView(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Fatal("mounting an overlay needs root: run as root")
	}
	bin := copyExecutable(t)
	want, _ := os.ReadFile(bin)
	view, err := readOnlyView(bin, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer view.Close()

	cmd := exec.Command("/proc/self/fd/3")
	cmd.ExtraFiles = []*os.File{view}
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("running the view: %v %s", err, out)
	}
	path := fmt.Sprintf("/proc/self/fd/%d", view.Fd())
	if got, err := os.ReadFile(path); err != nil || !bytes.Equal(got, want) {
		t.Fatalf("the view reads %d bytes (%v), want the binary's %d", len(got), err, len(want))
	}
	for _, flag := range []int{os.O_WRONLY, os.O_RDWR, os.O_WRONLY | os.O_TRUNC} {
		if f, err := os.OpenFile(path, flag, 0); !errors.Is(err, unix.EROFS) {
			if err == nil {
				f.Close()
			}
			t.Errorf("opening the view with flags %#x: %v, want EROFS", flag, err)
		}
	}
	f, err := os.OpenFile(bin, os.O_WRONLY, 0)
	if err != nil {
		t.Fatalf("control: the installed binary does not open for writing: %v", err)
	}
	f.Close()
	if got, _ := os.ReadFile(bin); !bytes.Equal(got, want) {
		t.Fatal("the installed binary changed")
	}
}

// sealExecutable hands an executable over as a read-only view whose
// second layer is an empty directory of the state dir's own, not the
// state dir (its CA key).
func TestSealExecutableView(t *testing.T) {
	bin := copyExecutable(t)
	stateDir := t.TempDir()
	exe, err := sealExecutable(bin, stateDir)
	if err != nil {
		t.Fatal(err)
	}
	defer exe.Close()
	if link, _ := os.Readlink(fmt.Sprintf("/proc/self/fd/%d", exe.Fd())); link != "/clawrun-launch" {
		t.Fatalf("handed over as %q, want the view (/clawrun-launch)", link)
	}
	ents, err := os.ReadDir(filepath.Join(stateDir, viewLayerDir))
	if err != nil || len(ents) != 0 {
		t.Fatalf("the view's layer in the state dir: %v entries (%v), want an empty directory", len(ents), err)
	}
}

// Where there is no read-only view (here: the state dir does not exist),
// the executable is handed over as a sealed memfd copy that nobody can
// write either.
func TestSealExecutableCopies(t *testing.T) {
	bin := copyExecutable(t)
	want, _ := os.ReadFile(bin)
	exe, err := sealExecutable(bin, filepath.Join(t.TempDir(), "missing"))
	if err != nil {
		t.Fatal(err)
	}
	defer exe.Close()
	path := fmt.Sprintf("/proc/self/fd/%d", exe.Fd())
	if link, _ := os.Readlink(path); !strings.HasPrefix(link, "/memfd:") {
		t.Fatalf("handed over as %q, want a memfd copy", link)
	}
	if got, err := os.ReadFile(path); err != nil || !bytes.Equal(got, want) {
		t.Fatalf("the copy reads %d bytes (%v), want the binary's %d", len(got), err, len(want))
	}
	const sealed = unix.F_SEAL_SEAL | unix.F_SEAL_SHRINK | unix.F_SEAL_GROW | unix.F_SEAL_WRITE
	if seals, err := unix.FcntlInt(exe.Fd(), unix.F_GET_SEALS, 0); err != nil || seals&sealed != sealed {
		t.Fatalf("seals %#x (%v), want at least %#x", seals, err, sealed)
	}
}

// BenchmarkSealLauncher: what a confined start pays to hand the launcher
// over, a read-only view against a sealed copy (make build's
// clawrun-launch when there is one, else /bin/true).
func BenchmarkSealLauncher(b *testing.B) {
	bin, err := filepath.Abs("../bin/clawrun-launch")
	if _, serr := os.Stat(bin); err != nil || serr != nil {
		bin = copyExecutable(b)
	}
	dir := b.TempDir()
	b.Run("view", func(b *testing.B) {
		for b.Loop() {
			f, err := readOnlyView(bin, dir)
			if err != nil {
				b.Fatal(err)
			}
			f.Close()
		}
	})
	b.Run("copy", func(b *testing.B) {
		for b.Loop() {
			src, err := os.Open(bin)
			if err != nil {
				b.Fatal(err)
			}
			st, _ := src.Stat()
			f, err := exeseal.CloneBinary(src, st.Size(), "clawrun-launch", dir)
			src.Close()
			if err != nil {
				b.Fatal(err)
			}
			f.Close()
		}
	})
}
