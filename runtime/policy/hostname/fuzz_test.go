package hostname

import (
	"strings"
	"testing"
)

var seeds = []string{
	"github.com", "GitHub.COM.", "*.example.com", "*.Example.COM.", "_dmarc.example.com",
	"r3---sn-abc.googlevideo.com", "xn--bcher-kva.example", "bücher.example", "*.xn--mnchen-3ya.de",
	"xn--zz.example", "ＥＸＡＭＰＬＥ.com", "1.2.3.4", "[::1]", "*", "*.com", "a..b", "-a.com",
}

// FuzzCanonical: what Canonical accepts is canonical, plain ASCII, and
// the same name however its ASCII letters are cased and with a trailing
// dot.
func FuzzCanonical(f *testing.F) {
	for _, s := range seeds {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		c, ok := Canonical(s)
		if !ok {
			return
		}
		if again, ok := Canonical(c); !ok || again != c {
			t.Fatalf("Canonical(%q) = %q, but Canonical(%q) = %q, %v", s, c, c, again, ok)
		}
		if len(c) > MaxLen || !isASCII(c) || c != strings.ToLower(c) {
			t.Fatalf("Canonical(%q) = %q", s, c)
		}
		for _, variant := range []string{strings.ToUpper(c), c + "."} {
			if v, ok := Canonical(variant); !ok || v != c {
				t.Fatalf("Canonical(%q) = %q, %v; want %q", variant, v, ok, c)
			}
		}
	})
}

// FuzzParsePattern: a host a policy accepts is canonical; the name it
// writes is a name the filter accepts and matches (a wildcard's names
// are those of one more label); and ParsePattern is idempotent.
func FuzzParsePattern(f *testing.F) {
	for _, s := range seeds {
		f.Add(s, "a")
	}
	f.Fuzz(func(t *testing.T, host, label string) {
		p, err := ParsePattern(host)
		if err != nil {
			return
		}
		if again, err := ParsePattern(p); err != nil || again != p {
			t.Fatalf("ParsePattern(%q) = %q, but ParsePattern(%q) = %q, %v", host, p, p, again, err)
		}
		written := strings.TrimSuffix(host, ".")
		if !IsWildcard(p) {
			if c, ok := Canonical(written); !ok || c != p || !Match(p, c) {
				t.Fatalf("policy host %q is %q, but the filter reads it as %q, %v", host, p, c, ok)
			}
			return
		}
		domain := written[2:]
		// The domain itself and deeper names never match.
		if c, ok := Canonical(domain); !ok || Match(p, c) || Match(p, "a.b."+c) {
			t.Fatalf("pattern %q: domain %q is %q, %v", p, domain, c, ok)
		}
		if c, ok := Canonical(label + "." + domain); ok && !strings.Contains(label, ".") && !Match(p, c) {
			t.Fatalf("pattern %q does not match %q (%q)", p, label+"."+domain, c)
		}
	})
}

// FuzzMatch: for ASCII names and patterns, Match agrees with a plain
// reading of the rule: names are compared without case and trailing dot,
// and "*.d" is every name of one label more than d.
func FuzzMatch(f *testing.F) {
	f.Add("*.example.com", "a.example.com")
	f.Add("*.example.com", "a.b.example.com")
	f.Add("*.example.com", "example.com")
	f.Add("GitHub.com", "github.COM.")
	f.Add("*.Example.com.", "_X.example.COM")
	f.Fuzz(func(t *testing.T, host, name string) {
		if !isASCII(host) || !isASCII(name) {
			return
		}
		p, err := ParsePattern(host)
		if err != nil {
			return
		}
		c, ok := Canonical(name)
		if !ok {
			return
		}
		if got, want := Match(p, c), referenceMatch(host, name); got != want {
			t.Fatalf("Match(%q, %q) = %v, reference %v", p, c, got, want)
		}
	})
}

func referenceMatch(pattern, name string) bool {
	norm := func(s string) string { return strings.ToLower(strings.TrimSuffix(s, ".")) }
	pattern, name = norm(pattern), norm(name)
	if !strings.HasPrefix(pattern, "*.") {
		return pattern == name
	}
	nl, pl := strings.Split(name, "."), strings.Split(pattern, ".")
	return len(nl) == len(pl) && strings.Join(nl[1:], ".") == strings.Join(pl[1:], ".")
}
