package policy

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"
)

const (
	// maxDocumentBytes bounds what Parse reads: policies are small, and
	// annotations (their other source) are capped well below this anyway.
	maxDocumentBytes = 1 << 20
	// maxNodes bounds the document once aliases are expanded, so that a
	// "billion laughs" document is refused before it is walked.
	maxNodes = 100_000
)

// decoder walks a yaml.Node tree, collecting every error with its line and
// field path instead of stopping at the first.
type decoder struct {
	file  string
	errs  ErrorList
	warns []Warning
}

func (d *decoder) fail(n *yaml.Node, field, format string, args ...any) {
	d.errs = append(d.errs, Error{File: d.file, Line: line(n), Field: field, Reason: fmt.Sprintf(format, args...)})
}

func (d *decoder) warn(n *yaml.Node, field, reason string) {
	d.warns = append(d.warns, Warning{File: d.file, Line: line(n), Field: field, Reason: reason})
}

func line(n *yaml.Node) int {
	if n == nil {
		return 0
	}
	return n.Line
}

// join builds a field path: "a" + "b" = "a.b".
func join(field, key string) string {
	if field == "" {
		return key
	}
	return field + "." + key
}

func index(field string, i int) string { return fmt.Sprintf("%s[%d]", field, i) }

var yamlErrLine = lazyRE(`^yaml: line (\d+): (.*)$`)

// decodeDocument parses data into the root node of its single document.
// It returns nil (with errors recorded) when there is nothing to walk.
func (d *decoder) decodeDocument(data []byte) (root *yaml.Node) {
	if len(data) > maxDocumentBytes {
		d.fail(nil, "", "the document is %d bytes; at most %d are allowed", len(data), maxDocumentBytes)
		return nil
	}
	// The YAML library has panicked on hostile input in the past: a policy
	// comes from an annotation, so it must never take the runtime down.
	defer func() {
		if r := recover(); r != nil {
			d.fail(nil, "", "the YAML parser failed: %v", r)
			root = nil
		}
	}()
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var doc yaml.Node
	if err := dec.Decode(&doc); err != nil {
		if errors.Is(err, io.EOF) {
			d.fail(nil, "", "the document is empty")
		} else {
			d.syntaxError(err)
		}
		return nil
	}
	var next yaml.Node
	switch err := dec.Decode(&next); {
	case errors.Is(err, io.EOF):
	case err != nil:
		d.syntaxError(err)
		return nil
	default:
		d.fail(&next, "", "a second YAML document was found; a policy is a single document")
		return nil
	}
	if doc.Kind != yaml.DocumentNode || len(doc.Content) == 0 {
		d.fail(&doc, "", "the document is empty")
		return nil
	}
	root = doc.Content[0]
	if size, ok := countNodes(root, map[*yaml.Node]int{}); !ok {
		d.fail(root, "", "aliases refer to themselves")
		return nil
	} else if size > maxNodes {
		d.fail(root, "", "the document has more than %d nodes, aliases expanded", maxNodes)
		return nil
	}
	return root
}

func (d *decoder) syntaxError(err error) {
	msg := err.Error()
	if m := yamlErrLine.FindStringSubmatch(msg); m != nil {
		n, _ := strconv.Atoi(m[1])
		d.errs = append(d.errs, Error{File: d.file, Line: n, Reason: "invalid YAML: " + m[2]})
		return
	}
	d.errs = append(d.errs, Error{File: d.file, Reason: "invalid YAML: " + strings.TrimPrefix(msg, "yaml: ")})
}

// countNodes returns the size of n with aliases expanded, saturating just
// above maxNodes; memo makes it linear in the document's size. A size of
// -1 in memo marks a node being counted: reaching it again is a cycle.
func countNodes(n *yaml.Node, memo map[*yaml.Node]int) (int, bool) {
	if n == nil {
		return 0, true
	}
	if c, seen := memo[n]; seen {
		return c, c >= 0
	}
	memo[n] = -1
	total := 1
	children := n.Content
	if n.Kind == yaml.AliasNode {
		children = []*yaml.Node{n.Alias}
	}
	for _, c := range children {
		size, ok := countNodes(c, memo)
		if !ok {
			return 0, false
		}
		total = min(total+size, maxNodes+1)
	}
	memo[n] = total
	return total, true
}

// resolve follows aliases; countNodes has already refused cycles, and the
// bound keeps a hand-built tree from looping.
func resolve(n *yaml.Node) *yaml.Node {
	for i := 0; n != nil && n.Kind == yaml.AliasNode && i < 64; i++ {
		n = n.Alias
	}
	return n
}

func isNull(n *yaml.Node) bool {
	return n == nil || (n.Kind == yaml.ScalarNode && n.ShortTag() == "!!null")
}

