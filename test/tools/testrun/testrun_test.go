package main

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// A package whose tests skip in the ways real tests do: plain, after a
// log line, with a multi-line message, in a subtest, in parallel; and one
// that passes and one that fails.
const fixture = `package fx

import "testing"

func TestPlain(t *testing.T) { t.Skip("kernel lacks Landlock") }

func TestLogThenSkip(t *testing.T) {
	t.Log("setting up")
	t.Skipf("egress tests need %s: %v", "nft", "exec: \"nft\": executable file not found in $PATH")
}

func TestMultiline(t *testing.T) { t.Skip("KNOWN BUG: first line\nsecond line") }

func TestSub(t *testing.T) {
	t.Run("inner", func(t *testing.T) { t.Skip("not clawrun: runc has no policies") })
}

func TestParallelA(t *testing.T) { t.Parallel(); t.Skip("kernel lacks A") }
func TestParallelB(t *testing.T) { t.Parallel(); t.Skip("needs B") }

func TestPasses(t *testing.T) { t.Log("quiet unless verbose") }

func TestFails(t *testing.T) { t.Error("this one fails") }
`

func runFixture(t *testing.T, verbose bool) (string, int, []Skip) {
	t.Helper()
	goBin, err := exec.LookPath("go")
	if err != nil {
		t.Fatalf("the go command is needed to produce a real go test -json stream: %v", err)
	}
	dir := t.TempDir()
	for name, text := range map[string]string{
		"go.mod":     "module fx\n\ngo 1.22\n",
		"fx_test.go": fixture,
	} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	cmd := exec.Command(goBin, "test", "-json", "-count=1", ".")
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "GOFLAGS=", "GOWORK=off")
	stream, _ := cmd.Output() // exits 1: TestFails
	var out bytes.Buffer
	r := newRenderer(&out, &out, verbose)
	if err := r.consume(bytes.NewReader(stream)); err != nil {
		t.Fatal(err)
	}
	return out.String(), cmd.ProcessState.ExitCode(), r.skips
}

func TestRenderCollectsSkipReasons(t *testing.T) {
	out, code, skips := runFixture(t, false)
	if code != 1 {
		t.Errorf("go test exit status %d, want 1 (TestFails)\n%s", code, out)
	}
	want := map[string]string{
		"TestPlain":       "kernel lacks Landlock",
		"TestLogThenSkip": `egress tests need nft: exec: "nft": executable file not found in $PATH`,
		"TestMultiline":   "KNOWN BUG: first line second line",
		"TestSub/inner":   "not clawrun: runc has no policies",
		"TestParallelA":   "kernel lacks A",
		"TestParallelB":   "needs B",
	}
	got := map[string]Skip{}
	for _, s := range skips {
		got[s.Test] = s
	}
	if len(got) != len(want) {
		t.Errorf("skips: got %d %v, want %d", len(got), skips, len(want))
	}
	for test, reason := range want {
		s, ok := got[test]
		if !ok {
			t.Errorf("%s: not recorded as skipped", test)
			continue
		}
		if s.Reason != reason || s.Package != "fx" || !strings.HasPrefix(s.Where, "fx_test.go:") {
			t.Errorf("%s: got %+v, want reason %q in fx at fx_test.go:N", test, s, reason)
		}
	}
	// Plain go test's text: the failure with its message and the package
	// verdict; nothing of the passing test.
	for _, line := range []string{"--- FAIL: TestFails", "this one fails", "FAIL\tfx"} {
		if !strings.Contains(out, line) {
			t.Errorf("output lacks %q:\n%s", line, out)
		}
	}
	if strings.Contains(out, "quiet unless verbose") {
		t.Errorf("a passing test's log printed without -v:\n%s", out)
	}
}

func TestRenderVerbose(t *testing.T) {
	out, _, _ := runFixture(t, true)
	for _, line := range []string{"=== RUN   TestPasses", "quiet unless verbose", "--- SKIP: TestPlain", "--- FAIL: TestFails", "FAIL\tfx"} {
		if !strings.Contains(out, line) {
			t.Errorf("verbose output lacks %q:\n%s", line, out)
		}
	}
}

func TestReportClasses(t *testing.T) {
	skips := []Skip{
		{Package: "p", Test: "TestK", Reason: "kernel lacks Landlock ABI 4"},
		{Package: "p", Test: "TestR", Reason: "not clawrun: policies are clawrun's"},
		{Package: "p", Test: "TestB", Reason: "KNOWN BUG: exec -d reports success"},
		{Package: "p", Test: "TestN", Reason: "egress tests need nft"},
		{Package: "p", Test: "TestE", Reason: "CLAWRUN is not set"},
		// The class is the message's start, not a word anywhere in it.
		{Package: "p", Test: "TestM", Reason: "missing tool; the kernel lacks nothing"},
	}
	var out bytes.Buffer
	if n := report(&out, skips); n != 4 {
		t.Errorf("disallowed: got %d, want 4 (TestB, TestN, TestE, TestM)\n%s", n, out.String())
	}
	text := out.String()
	bad := text[strings.Index(text, "NOT ALLOWED"):]
	for _, test := range []string{"TestB", "TestN", "TestE", "TestM"} {
		if !strings.Contains(bad, test) {
			t.Errorf("%s is not listed as not allowed:\n%s", test, text)
		}
	}
	for _, test := range []string{"TestK", "TestR"} {
		if strings.Contains(bad, test) {
			t.Errorf("%s is listed as not allowed:\n%s", test, text)
		}
	}
	out.Reset()
	if n := report(&out, nil); n != 0 || !strings.Contains(out.String(), "none") {
		t.Errorf("no skips: %d, %q", n, out.String())
	}
}

func TestSkipLogRoundTrip(t *testing.T) {
	path := filepath.Join(t.TempDir(), "skips.jsonl")
	if got, err := readSkips(path); err != nil || got != nil {
		t.Fatalf("a missing log: %v, %v", got, err)
	}
	a := []Skip{{Package: "p", Test: "T1", Where: "x_test.go:1", Reason: "r1"}}
	b := []Skip{{Package: "q", Test: "T2", Reason: "r2\nmore"}}
	if err := appendSkips(path, a); err != nil {
		t.Fatal(err)
	}
	if err := appendSkips(path, b); err != nil {
		t.Fatal(err)
	}
	got, err := readSkips(path)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || got[0] != a[0] || got[1] != b[0] {
		t.Errorf("round trip: got %+v", got)
	}
}

func TestWithJSON(t *testing.T) {
	got, err := withJSON([]string{"go", "test", "-count=1", "./..."})
	if err != nil || strings.Join(got, " ") != "go test -json -count=1 ./..." {
		t.Errorf("got %q, %v", got, err)
	}
	if _, err := withJSON([]string{"go", "build"}); err == nil {
		t.Error("a command that is not go test was accepted")
	}
}
