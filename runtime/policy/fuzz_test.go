package policy

import (
	"os"
	"path/filepath"
	"testing"
)

// FuzzParse checks that Parse never panics, that what it accepts passes
// Validate, and that it compiles (alone and under a preset) or fails
// cleanly.
func FuzzParse(f *testing.F) {
	files, _ := filepath.Glob("testdata/*/*")
	for _, file := range files {
		if data, err := os.ReadFile(file); err == nil {
			f.Add(data)
		}
	}
	for _, data := range []string{"{}", "version: 1", "a: &a [*a]", "filesystem_policy: {include_workdir: true}"} {
		f.Add([]byte(data))
	}
	floor, _ := Preset("agent-default")
	f.Fuzz(func(t *testing.T, data []byte) {
		p, err := Parse("fuzz", data)
		if err != nil {
			if _, ok := AsErrorList(err); !ok {
				t.Fatalf("error %T is not an ErrorList", err)
			}
			if p != nil {
				t.Fatal("a policy with an error")
			}
			return
		}
		if err := p.Validate(); err != nil {
			t.Fatalf("parsed but does not validate: %v\n%q", err, data)
		}
		for _, wd := range []string{"", "/", "/work"} {
			plan, err := Compile(floor, p, CompileOptions{Workdir: wd})
			if err == nil && plan == nil {
				t.Fatal("no plan and no error")
			}
			if _, err := Compile(p, nil, CompileOptions{Workdir: wd}); err != nil {
				if _, ok := AsErrorList(err); !ok {
					t.Fatalf("error %T is not an ErrorList", err)
				}
			}
		}
		// The shortcut parser gets the same bytes.
		if sp, err := ParseShortcut(string(data)); err == nil {
			if err := sp.Validate(); err != nil {
				t.Fatalf("shortcut does not validate: %v", err)
			}
		}
		_, _ = ParseConfig("fuzz", data)
	})
}
