package metrics

import (
	"os"
	"path/filepath"
	"slices"
	"testing"
)

// ExpandRoots: each pattern's directories, in order, each once; a pattern
// that names nothing adds nothing.
func TestExpandRoots(t *testing.T) {
	dir := t.TempDir()
	for _, d := range []string{"runc/k8s.io", "runc/default", "clawrun"} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o700); err != nil {
			t.Fatal(err)
		}
	}
	got, err := ExpandRoots([]string{filepath.Join(dir, "clawrun"), filepath.Join(dir, "runc/*"), filepath.Join(dir, "runc/k8s.io"), filepath.Join(dir, "docker/*")})
	if err != nil {
		t.Fatal(err)
	}
	want := []string{filepath.Join(dir, "clawrun"), filepath.Join(dir, "runc/default"), filepath.Join(dir, "runc/k8s.io")}
	if !slices.Equal(got, want) {
		t.Errorf("got %v, want %v", got, want)
	}
	if _, err := ExpandRoots([]string{"[bad"}); err == nil {
		t.Error("a malformed pattern was accepted")
	}
}

// A root that does not exist holds no containers.
func TestObserveMissingRoot(t *testing.T) {
	obs, err := ObserveRoots([]string{filepath.Join(t.TempDir(), "none")})()
	if err != nil || len(obs) != 0 {
		t.Fatalf("got %v, %v; want nothing", obs, err)
	}
}