// describe names what a node is, for "expected X, got Y" messages.
func describe(n *yaml.Node) string {
	switch {
	case n == nil:
		return "nothing"
	case n.Kind == yaml.MappingNode:
		return "a mapping"
	case n.Kind == yaml.SequenceNode:
		return "a list"
	case n.Kind == yaml.AliasNode:
		return "an alias"
	}
	switch n.ShortTag() {
	case "!!null":
		return "null"
	case "!!str":
		return fmt.Sprintf("the string %q", truncate(n.Value))
	case "!!int":
		return "the integer " + truncate(n.Value)
	case "!!float":
		return "the number " + truncate(n.Value)
	case "!!bool":
		return "the boolean " + n.Value
	}
	return fmt.Sprintf("a value tagged %s", truncate(n.ShortTag()))
}

// truncate keeps error messages readable when a value is huge.
func truncate(s string) string {
	const max = 80
	if len(s) <= max {
		return s
	}
	cut := max
	for cut > 0 && s[cut]&0xC0 == 0x80 { // do not split a UTF-8 sequence
		cut--
	}
	return s[:cut] + "..."
}

// mapping walks a mapping node: it refuses duplicate, non-string and merge
// keys, and keys outside valid (or in unsupported, with its reason), and
// calls fn for each accepted key in document order. A null node is an empty
// mapping. It returns false if n is not a mapping.
func (d *decoder) mapping(n *yaml.Node, field string, valid []string, unsupported map[string]string, fn func(key string, k, v *yaml.Node, sub string)) bool {
	return d.walkMapping(n, field, func(key string, k, v *yaml.Node, sub string) {
		if reason, ok := unsupported[key]; ok {
			d.fail(k, sub, "%s", reason)
			return
		}
		for _, ok := range valid {
			if key == ok {
				fn(key, k, v, sub)
				return
			}
		}
		d.fail(k, sub, "unknown key %q; valid keys are %s", truncate(key), strings.Join(valid, ", "))
	})
}

// entries walks a mapping whose keys are names chosen by the author
// (network_policies, query).
func (d *decoder) entries(n *yaml.Node, field string, fn func(key string, k, v *yaml.Node, sub string)) bool {
	return d.walkMapping(n, field, fn)
}

func (d *decoder) walkMapping(n *yaml.Node, field string, fn func(key string, k, v *yaml.Node, sub string)) bool {
	n = resolve(n)
	if isNull(n) {
		return true
	}
	if n.Kind != yaml.MappingNode {
		d.fail(n, field, "expected a mapping, got %s", describe(n))
		return false
	}
	seen := map[string]int{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := resolve(n.Content[i]), n.Content[i+1]
		if k == nil || k.Kind != yaml.ScalarNode || isNull(k) {
			d.fail(n.Content[i], field, "a key must be a string, got %s", describe(k))
			continue
		}
		if k.ShortTag() == "!!merge" {
			d.fail(k, field, "merge keys (<<) are not supported")
			continue
		}
		sub := join(field, k.Value)
		if first, dup := seen[k.Value]; dup {
			d.fail(k, sub, "duplicate key (first at line %d)", first)
			continue
		}
		seen[k.Value] = k.Line
		fn(k.Value, k, v, sub)
	}
	return true
}

// list walks a sequence node; a null node is an empty list. It returns
// false if n is not a list.
func (d *decoder) list(n *yaml.Node, field, what string, fn func(i int, v *yaml.Node, sub string)) bool {
	n = resolve(n)
	if isNull(n) {
		return true
	}
	if n.Kind != yaml.SequenceNode {
		d.fail(n, field, "expected a list of %s, got %s", what, describe(n))
		return false
	}
	for i, v := range n.Content {
		fn(i, v, index(field, i))
	}
	return true
}

// str reads a string. Plain scalars YAML would type as numbers or booleans
// are taken as their text: `query: {page: 1}` means "1".
func (d *decoder) str(n *yaml.Node, field string) (string, bool) {
	n = resolve(n)
	if n != nil && n.Kind == yaml.ScalarNode {
		switch n.ShortTag() {
		case "!!str", "!!int", "!!float", "!!bool":
			return n.Value, true
		}
	}
	d.fail(n, field, "expected a string, got %s", describe(n))
	return "", false
}

func (d *decoder) boolean(n *yaml.Node, field string) (bool, bool) {
	n = resolve(n)
	if n != nil && n.Kind == yaml.ScalarNode && n.ShortTag() == "!!bool" {
		return strings.EqualFold(n.Value, "true"), true
	}
	d.fail(n, field, "expected true or false, got %s", describe(n))
	return false, false
}

var decimal = lazyRE(`^[-+]?(0|[1-9][0-9]*)$`)

// integer reads a decimal integer. Octal, hexadecimal and leading zeros are
// refused: "0443" is 443 to a reader and 291 to some YAML libraries.
func (d *decoder) integer(n *yaml.Node, field string) (int64, bool) {
	n = resolve(n)
	if n != nil && n.Kind == yaml.ScalarNode && n.ShortTag() == "!!int" {
		if !decimal.MatchString(n.Value) {
			d.fail(n, field, "%s: write the number in decimal, without leading zeros", truncate(n.Value))
			return 0, false
		}
		v, err := strconv.ParseInt(n.Value, 10, 64)
		if err != nil {
			d.fail(n, field, "%s is out of range", truncate(n.Value))
			return 0, false
		}
		return v, true
	}
	d.fail(n, field, "expected an integer, got %s", describe(n))
	return 0, false
}
