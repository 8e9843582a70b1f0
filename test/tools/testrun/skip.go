package main

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"regexp"
	"strings"
)

// Skip is one skipped test: where it is and what its t.Skip said.
type Skip struct {
	Package string `json:"package"`
	Test    string `json:"test"`
	Where   string `json:"where,omitempty"` // file.go:line of the t.Skip
	Reason  string `json:"reason"`
}

// The reasons a skip is allowed for, recognised by how its message
// starts. Every other skip means the machine lacks something the suite
// needs (a tool, a variable, root) and fails the run: install it. A bug
// is never a reason: a test that sees one fails.
var skipClasses = []struct {
	prefix string
	class  string
	why    string
}{
	{"kernel lacks ", "kernel", "the running kernel lacks the feature under test"},
	{"not clawrun: ", "not clawrun", "the runtime under test is not clawrun and the test is about clawrun's own features"},
}

// class names why s may be skipped, or "" when it may not.
func (s Skip) class() string {
	for _, c := range skipClasses {
		if strings.HasPrefix(s.Reason, c.prefix) {
			return c.class
		}
	}
	return ""
}

func (s Skip) String() string {
	where := s.Where
	if where != "" {
		where += ": "
	}
	return fmt.Sprintf("%s %s: %s%s", s.Package, s.Test, where, s.Reason)
}

// logLine is the first line of a t.Log/t.Skip entry in go test -v output:
// indentation, file:line, the message.
var logLine = regexp.MustCompile(`^\s*([\w.-]+\.go:\d+): (.*)$`)

// skipReason finds the message of t.Skip in a skipped test's output: the
// last log entry (with its continuation lines) before "--- SKIP".
func skipReason(output string) (where, reason string) {
	var entry []string
	for _, line := range strings.Split(output, "\n") {
		trimmed := strings.TrimSpace(line)
		switch {
		case strings.HasPrefix(trimmed, "=== "), strings.HasPrefix(trimmed, "--- "):
			continue
		case logLine.MatchString(line):
			m := logLine.FindStringSubmatch(line)
			where, entry = m[1], []string{m[2]}
		case entry != nil && trimmed != "":
			entry = append(entry, trimmed)
		}
	}
	return where, strings.Join(entry, " ")
}

// appendSkips adds skips to the JSON-lines file path.
func appendSkips(path string, skips []Skip) error {
	if len(skips) == 0 {
		return nil
	}
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	enc := json.NewEncoder(f)
	for _, s := range skips {
		if err := enc.Encode(s); err != nil {
			f.Close()
			return err
		}
	}
	return f.Close()
}

// readSkips reads what appendSkips wrote; a missing file is no skips.
func readSkips(path string) ([]Skip, error) {
	f, err := os.Open(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var skips []Skip
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 0, 64*1024), 1<<20)
	for n := 1; sc.Scan(); n++ {
		var s Skip
		if err := json.Unmarshal(sc.Bytes(), &s); err != nil {
			return nil, fmt.Errorf("%s:%d: %v", path, n, err)
		}
		skips = append(skips, s)
	}
	return skips, sc.Err()
}

// report lists skips, allowed ones by class, and returns how many are not
// allowed.
func report(w io.Writer, skips []Skip) (disallowed int) {
	if len(skips) == 0 {
		fmt.Fprintln(w, "skipped tests: none")
		return 0
	}
	fmt.Fprintf(w, "skipped tests: %d\n", len(skips))
	for _, c := range skipClasses {
		var in []Skip
		for _, s := range skips {
			if s.class() == c.class {
				in = append(in, s)
			}
		}
		if len(in) > 0 {
			fmt.Fprintf(w, "  allowed (%s: %s):\n", c.class, c.why)
			for _, s := range in {
				fmt.Fprintf(w, "    %s\n", s)
			}
		}
	}
	for _, s := range skips {
		if s.class() == "" {
			if disallowed == 0 {
				fmt.Fprintln(w, "  NOT ALLOWED (a missing tool, variable or privilege: install or set it; see README.md, Tests):")
			}
			fmt.Fprintf(w, "    %s\n", s)
			disallowed++
		}
	}
	return disallowed
}
