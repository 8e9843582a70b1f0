package fakenet

import (
	"errors"
	"fmt"
	"slices"
)

// ClientOptions shape a client namespace.
type ClientOptions struct {
	Name  string // ends the namespace's name
	Block int    // its link's /24: the client is .2 on it, its gateway .1
	// ViaHost links it to the host, which routes on, rather than
	// straight into the fake internet.
	ViaHost bool
}

// Client is a network namespace with a real route into the fake internet,
// as Docker's or a CNI's would be, for containers to join: without a
// filter, everything it sends gets there. Unprivileged ICMP sockets are
// allowed in it (as Docker allows them): only a filter may stop a ping.
type Client struct {
	NS                string
	If                string // its end of the link: eth0
	PeerIf            string // the other end, in the fake internet or on the host
	IP, IP6           string // its addresses (IP6 if the net has IPv6 and not ViaHost)
	Gateway, Gateway6 string
	n                 *Net
	peerNS            string // where PeerIf is ("": the host)
	table             string // its counters in the fake internet ("": none, ViaHost or Uncounted)
}

// AddClient makes a client namespace; Close (or the net's) removes it.
func (n *Net) AddClient(o ClientOptions) (_ *Client, err error) {
	c := &Client{NS: NetnsName(o.Name), If: "eth0", IP: n.IP(o.Block, 2), Gateway: n.IP(o.Block, 1), n: n, peerNS: n.NS}
	var tmp string
	c.PeerIf, tmp = linkPair()
	peer := func(args ...string) []string { return append([]string{"ip", "-n", n.NS}, args...) }
	peerAt := []string{"netns", n.NS}
	if o.ViaHost {
		peer = func(args ...string) []string { return append([]string{"ip"}, args...) }
		peerAt, c.peerNS = nil, ""
	}
	self := func(args ...string) []string { return append([]string{"ip", "-n", c.NS}, args...) }
	cmds := [][]string{
		{"ip", "netns", "add", c.NS},
		append([]string{"ip", "link", "add", tmp, "netns", c.NS, "type", "veth", "peer", "name", c.PeerIf}, peerAt...),
		self("link", "set", tmp, "name", c.If),
		self("link", "set", "lo", "up"),
		self("addr", "add", c.IP+"/24", "dev", c.If),
		self("link", "set", c.If, "up"),
		peer("addr", "add", c.Gateway+"/24", "dev", c.PeerIf),
		peer("link", "set", c.PeerIf, "up"),
		self("route", "add", "default", "via", c.Gateway),
	}
	if n.opts.IPv6 && !o.ViaHost {
		c.IP6, c.Gateway6 = n.IP6(o.Block, 2), n.IP6(o.Block, 1)
		cmds = append(cmds,
			self("-6", "addr", "add", c.IP6+"/112", "dev", c.If, "nodad"),
			peer("-6", "addr", "add", c.Gateway6+"/112", "dev", c.PeerIf, "nodad"),
			self("-6", "route", "add", "default", "via", c.Gateway6))
	}
	cmds = append(cmds, []string{"ip", "netns", "exec", c.NS, "sh", "-c", "echo 0 2147483647 > /proc/sys/net/ipv4/ping_group_range"})
	n.mu.Lock()
	n.clients = append(n.clients, c)
	n.mu.Unlock()
	defer func() {
		if err != nil {
			err = errors.Join(err, c.Close())
		}
	}()
	if err := runAll(cmds); err != nil {
		return nil, err
	}
	if !o.ViaHost && !n.opts.Uncounted {
		if err := c.watch(o.Block); err != nil {
			return nil, err
		}
	}
	return c, nil
}

var errNoCounters = errors.New("no counters: the client is linked to the host, or the net is Uncounted")

// NetnsPath is the namespace's path, for a container to join.
func (c *Client) NetnsPath() string { return "/run/netns/" + c.NS }

// watch counts, in the fake internet, the packets from the client's
// addresses (from4, from6) and, by destination, its TCP and UDP packets
// (seen4, seen6).
func (c *Client) watch(block int) error {
	c.table = fmt.Sprintf("%s_%s", watchTable, c.PeerIf)
	return c.n.nft(fmt.Sprintf(`table inet %[1]s {
	counter from4 {}
	counter from6 {}
	set seen4 { type ipv4_addr . inet_proto . inet_service; flags dynamic; counter; size 65535; }
	set seen6 { type ipv6_addr . inet_proto . inet_service; flags dynamic; counter; size 65535; }
	chain in {
		type filter hook prerouting priority -300; policy accept;
		ip saddr %[2]s counter name from4
		ip6 saddr %[3]s counter name from6
		ip saddr %[2]s meta l4proto { tcp, udp } update @seen4 { ip daddr . meta l4proto . th dport }
		ip6 saddr %[3]s meta l4proto { tcp, udp } update @seen6 { ip6 daddr . meta l4proto . th dport }
	}
}
`, c.table, c.IP, c.n.Prefix6(block)))
}

// Packets is how many packets from the client's addresses reached the
// fake internet: the kernel's own (neighbour discovery, retries) too.
func (c *Client) Packets() (int, error) {
	if c.table == "" {
		return 0, errNoCounters
	}
	byName, err := c.n.counters(c.table)
	return byName["from4"] + byName["from6"], err
}

// PacketsTo is how many TCP or UDP packets (proto "tcp", "udp") from the
// client's addresses to addr:port reached the fake internet: what one
// probe sent, where Packets also counts the kernel's own.
func (c *Client) PacketsTo(proto, addr string, port int) (int, error) {
	if c.table == "" {
		return 0, errNoCounters
	}
	return c.n.setCount(c.table, "seen", proto, addr, port)
}

// Close removes the client's namespace, its link and its counters.
func (c *Client) Close() error {
	c.n.mu.Lock()
	i := slices.Index(c.n.clients, c)
	if i >= 0 {
		c.n.clients = slices.Delete(c.n.clients, i, i+1)
	}
	c.n.mu.Unlock()
	if i < 0 {
		return nil // closed before
	}
	var errs []error
	if c.table != "" {
		_, err := run("ip", "netns", "exec", c.n.NS, "nft", "delete", "table", "inet", c.table)
		errs = append(errs, err)
	}
	errs = append(errs, deleteLink(c.peerNS, c.PeerIf), removeNetns(c.NS))
	return errors.Join(errs...)
}
