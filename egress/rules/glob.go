package rules

import (
	"path"
	"strings"
)

// globMatch matches a path against a glob: path.Match within a segment,
// "**" as a whole segment for zero or more segments. A malformed pattern
// matches nothing.
func globMatch(pattern, name string) bool {
	return globMatchOr(pattern, name, false)
}

// globMatchOr is globMatch where a malformed pattern matches everything
// when bad is true (for deny rules: failing closed).
func globMatchOr(pattern, name string, bad bool) bool {
	m, err := globSegs(strings.Split(pattern, "/"), strings.Split(name, "/"))
	if err != nil {
		return bad
	}
	return m
}

func globSegs(pat, segs []string) (bool, error) {
	for len(pat) > 0 {
		if pat[0] == "**" {
			for len(pat) > 1 && pat[1] == "**" {
				pat = pat[1:]
			}
			for i := 0; i <= len(segs); i++ {
				if m, err := globSegs(pat[1:], segs[i:]); m || err != nil {
					return m, err
				}
			}
			return false, nil
		}
		if len(segs) == 0 {
			return false, nil
		}
		m, err := path.Match(pat[0], segs[0])
		if err != nil || !m {
			return false, err
		}
		pat, segs = pat[1:], segs[1:]
	}
	return len(segs) == 0, nil
}

// wildMatch matches s against a pattern where only '*' is special (any
// sequence, '/' included): for query values.
func wildMatch(pattern, s string) bool {
	star := strings.Split(pattern, "*")
	if len(star) == 1 {
		return pattern == s
	}
	if !strings.HasPrefix(s, star[0]) {
		return false
	}
	s = s[len(star[0]):]
	last := star[len(star)-1]
	for _, part := range star[1 : len(star)-1] {
		i := strings.Index(s, part)
		if i < 0 {
			return false
		}
		s = s[i+len(part):]
	}
	return strings.HasSuffix(s, last)
}
