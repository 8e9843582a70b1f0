package sibling

import (
	"os"
	"path/filepath"
	"testing"
)

// TestFind: the test binary's own directory is searched; a file that is
// not executable, a directory and a missing name are not found.
func TestFind(t *testing.T) {
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Dir(self)
	if p, ok := Find(filepath.Base(self)); !ok || p != self {
		t.Errorf("Find(itself) = %q, %v", p, ok)
	}
	plain := filepath.Join(dir, "sibling-not-executable")
	if err := os.WriteFile(plain, []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	defer os.Remove(plain)
	sub := filepath.Join(dir, "sibling-dir")
	if err := os.Mkdir(sub, 0o755); err != nil {
		t.Fatal(err)
	}
	defer os.Remove(sub)
	for _, name := range []string{"sibling-not-executable", "sibling-dir", "sibling-missing"} {
		if p, ok := Find(name); ok {
			t.Errorf("Find(%q) = %q, want not found", name, p)
		}
	}
}
