package fakenet

// What reaches the fake internet, counted by nftables in its namespace
// before any socket sees it: what a server never accepted or read is
// counted all the same.

import (
	"encoding/json"
	"fmt"
	"net"
	"strconv"
	"strings"
)

// markerPort is Flush's marker server; the counters leave it out.
const markerPort = 9

// watchTable is the net's table of counters in its namespace.
const watchTable = "fakenet"

// watch counts what arrives over the link from the host's side, where a
// filter's dials come from:
//
//	syns       TCP connection attempts (SYNs), but to the marker
//	datagrams  UDP datagrams
//	foreign    IPv4 packets from an address other than the host's
//	attempts4/6  syns and datagrams by destination address, protocol, port
func (n *Net) watch() error {
	rules := fmt.Sprintf(`table inet %[1]s {
	counter syns {}
	counter datagrams {}
	counter foreign {}
	set attempts4 { type ipv4_addr . inet_proto . inet_service; flags dynamic; counter; size 65535; }
	set attempts6 { type ipv6_addr . inet_proto . inet_service; flags dynamic; counter; size 65535; }
	chain attempt {
		update @attempts4 { ip daddr . meta l4proto . th dport }
		update @attempts6 { ip6 daddr . meta l4proto . th dport }
	}
	chain in {
		type filter hook prerouting priority -300; policy accept;
		iifname %[2]q meta nfproto ipv4 ip saddr != %[3]s counter name foreign
		iifname %[2]q tcp dport != %[4]d tcp flags & (syn | ack) == syn counter name syns jump attempt
		iifname %[2]q meta l4proto udp counter name datagrams jump attempt
	}
}
`, watchTable, n.NSIf, n.HostAddr(), markerPort)
	return n.nft(rules)
}

// nft loads rules into the namespace.
func (n *Net) nft(rules string) error {
	if _, err := runIn(rules, "ip", "netns", "exec", n.NS, "nft", "-f", "-"); err != nil {
		return fmt.Errorf("%w\n%s", err, rules)
	}
	return nil
}

// Counts are the counters of what reached the net from the host's side.
type Counts struct {
	SYNs      int // TCP connection attempts
	Datagrams int // UDP datagrams
	Foreign   int // IPv4 packets from an address other than the host's
}

// Counts reads the counters.
func (n *Net) Counts() (Counts, error) {
	byName, err := n.counters(watchTable)
	return Counts{SYNs: byName["syns"], Datagrams: byName["datagrams"], Foreign: byName["foreign"]}, err
}

// counters are the packet counts of the named counters of table in the
// namespace.
func (n *Net) counters(table string) (map[string]int, error) {
	out, err := run("ip", "netns", "exec", n.NS, "nft", "-j", "list", "counters", "table", "inet", table)
	if err != nil {
		return nil, err
	}
	var doc struct {
		Nftables []struct {
			Counter *struct {
				Name    string `json:"name"`
				Packets int    `json:"packets"`
			} `json:"counter"`
		} `json:"nftables"`
	}
	if err := json.Unmarshal([]byte(out), &doc); err != nil {
		return nil, fmt.Errorf("nft -j list counters table inet %s: %v\n%s", table, err, out)
	}
	byName := map[string]int{}
	for _, o := range doc.Nftables {
		if o.Counter != nil {
			byName[o.Counter.Name] = o.Counter.Packets
		}
	}
	if len(byName) == 0 {
		return nil, fmt.Errorf("no counters in table inet %s: %s", table, out)
	}
	return byName, nil
}

// AttemptsTo is how many TCP connection attempts (proto "tcp") or UDP
// datagrams ("udp") to addr:port came over the link from the host's side.
func (n *Net) AttemptsTo(proto, addr string, port int) (int, error) {
	return n.setCount(watchTable, "attempts", proto, addr, port)
}

// setCount reads the counter of element (addr, proto, port) of a set
// SET4 or SET6 (by addr's family) of table.
func (n *Net) setCount(table, set, proto, addr string, port int) (int, error) {
	set += "4"
	if strings.Contains(addr, ":") {
		set = strings.TrimSuffix(set, "4") + "6"
	}
	out, err := run("ip", "netns", "exec", n.NS, "nft", "-j", "list", "set", "inet", table, set)
	if err != nil {
		return 0, err
	}
	var doc struct {
		Nftables []struct {
			Set *struct {
				Elem []struct {
					Elem struct {
						Val struct {
							Concat []any `json:"concat"`
						} `json:"val"`
						Counter struct {
							Packets int `json:"packets"`
						} `json:"counter"`
					} `json:"elem"`
				} `json:"elem"`
			} `json:"set"`
		} `json:"nftables"`
	}
	if err := json.Unmarshal([]byte(out), &doc); err != nil {
		return 0, fmt.Errorf("nft -j list set %s: %v\n%s", set, err, out)
	}
	want := []string{net.ParseIP(addr).String(), proto, strconv.Itoa(port)}
	for _, o := range doc.Nftables {
		if o.Set == nil {
			continue
		}
		for _, e := range o.Set.Elem {
			c := e.Elem.Val.Concat
			if len(c) != 3 {
				continue
			}
			got := []string{fmt.Sprint(c[0]), fmt.Sprint(c[1]), fmt.Sprint(c[2])}
			if ip := net.ParseIP(got[0]); ip != nil {
				got[0] = ip.String()
			}
			if got[0] == want[0] && got[1] == want[1] && got[2] == want[2] {
				return e.Elem.Counter.Packets, nil
			}
		}
	}
	return 0, nil
}
