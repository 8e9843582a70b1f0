package rules

import (
	"net/netip"
	"testing"
)

func TestClassify(t *testing.T) {
	for _, tc := range []struct {
		ip   string
		want Class
	}{
		{"8.8.8.8", ClassPublic},
		{"1.1.1.1", ClassPublic},
		{"127.0.0.1", ClassLoopback},
		{"127.255.255.254", ClassLoopback},
		{"10.0.0.1", ClassPrivate},
		{"172.16.0.1", ClassPrivate},
		{"172.31.255.255", ClassPrivate},
		{"172.32.0.1", ClassPublic},
		{"192.168.1.1", ClassPrivate},
		{"100.64.0.1", ClassCGNAT},
		{"100.100.100.200", ClassCGNAT}, // Alibaba Cloud metadata
		{"100.128.0.1", ClassPublic},
		{"169.254.169.254", ClassLinkLocal}, // AWS/GCP/Azure metadata
		{"169.254.0.1", ClassLinkLocal},
		{"224.0.0.1", ClassMulticast},
		{"239.255.255.250", ClassMulticast},
		{"0.0.0.0", ClassUnspecified},
		{"0.1.2.3", ClassReserved},
		{"255.255.255.255", ClassBroadcast},
		{"240.0.0.1", ClassReserved},
		{"198.18.0.1", ClassReserved}, // benchmarking: the tests' fake internet
		{"198.19.255.255", ClassReserved},
		{"198.20.0.1", ClassPublic},
		{"192.0.0.8", ClassReserved},
		{"192.0.2.1", ClassReserved},
		{"198.51.100.1", ClassReserved},
		{"203.0.113.1", ClassReserved},
		{"192.88.99.1", ClassReserved},

		{"2606:4700:4700::1111", ClassPublic},
		{"::", ClassUnspecified},
		{"::1", ClassLoopback},
		{"fe80::1", ClassLinkLocal},
		{"fe80::1%eth0", ClassLinkLocal},
		{"febf::1", ClassLinkLocal},
		{"fc00::1", ClassULA},
		{"fd12:3456::1", ClassULA},
		{"ff02::1", ClassMulticast},
		{"fec0::1", ClassReserved},
		{"100::1", ClassReserved},
		{"2001:db8::1", ClassReserved},
		{"3fff::1", ClassReserved},
		{"2001:2::1", ClassReserved},
		{"2001:10::1", ClassReserved},
		{"2001::1", ClassTeredo},
		{"2001:0:4136:e378:8000:63bf:3fff:fdd2", ClassTeredo},
		{"4000::1", ClassReserved}, // outside 2000::/3: unallocated

		// IPv4 inside IPv6.
		{"::ffff:8.8.8.8", ClassPublic},
		{"::ffff:169.254.169.254", ClassLinkLocal},
		{"::ffff:10.1.2.3", ClassPrivate},
		{"::ffff:127.0.0.1", ClassLoopback},
		{"::ffff:0.0.0.0", ClassUnspecified},
		{"64:ff9b::8.8.8.8", ClassNAT64},
		{"64:ff9b::169.254.169.254", ClassLinkLocal},
		{"64:ff9b::10.1.2.3", ClassPrivate},
		{"64:ff9b::100.100.100.200", ClassCGNAT},
		{"64:ff9b:1:a9fe:a9:fe00::", ClassLinkLocal}, // RFC 8215 local NAT64, 169.254.169.254
		{"64:ff9b:1:808:8:800::", ClassNAT64},        // 8.8.8.8
		{"2002:a9fe:a9fe::1", ClassLinkLocal},        // 6to4 of 169.254.169.254
		{"2002:0a01:0203::1", ClassPrivate},          // 6to4 of 10.1.2.3
		{"2002:7f00:1::1", ClassLoopback},
		{"2002:808:808::1", Class6to4},
		{"::10.1.2.3", ClassPrivate}, // IPv4-compatible
		{"::169.254.169.254", ClassLinkLocal},
		{"::8.8.8.8", ClassV4Compatible},
		{"::ffff:0:a01:203", ClassReserved}, // SIIT translated: not public

		{"168.63.129.16", ClassMetadata}, // Azure wireserver: a public address
		{"fd00:ec2::254", ClassMetadata}, // AWS IMDS over IPv6: a ULA
		{"::ffff:168.63.129.16", ClassMetadata},
		{"64:ff9b::168.63.129.16", ClassMetadata},

		{"", ClassInvalid},
	} {
		var ip netip.Addr
		if tc.ip != "" {
			ip = netip.MustParseAddr(tc.ip)
		}
		if got := Classify(ip); got != tc.want {
			t.Errorf("Classify(%s) = %s, want %s", tc.ip, got, tc.want)
		}
	}
}

