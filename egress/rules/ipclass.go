package rules

import "net/netip"

// Class is the kind of address an IP is, for deciding whether a
// confined container may connect to it.
type Class string

const (
	ClassPublic       Class = "public"
	ClassLoopback     Class = "loopback"      // 127/8, ::1
	ClassPrivate      Class = "private"       // RFC 1918
	ClassCGNAT        Class = "cgnat"         // 100.64/10 (incl. Alibaba metadata 100.100.100.200)
	ClassLinkLocal    Class = "link_local"    // 169.254/16 (cloud metadata), fe80::/10
	ClassULA          Class = "ula"           // fc00::/7
	ClassMulticast    Class = "multicast"     // 224/4, ff00::/8
	ClassUnspecified  Class = "unspecified"   // 0.0.0.0, ::
	ClassBroadcast    Class = "broadcast"     // 255.255.255.255
	ClassReserved     Class = "reserved"      // documentation, benchmarking, "this network", unallocated
	ClassNAT64        Class = "nat64"         // 64:ff9b::/96, 64:ff9b:1::/48 with a public IPv4 inside
	Class6to4         Class = "6to4"          // 2002::/16 with a public IPv4 inside
	ClassTeredo       Class = "teredo"        // 2001::/32
	ClassV4Compatible Class = "v4_compatible" // ::a.b.c.d (deprecated) with a public IPv4 inside
	ClassMetadata     Class = "metadata"      // cloud host services outside link-local: fd00:ec2::254 (AWS), 168.63.129.16 (Azure)
	ClassInvalid      Class = "invalid"       // the zero netip.Addr
)

func mustPrefix(s string) netip.Prefix { return netip.MustParsePrefix(s) }

// v4Classes are checked in order; the first prefix containing the address
// gives its class.
var v4Classes = []struct {
	p netip.Prefix
	c Class
}{
	{mustPrefix("168.63.129.16/32"), ClassMetadata},
	{mustPrefix("0.0.0.0/32"), ClassUnspecified},
	{mustPrefix("255.255.255.255/32"), ClassBroadcast},
	{mustPrefix("0.0.0.0/8"), ClassReserved}, // "this network"
	{mustPrefix("127.0.0.0/8"), ClassLoopback},
	{mustPrefix("10.0.0.0/8"), ClassPrivate},
	{mustPrefix("172.16.0.0/12"), ClassPrivate},
	{mustPrefix("192.168.0.0/16"), ClassPrivate},
	{mustPrefix("100.64.0.0/10"), ClassCGNAT},
	{mustPrefix("169.254.0.0/16"), ClassLinkLocal},
	{mustPrefix("224.0.0.0/4"), ClassMulticast},
	{mustPrefix("240.0.0.0/4"), ClassReserved},
	{mustPrefix("192.0.0.0/24"), ClassReserved},   // IETF protocol assignments
	{mustPrefix("192.0.2.0/24"), ClassReserved},   // TEST-NET-1
	{mustPrefix("192.88.99.0/24"), ClassReserved}, // 6to4 relay anycast (deprecated)
	{mustPrefix("198.18.0.0/15"), ClassReserved},  // benchmarking
	{mustPrefix("198.51.100.0/24"), ClassReserved},
	{mustPrefix("203.0.113.0/24"), ClassReserved},
}

var v6Classes = []struct {
	p netip.Prefix
	c Class
}{
	{mustPrefix("fd00:ec2::254/128"), ClassMetadata},
	{mustPrefix("::/128"), ClassUnspecified},
	{mustPrefix("::1/128"), ClassLoopback},
	{mustPrefix("fe80::/10"), ClassLinkLocal},
	{mustPrefix("fc00::/7"), ClassULA},
	{mustPrefix("ff00::/8"), ClassMulticast},
	{mustPrefix("fec0::/10"), ClassReserved},     // site-local (deprecated)
	{mustPrefix("100::/64"), ClassReserved},      // discard
	{mustPrefix("2001:db8::/32"), ClassReserved}, // documentation
	{mustPrefix("3fff::/20"), ClassReserved},     // documentation (RFC 9637)
	{mustPrefix("2001:2::/48"), ClassReserved},   // benchmarking
	{mustPrefix("2001:10::/28"), ClassReserved},  // ORCHID
	{mustPrefix("2001:20::/28"), ClassReserved},  // ORCHIDv2
	{mustPrefix("2001::/32"), ClassTeredo},
}

