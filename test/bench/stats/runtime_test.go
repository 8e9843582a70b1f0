package stats

import (
	"strings"
	"testing"
)

func TestParseRuntimes(t *testing.T) {
	dir := t.TempDir()
	rts, err := ParseRuntimes([]string{"plain|true", " with flags | true --x y | 1.3"}, dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(rts) != 2 || rts[0].Name != "plain" || rts[0].Target != 0 || rts[1].Name != "with flags" || rts[1].Target != 1.3 {
		t.Fatalf("rows %+v %+v", rts[0], rts[1])
	}
	if !strings.HasPrefix(rts[0].Argv[0], "/") || strings.Join(rts[1].Argv[1:], " ") != "--x y" {
		t.Fatalf("argv %q %q: want the command resolved, the flags kept", rts[0].Argv, rts[1].Argv)
	}
	if rts[0].Root == rts[1].Root || !strings.HasPrefix(rts[0].Root, dir) {
		t.Fatalf("roots %q %q: want one each under %s", rts[0].Root, rts[1].Root, dir)
	}
	if got := strings.Join(rts[1].Command("run", "id").Args[1:], " "); got != "--x y --root "+rts[1].Root+" run id" {
		t.Fatalf("command %q", got)
	}
	for spec, want := range map[string]string{
		"noprefix":           "want 'name|command prefix",
		"a|true|x":           "not a number",
		"|true":              "want 'name|command prefix",
		"a|no-such-program1": "row \"a\"",
	} {
		if _, err := ParseRuntimes([]string{spec}, dir); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%q: %v, want an error with %q", spec, err, want)
		}
	}
	if _, err := ParseRuntimes([]string{"a|true", "a|true"}, dir); err == nil || !strings.Contains(err.Error(), "duplicate") {
		t.Errorf("a duplicate name: %v", err)
	}
}

func TestParseRowsFindRow(t *testing.T) {
	type row struct {
		*Runtime
		samples []int
	}
	rows, err := ParseRows([]string{"a|true", "b|true"}, t.TempDir(), func(rt *Runtime) *row { return &row{Runtime: rt} })
	if err != nil {
		t.Fatal(err)
	}
	if got := FindRow(rows, "b"); got != rows[1] {
		t.Fatalf("FindRow(b) = %v, want the second row", got)
	}
	if got := FindRow(rows, "c"); got != nil {
		t.Fatalf("FindRow(c) = %v, want nil", got)
	}
}
