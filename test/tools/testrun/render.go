package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"strings"
)

// event is one line of go test -json (cmd/test2json's TestEvent).
type event struct {
	Action      string
	Package     string
	Test        string
	Output      string
	ImportPath  string // build-output events
	FailedBuild string
}

type testKey struct{ pkg, test string }

// renderer turns go test -json back into go test's text and collects the
// skipped tests. Verbose prints everything as go test -v does; otherwise a
// test's output is printed only when it fails, as plain go test does.
type renderer struct {
	out, errOut io.Writer
	verbose     bool
	buffered    map[testKey]*strings.Builder
	skips       []Skip
}

func newRenderer(out, errOut io.Writer, verbose bool) *renderer {
	return &renderer{out: out, errOut: errOut, verbose: verbose, buffered: map[testKey]*strings.Builder{}}
}

// consume reads the whole stream. Lines that are not JSON (go vet or build
// errors printed before the tests run) are passed through.
func (r *renderer) consume(in io.Reader) error {
	sc := bufio.NewScanner(in)
	sc.Buffer(make([]byte, 0, 64*1024), 16<<20)
	for sc.Scan() {
		line := sc.Bytes()
		var ev event
		if len(line) == 0 || line[0] != '{' || json.Unmarshal(line, &ev) != nil {
			fmt.Fprintf(r.out, "%s\n", line)
			continue
		}
		r.handle(ev)
	}
	return sc.Err()
}

func (r *renderer) handle(ev event) {
	switch ev.Action {
	case "build-output":
		fmt.Fprint(r.errOut, ev.Output)
		return
	case "output":
		r.output(ev)
		return
	}
	if ev.Test == "" {
		return // package start/pass/fail/skip: go test prints their lines as output
	}
	key := testKey{ev.Package, ev.Test}
	switch ev.Action {
	case "skip":
		text := ""
		if b := r.buffered[key]; b != nil {
			text = b.String()
		}
		where, reason := skipReason(text)
		r.skips = append(r.skips, Skip{Package: ev.Package, Test: ev.Test, Where: where, Reason: reason})
	case "fail":
		if b := r.buffered[key]; b != nil && !r.verbose {
			fmt.Fprint(r.out, b.String())
		}
	case "pass":
	default:
		return
	}
	delete(r.buffered, key)
}

func (r *renderer) output(ev event) {
	if ev.Test == "" {
		// Package lines: "ok  pkg 1.2s", "FAIL", coverage, panics. A bare
		// PASS is -v's; plain go test does not print it.
		if r.verbose || ev.Output != "PASS\n" {
			fmt.Fprint(r.out, ev.Output)
		}
		return
	}
	if r.verbose {
		fmt.Fprint(r.out, ev.Output)
	}
	key := testKey{ev.Package, ev.Test}
	b := r.buffered[key]
	if b == nil {
		b = &strings.Builder{}
		r.buffered[key] = b
	}
	b.WriteString(ev.Output)
}
