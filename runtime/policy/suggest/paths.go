package suggest

import (
	"cmp"
	"net/url"
	"path"
	"slices"
	"strings"

	"github.com/clawrun/clawrun/runtime/policy"
)

// CollapseAbove is how many paths of one method under one directory are
// listed one rule each: more become one rule for the directory's
// children, DIR/* (one segment, any name). Paths directly under / are
// never collapsed: /* would allow every top-level path of the server.
const CollapseAbove = 3

// pathRules are the requests seen as allow rules, one per method and
// path, sorted, with the paths of a method collapsed per directory
// (CollapseAbove). A path is written as the filter matches it,
// percent-decoded; one that cannot be written as a rule (a glob
// character in it, a space once decoded) is left out, and the caller's
// final check names it.
func pathRules(requests map[request]int) []policy.Rule {
	byMethod := map[string][]string{}
	for r := range requests {
		if p, ok := rulePath(r.path); ok {
			byMethod[r.method] = append(byMethod[r.method], p)
		}
	}
	var out []policy.Rule
	for _, method := range sortedKeys(byMethod) {
		for _, p := range collapse(byMethod[method]) {
			out = append(out, policy.Rule{Method: method, Path: p})
		}
	}
	slices.SortFunc(out, func(a, b policy.Rule) int {
		return cmp.Or(cmp.Compare(a.Path, b.Path), cmp.Compare(a.Method, b.Method))
	})
	return out
}

// rulePath is a request's path as an allow rule spells it.
func rulePath(sent string) (string, bool) {
	p, err := url.PathUnescape(sent)
	if err != nil || !strings.HasPrefix(p, "/") || strings.ContainsAny(p, "*?[]{}\\") {
		return "", false
	}
	for _, r := range p {
		if r <= ' ' || r == 0x7f {
			return "", false
		}
	}
	return p, true
}

// collapse returns the distinct paths, those of a directory other than /
// with more than CollapseAbove paths replaced by DIR/*.
func collapse(paths []string) []string {
	byDir := map[string][]string{}
	for _, p := range paths {
		dir := path.Dir(p)
		if !slices.Contains(byDir[dir], p) {
			byDir[dir] = append(byDir[dir], p)
		}
	}
	var out []string
	for _, dir := range sortedKeys(byDir) {
		children := byDir[dir]
		if dir != "/" && len(children) > CollapseAbove {
			out = append(out, dir+"/*")
			continue
		}
		out = append(out, children...)
	}
	slices.Sort(out)
	return out
}
