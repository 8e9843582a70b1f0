// Package hostname owns the host names of clawrun's policy language and
// of its egress filter: which hosts and wildcard patterns a policy may
// name (ParsePattern), the one form in which names are compared
// (Canonical), and how a pattern matches a name (Match). The policy
// parser, the egress filter (its rules, DNS resolver and SNI/Host proxy)
// and `clawrun policy explain` all use it, so that a name means the same
// thing to each of them.
//
// It imports neither the policy package nor the filter, which both
// import it.
package hostname

import (
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"unicode"
	"unicode/utf8"

	"golang.org/x/net/idna"
	"golang.org/x/net/publicsuffix"
)

// MaxLen is the longest name, without its trailing dot (RFC 1035).
const MaxLen = 253

// maxLabel is the longest label.
const maxLabel = 63

// wildcard is the label that makes a pattern match one more label.
const wildcard = "*"

// idnaProfile converts the non-ASCII labels of a name and checks its
// A-labels ("xn--..."). It is UTS #46 non-transitional processing ("ß"
// stays "ß", as browsers do) that maps nothing: a U-label must already be
// in its IDNA form (lower case, NFC, no compatibility characters), or the
// name is refused, because a server may read such bytes as some other
// name than the one matched. Underscores (_dmarc, _acme-challenge) and
// hyphens anywhere (r3---sn-x.googlevideo.com) are allowed, as the DNS
// and real names use them: idna.Lookup and idna.Registration refuse both.
// Which ASCII characters a label may hold is checked here, not by idna.
var idnaProfile = idna.New(
	idna.ValidateForRegistration(), // no mapping; NFC, bidi, joiners, lengths
	idna.Transitional(false),
	idna.StrictDomainName(false), // '_'; other ASCII is checked by validLabel
	idna.CheckHyphens(false),
)

// Canonical returns a name as policies and the filter compare it:
// ASCII letters lower-cased, without its trailing dot, every label an
// ASCII label (letters, digits, '-' and '_', 1 to 63 bytes) or an A-label,
// at most 253 bytes. A U-label becomes its A-label (names on the wire
// never reach here as U-labels: the filter's parsers of SNI, Host and
// DNS questions take ASCII only). It reports false for anything else, so
// that such a name matches nothing, not even a wildcard:
//   - characters other than letters, digits, '-', '_' and '.' (an escaped
//     byte of a DNS name, '*', a space);
//   - an "xn--" label that is not the canonical A-label of a valid
//     U-label;
//   - a U-label that is not already in IDNA form: upper case, not NFC,
//     compatibility characters (fullwidth letters, the ideographic full
//     stop), or characters other than letters, marks and digits (IDNA2008
//     has no symbols such as U+2603).
func Canonical(name string) (string, bool) {
	name, err := canonical(name)
	return name, err == nil
}

// canonical is Canonical with the reason for a refusal.
func canonical(name string) (string, error) {
	name = lowerASCII(strings.TrimSuffix(name, "."))
	if name == "" {
		return "", errors.New("empty name")
	}
	if needsIDNA(name) {
		if err := checkRunes(name); err != nil {
			return "", err
		}
		a, err := idnaProfile.ToASCII(name)
		if err != nil {
			return "", fmt.Errorf("not a valid internationalized name: %v", err)
		}
		if isASCII(name) && a != name {
			// An A-label decoders accept but that is not how its
			// U-label is written.
			return "", fmt.Errorf("%.80q is not a canonical A-label", name)
		}
		name = a
	}
	if len(name) > MaxLen {
		return "", fmt.Errorf("longer than %d characters", MaxLen)
	}
	for l := range strings.SplitSeq(name, ".") {
		if !validLabel(l) {
			return "", labelError(l)
		}
	}
	return name, nil
}