var (
	v4Compatible = mustPrefix("::/96")
	nat64        = mustPrefix("64:ff9b::/96")
	nat64Local   = mustPrefix("64:ff9b:1::/48")
	sixToFour    = mustPrefix("2002::/16")
	globalV6     = mustPrefix("2000::/3")
)

// Classify returns the class of an address. An IPv4-mapped IPv6 address
// (::ffff:a.b.c.d) is classified as its IPv4 address. NAT64, 6to4 and
// IPv4-compatible addresses embed an IPv4 address: when that one is not
// public its class is returned (64:ff9b::169.254.169.254 is link_local),
// else nat64, 6to4 or v4_compatible, which are not public either (they
// reach an IPv4 host through a translator the policy does not know).
// IPv6 is public only inside 2000::/3, outside the special ranges.
func Classify(ip netip.Addr) Class {
	if !ip.IsValid() {
		return ClassInvalid
	}
	ip = ip.WithZone("").Unmap()
	if ip.Is4() {
		for _, c := range v4Classes {
			if c.p.Contains(ip) {
				return c.c
			}
		}
		return ClassPublic
	}
	for _, c := range v6Classes {
		if c.p.Contains(ip) {
			return c.c
		}
	}
	b := ip.As16()
	var embedded netip.Addr
	var outer Class
	switch {
	case v4Compatible.Contains(ip):
		embedded, outer = netip.AddrFrom4([4]byte(b[12:16])), ClassV4Compatible
	case nat64.Contains(ip):
		embedded, outer = netip.AddrFrom4([4]byte(b[12:16])), ClassNAT64
	case nat64Local.Contains(ip):
		// RFC 6052 /48: the IPv4 address is split around the u octet (8).
		embedded, outer = netip.AddrFrom4([4]byte{b[6], b[7], b[9], b[10]}), ClassNAT64
	case sixToFour.Contains(ip):
		embedded, outer = netip.AddrFrom4([4]byte(b[2:6])), Class6to4
	case globalV6.Contains(ip):
		return ClassPublic
	default:
		return ClassReserved // unallocated
	}
	if c := Classify(embedded); c != ClassPublic {
		return c
	}
	return outer
}

// alwaysBlocked classes are never opened, whatever allowed_ips or the
// runtime config say (as OpenShell does): the host itself, cloud metadata,
// and addresses that are not one destination.
func alwaysBlocked(c Class) bool {
	switch c {
	case ClassLoopback, ClassLinkLocal, ClassMetadata, ClassMulticast, ClassUnspecified, ClassBroadcast, ClassInvalid:
		return true
	}
	return false
}

// Permitted says whether a container may connect to ip. Public addresses
// are; any other is only if it lies in endpointAllowed (the matched
// endpoints' allowed_ips, Decision.AllowedIPs) or in configAllowed (the
// runtime config's allowed_upstream_ranges), except loopback, link-local
// and other cloud metadata addresses, multicast, unspecified and
// broadcast addresses, which stay blocked whatever is allowed. An IPv4-mapped address is unmapped
// before the prefixes are checked.
func Permitted(ip netip.Addr, endpointAllowed []netip.Prefix, configAllowed []netip.Prefix) (bool, Reason) {
	c := Classify(ip)
	switch {
	case c == ClassPublic:
		return true, ReasonAllowed
	case alwaysBlocked(c):
		return false, ReasonPrivateIP
	}
	ip = ip.WithZone("").Unmap()
	for _, set := range [][]netip.Prefix{endpointAllowed, configAllowed} {
		for _, p := range set {
			if p.Contains(ip) {
				return true, ReasonAllowed
			}
		}
	}
	return false, ReasonPrivateIP
}
