// Command benchdoc pastes what `make bench` printed into README.md, so that
// the README shows the benchmarks' own output, verdicts included, and
// nothing typed by hand:
//
//	benchdoc -readme README.md TABLE.md...
//
// The block goes between the lines "<!-- make bench: begin -->" and
// "<!-- make bench: end sha256:HEX -->", HEX being the SHA-256 of what lies
// between them: its test fails when the block was edited by hand.
package main

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"os"
	"regexp"
)

const (
	beginMarker = "<!-- make bench: begin -->\n"
	endPrefix   = "<!-- make bench: end sha256:"
)

// endLine matches the end marker, its digest captured.
var endLine = regexp.MustCompile(`(?m)^<!-- make bench: end sha256:([0-9a-f]{64}) -->$`)

func main() {
	readme := flag.String("readme", "README.md", "file whose bench block is replaced")
	flag.Parse()
	if flag.NArg() == 0 {
		fatalf("usage: benchdoc -readme README.md TABLE.md...")
	}
	var body bytes.Buffer
	for i, f := range flag.Args() {
		data, err := os.ReadFile(f)
		if err != nil {
			fatalf("%v", err)
		}
		if i > 0 {
			body.WriteString("\n")
		}
		body.Write(bytes.TrimRight(data, "\n"))
		body.WriteString("\n")
	}
	doc, err := os.ReadFile(*readme)
	if err != nil {
		fatalf("%v", err)
	}
	out, err := replace(doc, body.Bytes())
	if err != nil {
		fatalf("%s: %v", *readme, err)
	}
	if err := os.WriteFile(*readme, out, 0o644); err != nil {
		fatalf("%v", err)
	}
	fmt.Fprintf(os.Stderr, "benchdoc: %s: bench block replaced with %v\n", *readme, flag.Args())
}

// block finds the bench block in doc: the offsets of its body, the digest
// its end marker records.
func block(doc []byte) (start, end int, digest string, err error) {
	b := bytes.Index(doc, []byte(beginMarker))
	if b < 0 {
		return 0, 0, "", fmt.Errorf("no %q line", beginMarker[:len(beginMarker)-1])
	}
	start = b + len(beginMarker)
	loc := endLine.FindSubmatchIndex(doc[start:])
	if loc == nil {
		return 0, 0, "", errors.New("no \"" + endPrefix + "HEX -->\" line after the begin marker")
	}
	return start, start + loc[0], string(doc[start+loc[2] : start+loc[3]]), nil
}

// sum is the digest recorded for a block body.
func sum(body []byte) string {
	s := sha256.Sum256(body)
	return hex.EncodeToString(s[:])
}

// replace puts body in doc's bench block, with its digest.
func replace(doc, body []byte) ([]byte, error) {
	start, end, _, err := block(doc)
	if err != nil {
		return nil, err
	}
	lineEnd := bytes.IndexByte(doc[end:], '\n')
	if lineEnd < 0 {
		lineEnd = len(doc) - end
	} else {
		lineEnd++
	}
	var out bytes.Buffer
	out.Write(doc[:start])
	out.Write(body)
	fmt.Fprintf(&out, "%s%s -->\n", endPrefix, sum(body))
	out.Write(doc[end+lineEnd:])
	return out.Bytes(), nil
}

func fatalf(format string, a ...any) {
	fmt.Fprintf(os.Stderr, "benchdoc: "+format+"\n", a...)
	os.Exit(1)
}