func TestPermitted(t *testing.T) {
	pfxs := func(ss ...string) []netip.Prefix {
		var out []netip.Prefix
		for _, s := range ss {
			out = append(out, netip.MustParsePrefix(s))
		}
		return out
	}
	fakeInternet := pfxs("198.18.0.0/15")
	for _, tc := range []struct {
		ip       string
		endpoint []netip.Prefix
		config   []netip.Prefix
		want     bool
	}{
		{"8.8.8.8", nil, nil, true},
		{"2606:4700::1", nil, nil, true},
		{"10.1.2.3", nil, nil, false},
		{"10.1.2.3", pfxs("10.0.0.0/8"), nil, true},
		{"10.1.2.3", nil, pfxs("10.1.0.0/16"), true},
		{"10.1.2.3", pfxs("10.2.0.0/16"), nil, false},
		{"::ffff:10.1.2.3", pfxs("10.0.0.0/8"), nil, true}, // unmapped first
		{"::ffff:10.1.2.3", nil, nil, false},
		{"198.18.0.5", nil, fakeInternet, true},
		{"198.18.0.5", nil, nil, false},
		{"100.100.100.200", nil, nil, false},
		{"100.100.100.200", pfxs("100.64.0.0/10"), nil, true},
		{"fd00::1", pfxs("fd00::/8"), nil, true},
		{"fd00::1", nil, nil, false},
		{"64:ff9b::8.8.8.8", nil, nil, false},
		{"64:ff9b::8.8.8.8", nil, pfxs("64:ff9b::/96"), true},
		// Never, whatever is allowed.
		{"127.0.0.1", pfxs("0.0.0.0/0"), pfxs("127.0.0.0/8"), false},
		{"::1", pfxs("::/0"), nil, false},
		{"169.254.169.254", pfxs("169.254.0.0/16"), pfxs("0.0.0.0/0"), false},
		{"::ffff:169.254.169.254", pfxs("::/0", "0.0.0.0/0"), nil, false},
		{"64:ff9b::169.254.169.254", pfxs("::/0"), nil, false},
		{"2002:a9fe:a9fe::1", pfxs("::/0"), nil, false},
		{"fe80::1", pfxs("fe80::/10"), nil, false},
		{"224.0.0.1", pfxs("0.0.0.0/0"), nil, false},
		{"0.0.0.0", pfxs("0.0.0.0/0"), nil, false},
		{"::", pfxs("::/0"), nil, false},
		{"255.255.255.255", pfxs("0.0.0.0/0"), nil, false},
		{"168.63.129.16", nil, pfxs("0.0.0.0/0"), false},
		{"fd00:ec2::254", pfxs("fd00::/8"), nil, false},
	} {
		ok, reason := Permitted(netip.MustParseAddr(tc.ip), tc.endpoint, tc.config)
		if ok != tc.want {
			t.Errorf("Permitted(%s, %v, %v) = %v, want %v", tc.ip, tc.endpoint, tc.config, ok, tc.want)
		}
		if want := map[bool]Reason{true: ReasonAllowed, false: ReasonPrivateIP}[ok]; reason != want {
			t.Errorf("Permitted(%s): reason %s", tc.ip, reason)
		}
	}
	if ok, _ := Permitted(netip.Addr{}, pfxs("0.0.0.0/0"), nil); ok {
		t.Error("the zero Addr is permitted")
	}
}
