package hostname

import (
	"strings"
	"testing"

	"golang.org/x/net/idna"
)

func TestCanonical(t *testing.T) {
	long := strings.Repeat("a", 63)
	for in, want := range map[string]string{ // "" for refused
		"github.com":                  "github.com",
		"GitHub.COM.":                 "github.com",
		"github.com..":                "",
		".github.com":                 "",
		"":                            "",
		".":                           "",
		"a b.com":                     "",
		"*.example.com":               "",
		"a\x00.com":                   "",
		`a\.b.com`:                    "", // an escaped dot of a DNS name
		"_dmarc.example.com":          "_dmarc.example.com",
		"r3---sn-abc.googlevideo.com": "r3---sn-abc.googlevideo.com",
		"-a.example.com":              "-a.example.com", // a name may; a policy may not
		long + ".com":                 long + ".com",
		long + "a.com":                "",
		strings.Repeat(long+".", 3) + strings.Repeat("a", 61): strings.Repeat(long+".", 3) + strings.Repeat("a", 61), // 253
		strings.Repeat(long+".", 3) + strings.Repeat("a", 62): "",

		// Internationalized names: A-labels as they are, U-labels converted.
		"xn--bcher-kva.example":    "xn--bcher-kva.example",
		"XN--BCHER-KVA.example":    "xn--bcher-kva.example",
		"bücher.example":           "xn--bcher-kva.example",
		"www.münchen.de":           "www.xn--mnchen-3ya.de",
		"例え.jp":                    "xn--r8jz45g.jp",
		"faß.de":                   "xn--fa-hia.de", // non-transitional: not fass.de
		"ς.gr":                     "xn--3xa.gr",
		"مثال.إختبار":              "xn--mgbh0fb.xn--kgbechtv",
		"xn--mgbh0fb.xn--kgbechtv": "xn--mgbh0fb.xn--kgbechtv",

		// Fake A-labels, which the old code let through.
		"xn--zz.example":  "",
		"xn--abc.example": "",
		"xn--.com":        "",
		"xn---.com":       "",
		"xn--a.com":       "", // decodes to ASCII
		// U-labels not in IDNA form: IDNA would map them to another name.
		"BÜCHER.example":       "", // upper case
		"bu\u0308cher.example": "", // not NFC
		"ＥＸＡＭＰＬＥ.com":          "", // fullwidth: example.com to idna.Lookup
		"example\u3002com":     "", // ideographic full stop: example.com to idna.Lookup
		"ẞ.de":                 "",
		"İstanbul.tr":          "",
		// Not a letter, mark or digit.
		"☃.net":           "",
		"a\u200db.com":    "", // zero-width joiner
		"\xff.example":    "",
		"b\u00fccher\x00": "",
	} {
		got, ok := Canonical(in)
		if got != want || ok != (want != "") {
			t.Errorf("Canonical(%q) = %q, %v; want %q", in, got, ok, want)
		}
	}
}

// The IDNA profile keeps accepting the ASCII names real DNS uses, which
// idna.Lookup (as most libraries use it) refuses; and it refuses the
// mappings idna.Lookup applies, which would make one name of two.
func TestIDNAProfileAgainstLookup(t *testing.T) {
	for _, name := range []string{"_dmarc.example.com", "_acme-challenge.example.com", "r3---sn-abc.googlevideo.com", "ab--cd.example.com"} {
		if _, err := idna.Lookup.ToASCII(name); err == nil {
			t.Errorf("idna.Lookup accepts %q: the profile's options may be dropped", name)
		}
		if got, ok := Canonical(name); !ok || got != name {
			t.Errorf("Canonical(%q) = %q, %v", name, got, ok)
		}
	}
	for _, name := range []string{"ＥＸＡＭＰＬＥ.com", "example\u3002com", "BÜCHER.example", "e\u0301.example.com"} {
		if _, err := idna.Lookup.ToASCII(name); err != nil {
			t.Errorf("idna.Lookup refuses %q: %v", name, err)
		}
		if got, ok := Canonical(name); ok {
			t.Errorf("Canonical(%q) = %q, want refused", name, got)
		}
	}
}

func TestParsePattern(t *testing.T) {
	for host, want := range map[string]string{
		"Example.COM.":              "example.com",
		"*.Example.com":             "*.example.com",
		"_dmarc.example.com":        "_dmarc.example.com",
		"xn--bcher-kva.de":          "xn--bcher-kva.de",
		"*.xn--mnchen-3ya.de":       "*.xn--mnchen-3ya.de",
		"r3---sn-x.googlevideo.com": "r3---sn-x.googlevideo.com",
		"*.github.io":               "*.github.io", // a private suffix: someone's domain
		"*.example.co.uk":           "*.example.co.uk",
		"*.internal.test":           "*.internal.test",
	} {
		if got, err := ParsePattern(host); err != nil || got != want {
			t.Errorf("ParsePattern(%q) = %q, %v; want %q", host, got, err, want)
		}
	}
	for host, want := range map[string]string{
		"*":                               "over-broad wildcard",
		"*.":                              "over-broad wildcard",
		"*.com":                           "over-broad wildcard",
		"*.co.uk":                         "public suffix",
		"*.CO.UK.":                        "public suffix",
		"*.com.au":                        "public suffix",
		"*.xn--55qx5d.cn":                 "public suffix", // 公司.cn
		"*.*":                             "whole first label",
		"a.*.com":                         "whole first label",
		"*foo.com":                        "whole first label",
		"*.*.example.com":                 "whole first label",
		"1.2.3.4":                         "IP addresses are not allowed",
		"[::1]":                           "IP addresses are not allowed",
		"::1":                             "IP addresses are not allowed",
		"fe80::1%eth0":                    "IP addresses are not allowed",
		"1.2.3.4.5":                       "looks like an IP",
		"example.123":                     "looks like an IP",
		"a..com":                          "empty label",
		".":                               "empty label",
		"-a.com":                          "invalid DNS label",
		"a-.com":                          "invalid DNS label",
		"ex ample.com":                    "invalid DNS label",
		"bücher.de":                       "invalid DNS label", // written as its A-label
		strings.Repeat("a", 64) + ".com":  "invalid DNS label",
		strings.Repeat("a.", 127) + "com": "longer than 253",
		"xn--zz.example.com":              "not a valid internationalized name",
		"*.xn--zz.com":                    "not a valid internationalized name",
		"":                                "empty host",
	} {
		got, err := ParsePattern(host)
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("ParsePattern(%q) = %q, %v; want an error with %q", host, got, err, want)
		}
	}
}

func TestMatch(t *testing.T) {
	for _, tc := range []struct {
		pattern, name string
		want          bool
	}{
		{"github.com", "github.com", true},
		{"github.com", "api.github.com", false},
		{"github.com", "xgithub.com", false},
		{"*.example.com", "a.example.com", true},
		{"*.example.com", "_x.example.com", true},
		{"*.example.com", "example.com", false},     // not the domain itself
		{"*.example.com", "a.b.example.com", false}, // exactly one label
		{"*.example.com", "aexample.com", false},
		{"*.example.com", "a.example.com.evil", false},
		{"*.example.com", "*.example.com", true}, // a pattern is not a name: Canonical refuses it
	} {
		if got := Match(tc.pattern, tc.name); got != tc.want {
			t.Errorf("Match(%q, %q) = %v, want %v", tc.pattern, tc.name, got, tc.want)
		}
	}
}