// ParsePattern checks an endpoint host as a policy writes it and returns
// its canonical form: a name, or "*." and a name of at least two labels.
// The policy's rules are stricter than Canonical's: ASCII only (an
// internationalized name is written as its A-labels), no label starting
// or ending with '-', no IP address and no numeric top-level label, and
// the wildcard only as the whole first label of a pattern that names a
// domain below the top level and below every public suffix ("*", "*.com"
// and "*.co.uk" are refused). The filter
// uses it too for the hosts of a compiled policy, so that every pattern
// the policy accepts is one the filter matches.
func ParsePattern(host string) (string, error) {
	if host == "" {
		return "", errors.New("empty host")
	}
	if IsIPLiteral(host) {
		return "", errors.New("IP addresses are not allowed as host; name the host and list its addresses in allowed_ips")
	}
	h := lowerASCII(strings.TrimSuffix(host, "."))
	if len(h) > MaxLen {
		return "", fmt.Errorf("longer than %d characters", MaxLen)
	}
	labels := strings.Split(h, ".")
	wild := labels[0] == wildcard
	if wild {
		labels = labels[1:]
	}
	for _, l := range labels {
		if strings.Contains(l, wildcard) {
			return "", errors.New(`a wildcard is allowed only as the whole first label, as in "*.example.com"`)
		}
	}
	if wild && len(labels) < 2 {
		return "", errors.New(`over-broad wildcard; "*." must be followed by at least two labels, as in "*.example.com"`)
	}
	for _, l := range labels {
		if l == "" {
			return "", errors.New("empty label")
		}
		if !validLabel(l) || strings.HasPrefix(l, "-") || strings.HasSuffix(l, "-") {
			return "", labelError(l)
		}
	}
	// No top-level domain is numeric: "10.1" or "1.2.3.4.5" is an address
	// in disguise or a typo.
	if tld := labels[len(labels)-1]; strings.Trim(tld, "0123456789") == "" {
		return "", errors.New("looks like an IP address; name the host and list its addresses in allowed_ips")
	}
	name, err := canonical(strings.Join(labels, "."))
	if err != nil {
		return "", err
	}
	if wild {
		// "*.co.uk" has two labels and still names every domain of a
		// country: a wildcard must be below a registrable domain. Only
		// ICANN's suffixes count; the list's private ones ("github.io")
		// are domains someone owns, which a policy may mean.
		if suffix, icann := publicsuffix.PublicSuffix(name); icann && suffix == name {
			return "", fmt.Errorf(`over-broad wildcard; %q is a public suffix, under which anyone registers names: name a domain below it, as in "*.example.%s"`, name, name)
		}
		return wildcard + "." + name, nil
	}
	return name, nil
}

// IsWildcard reports whether a pattern starts with the wildcard label.
func IsWildcard(pattern string) bool {
	return strings.HasPrefix(pattern, wildcard+".")
}

// Match reports whether a canonical name matches a canonical pattern
// (from ParsePattern): the same name, or for "*." + domain a name of
// exactly one more label than domain. "*.example.com" matches
// "a.example.com", never "example.com" nor "a.b.example.com".
func Match(pattern, name string) bool {
	if domain, ok := strings.CutPrefix(pattern, wildcard+"."); ok {
		label, ok := strings.CutSuffix(name, "."+domain)
		return ok && label != "" && !strings.Contains(label, ".")
	}
	return pattern == name
}

// IsIPLiteral reports whether host is an IP address, bracketed or not.
func IsIPLiteral(host string) bool {
	h := strings.TrimSuffix(strings.TrimPrefix(host, "["), "]")
	_, err := netip.ParseAddr(h)
	return err == nil
}

// validLabel reports an ASCII label of letters, digits, '-' and '_' of 1
// to 63 bytes, lower case.
func validLabel(l string) bool {
	if len(l) == 0 || len(l) > maxLabel {
		return false
	}
	for i := 0; i < len(l); i++ {
		c := l[i]
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
			return false
		}
	}
	return true
}

func labelError(l string) error {
	return fmt.Errorf("invalid DNS label %.80q (letters, digits, '-' and '_', at most 63; an internationalized name is written as its xn-- A-labels)", l)
}

// needsIDNA reports a name with non-ASCII bytes or an "xn--" label.
func needsIDNA(name string) bool {
	return !isASCII(name) || strings.HasPrefix(name, "xn--") || strings.Contains(name, ".xn--")
}

// checkRunes refuses what the IDNA profile would accept but IDNA2008
// does not: a non-ASCII character that is not a letter, mark or digit.
func checkRunes(name string) error {
	if !utf8.ValidString(name) {
		return errors.New("not valid UTF-8")
	}
	for _, r := range name {
		if r >= utf8.RuneSelf && !unicode.In(r, unicode.L, unicode.M, unicode.N) {
			return fmt.Errorf("%q is not a letter, mark or digit", r)
		}
	}
	return nil
}

func isASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= utf8.RuneSelf {
			return false
		}
	}
	return true
}

// lowerASCII lower-cases the ASCII letters of s only: the case of other
// letters is IDNA's to map, and a name that needs it is refused.
func lowerASCII(s string) string {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c >= 'A' && c <= 'Z' {
			b := []byte(s)
			for j := i; j < len(b); j++ {
				if c := b[j]; c >= 'A' && c <= 'Z' {
					b[j] = c + 'a' - 'A'
				}
			}
			return string(b)
		}
	}
	return s
}
