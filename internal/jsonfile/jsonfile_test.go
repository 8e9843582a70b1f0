package jsonfile

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

// doc is large enough that writing it takes several write(2) calls'
// worth of page cache, and says by itself whether it is whole: every
// byte of Fill is the letter Gen names.
type doc struct {
	Gen  int    `json:"gen"`
	Fill string `json:"fill"`
}

func docOf(gen int) doc {
	return doc{Gen: gen, Fill: strings.Repeat(string(rune('a'+gen%26)), 128<<10)}
}

func (d doc) whole() bool {
	return len(d.Fill) == 128<<10 && strings.Count(d.Fill, string(rune('a'+d.Gen%26))) == len(d.Fill)
}

// TestReaderNeverSeesATornFile rewrites a file in a loop while readers
// read it: every read is one whole document, never an empty, truncated
// or mixed one.
func TestReaderNeverSeesATornFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "state.json")
	if err := Write(path, docOf(0), 0o600); err != nil {
		t.Fatal(err)
	}
	const writes = 200
	stop := make(chan struct{})
	var wg sync.WaitGroup
	var torn []string
	var mu sync.Mutex
	for range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				var d doc
				err := Read(path, &d)
				if err == nil && !d.whole() {
					err = errors.New("a mixed document")
				}
				if err != nil {
					mu.Lock()
					torn = append(torn, err.Error())
					mu.Unlock()
				}
			}
		}()
	}
	for gen := 1; gen <= writes; gen++ {
		if err := Write(path, docOf(gen), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	close(stop)
	wg.Wait()
	if len(torn) > 0 {
		t.Fatalf("%d of the reads saw a torn file during %d rewrites; first: %.200s", len(torn), writes, torn[0])
	}
	var last doc
	if err := Read(path, &last); err != nil || last.Gen != writes || !last.whole() {
		t.Fatalf("after the rewrites: gen %d, whole %v, err %v; want gen %d", last.Gen, last.whole(), err, writes)
	}
	assertOnly(t, filepath.Dir(path), "state.json")
}

// TestFailedWriteLeavesNoTempFile: a write that cannot replace its file
// (here a directory is in the way) fails and leaves nothing behind.
func TestFailedWriteLeavesNoTempFile(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "state.json")
	if err := os.MkdirAll(filepath.Join(path, "busy"), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := Write(path, docOf(1), 0o600); err == nil {
		t.Fatal("Write over a directory succeeded")
	}
	assertOnly(t, dir, "state.json")
}

func TestPermissions(t *testing.T) {
	path := filepath.Join(t.TempDir(), "state.json")
	for _, perm := range []os.FileMode{0o600, 0o640} {
		if err := Write(path, docOf(1), perm); err != nil {
			t.Fatal(err)
		}
		st, err := os.Stat(path)
		if err != nil {
			t.Fatal(err)
		}
		if st.Mode().Perm() != perm {
			t.Errorf("mode %v, want %v", st.Mode().Perm(), perm)
		}
	}
}

func TestReadMissingAndBad(t *testing.T) {
	dir := t.TempDir()
	var d doc
	if err := Read(filepath.Join(dir, "none.json"), &d); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("missing file: %v, want fs.ErrNotExist", err)
	}
	bad := filepath.Join(dir, "bad.json")
	if err := os.WriteFile(bad, []byte("{"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := Read(bad, &d); err == nil || !strings.Contains(err.Error(), bad) {
		t.Errorf("bad JSON: %v, want an error naming %s", err, bad)
	}
}

// assertOnly fails unless dir holds exactly the entry name.
func assertOnly(t *testing.T, dir, name string) {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	if len(names) != 1 || names[0] != name {
		t.Errorf("%s holds %v, want only %s (a temporary file survived)", dir, names, name)
	}
}

// BenchmarkWrite is the cost of one state file's rewrite (a netns record's
// size), sync included, in $TMPDIR.
func BenchmarkWrite(b *testing.B) {
	path := filepath.Join(b.TempDir(), "state.json")
	rec := map[string]string{"owner": "c1", "rules_digest": strings.Repeat("0", 64)}
	for b.Loop() {
		if err := Write(path, rec, 0o600); err != nil {
			b.Fatal(err)
		}
	}
}
