package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestReadmeBlockIsBenchOutput: README.md's benchmark figures are what
// `make bench` pasted, unedited: the block's digest matches its text.
func TestReadmeBlockIsBenchOutput(t *testing.T) {
	doc, err := os.ReadFile(filepath.Join("..", "..", "..", "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	start, end, digest, err := block(doc)
	if err != nil {
		t.Fatalf("README.md: %v", err)
	}
	body := doc[start:end]
	if got := sum(body); got != digest {
		t.Fatalf("README.md's bench block was edited by hand (sha256 %s, its end marker says %s): run `make bench`, which pastes its output there", got, digest)
	}
	for _, want := range []string{"| runtime |", "| metric |", "load average"} {
		if !strings.Contains(string(body), want) {
			t.Errorf("README.md's bench block has no %q: not the output of both benchmarks", want)
		}
	}
}

func TestReplace(t *testing.T) {
	doc := []byte("intro\n" + beginMarker + "old\n" + endPrefix + strings.Repeat("0", 64) + " -->\noutro\n")
	out, err := replace(doc, []byte("new table\n"))
	if err != nil {
		t.Fatal(err)
	}
	want := "intro\n" + beginMarker + "new table\n" + endPrefix + sum([]byte("new table\n")) + " -->\noutro\n"
	if string(out) != want {
		t.Fatalf("replace:\n%s\nwant:\n%s", out, want)
	}
	start, end, digest, err := block(out)
	if err != nil || digest != sum(out[start:end]) {
		t.Fatalf("the replaced block does not check: %v", err)
	}
	// Edited by hand: the digest no longer matches.
	edited := strings.Replace(string(out), "new table", "new tab1e", 1)
	start, end, digest, _ = block([]byte(edited))
	if digest == sum([]byte(edited)[start:end]) {
		t.Fatal("a hand edit kept the digest valid")
	}
	if _, err := replace([]byte("no block\n"), []byte("x")); err == nil {
		t.Fatal("a file without the markers was accepted")
	}
}
