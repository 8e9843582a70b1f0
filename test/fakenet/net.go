// Package fakenet is the internet of clawrun's tests, of its demo and of
// its egress benchmark, which run on offline machines: a network namespace
// linked to the host by a veth pair, with servers in it (DNS, HTTP, TLS,
// TCP and UDP echo) that record everything they receive, nftables counters
// of every connection attempt and datagram that reaches it, and client
// namespaces with a real route into it, as a container's would be.
//
// Everything is in the benchmarking range 198.18.0.0/15 (RFC 2544) and,
// for IPv6, in fd00:c1a0::/64: nothing here sends traffic anywhere else.
// The servers run in the process that starts the net (their sockets are
// made in the namespace); a command that only serves (the demo's) holds
// it with Hold.
package fakenet

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"
)

// Options shape a fake internet.
type Options struct {
	// Blocks is how many /24s the net takes (1 if 0). Block 0 is the link
	// to the host: the host is .1 on it, the namespace .2. The others are
	// for clients' links, Routed ranges or the caller's own use (a
	// container engine's bridges): all are reserved on the host.
	Blocks int
	// IPv6 gives the link IPv6 addresses as well (see IP6).
	IPv6 bool
	// Hosts are more addresses of the namespace: on its end of the link
	// for block 0, on its loopback for another block.
	Hosts []Host
	// Routed are blocks (not 0) that the host reaches through the
	// namespace.
	Routed []int
	// Log, if set, gets every event as a line when it happens.
	Log io.Writer
	// Uncounted leaves out the nftables counters, of the net and of its
	// clients, for a benchmark: nothing but the links on the paths it
	// measures.
	Uncounted bool
}

// Host is address .N of block Block.
type Host struct{ Block, N int }

// Net is a running fake internet.
type Net struct {
	NS     string // the network namespace (ip netns)
	HostIf string // the host's end of the link
	NSIf   string // the namespace's end
	base   int    // block 0's index in 198.18.0.0/15
	opts   Options
	certs  certs

	mu      sync.Mutex
	events  []Event
	stops   []func() // what Close stops, in reverse
	clients []*Client

	servedMu sync.Mutex
	served   map[string]bool // "tcp/PORT", "udp/PORT": the servers' sockets, which Flush drains
}

// nsPrefix begins the name of every namespace of this package; the pid
// of the process that made it follows.
const nsPrefix = "clawrun-fakenet-"

var seq atomic.Int64

// NetnsName is a new name for a network namespace of this process,
// nsPrefix-PID-SEQ[-what]: once the process is gone, the next Start (of
// any process) deletes a namespace so named that is left.
func NetnsName(what string) string {
	s := fmt.Sprintf("%s%d-%d", nsPrefix, os.Getpid(), seq.Add(1))
	if what != "" {
		s += "-" + what
	}
	return s
}

// linkPair names a veth pair (at most 15 bytes each).
func linkPair() (string, string) {
	s := fmt.Sprintf("fk%dl%d", os.Getpid()%1000000, seq.Add(1))
	return s + "a", s + "b"
}

// Start makes a fake internet: picks a free block, makes the namespace and
// its link, and starts the nftables counters and the marker server of
// Flush. Servers are added with the Serve methods; Close removes it all.
func Start(o Options) (_ *Net, err error) {
	o.Blocks = max(o.Blocks, 1)
	removeStale()
	unlock, err := lock()
	if err != nil {
		return nil, err
	}
	defer func() {
		if unlock != nil {
			unlock()
		}
	}()
	base, err := pick(o.Blocks)
	if err != nil {
		return nil, err
	}
	n := &Net{NS: NetnsName(""), base: base, opts: o, served: map[string]bool{}}
	n.HostIf, n.NSIf = linkPair()
	defer func() {
		if err != nil {
			err = errors.Join(err, n.Close())
		}
	}()
	if err := n.link(); err != nil {
		return nil, err
	}
	unlock()
	unlock = nil
	if err := n.addHosts(); err != nil {
		return nil, err
	}
	if err := n.certs.init(); err != nil {
		return nil, err
	}
	if !o.Uncounted {
		if err := n.watch(); err != nil {
			return nil, err
		}
	}
	if err := n.serveMarkers(); err != nil {
		return nil, err
	}
	if err := n.waitLink(); err != nil {
		return nil, err
	}
	return n, nil
}

// link makes the namespace, the veth pair and the host's routes: block 0
// on the link, the Routed blocks through the namespace, the others
// reserved (reserveTable).
func (n *Net) link() error {
	ns := func(args ...string) []string { return append([]string{"ip", "-n", n.NS}, args...) }
	cmds := [][]string{
		{"ip", "netns", "add", n.NS},
		{"ip", "link", "add", n.HostIf, "type", "veth", "peer", "name", n.NSIf, "netns", n.NS},
		{"ip", "addr", "add", n.IP(0, 1) + "/24", "dev", n.HostIf},
		{"ip", "link", "set", n.HostIf, "up"},
		ns("link", "set", "lo", "up"),
		ns("addr", "add", n.IP(0, 2)+"/24", "dev", n.NSIf),
		ns("link", "set", n.NSIf, "up"),
	}
	if n.opts.IPv6 {
		cmds = append(cmds,
			[]string{"ip", "-6", "addr", "add", n.IP6(0, 1) + "/112", "dev", n.HostIf, "nodad"},
			ns("-6", "addr", "add", n.IP6(0, 2)+"/112", "dev", n.NSIf, "nodad"))
	}
	for b := 1; b < n.opts.Blocks; b++ {
		if slices.Contains(n.opts.Routed, b) {
			cmds = append(cmds, []string{"ip", "route", "add", n.Prefix(b), "via", n.Addr(), "dev", n.HostIf})
		} else {
			cmds = append(cmds, []string{"ip", "route", "add", n.Prefix(b), "dev", n.HostIf, "table", reserveTable})
		}
	}
	return runAll(cmds)
}

func (n *Net) addHosts() error {
	var cmds [][]string
	for _, h := range n.opts.Hosts {
		dev := "lo"
		if h.Block == 0 {
			dev = n.NSIf
		}
		cmds = append(cmds, []string{"ip", "-n", n.NS, "addr", "add", n.IP(h.Block, h.N) + "/32", "dev", dev})
	}
	return runAll(cmds)
}

// waitLink waits until the namespace answers the host over the link (the
// marker server).
func (n *Net) waitLink() error {
	deadline := time.Now().Add(10 * time.Second)
	for {
		err := n.marker()
		if err == nil || time.Now().After(deadline) {
			return err
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Close stops the servers and removes the clients, the namespace and the
// link (and with it the host's routes).
func (n *Net) Close() error {
	n.mu.Lock()
	stops, clients := n.stops, slices.Clone(n.clients)
	n.stops = nil
	n.mu.Unlock()
	for i := len(stops) - 1; i >= 0; i-- {
		stops[i]()
	}
	var errs []error
	for _, c := range clients {
		errs = append(errs, c.Close())
	}
	errs = append(errs, deleteLink("", n.HostIf), removeNetns(n.NS))
	return errors.Join(errs...)
}

// removeNetns deletes a named namespace if it is there.
func removeNetns(ns string) error {
	if _, err := os.Stat("/run/netns/" + ns); err != nil {
		return nil
	}
	_, err := run("ip", "netns", "del", ns)
	return err
}

// deleteLink deletes a link (a veth: its peer goes with it) of namespace
// ns ("": the host's) if it is there.
func deleteLink(ns, ifname string) error {
	argv := []string{"ip", "link", "del", ifname}
	if ns != "" {
		argv = []string{"ip", "-n", ns, "link", "del", ifname}
	}
	out, err := run(argv[0], argv[1:]...)
	if err != nil && strings.Contains(out, "Cannot find device") {
		return nil
	}
	return err
}

// removeStale deletes the namespaces of this package whose process is
// gone (one killed never closes its net); their links go with them.
func removeStale() {
	ents, _ := os.ReadDir("/run/netns")
	for _, e := range ents {
		rest, ok := strings.CutPrefix(e.Name(), nsPrefix)
		if !ok {
			continue
		}
		pidStr, _, _ := strings.Cut(rest, "-")
		pid, err := strconv.Atoi(pidStr)
		if err != nil || pid == os.Getpid() || unix.Kill(pid, 0) == nil {
			continue
		}
		_, _ = run("ip", "netns", "del", e.Name())
	}
}

// index is the index of block b in 198.18.0.0/15.
func (n *Net) index(b int) int { return n.base + b }

// IP is address .host of block b.
func (n *Net) IP(b, host int) string {
	p := prefixOf(n.index(b)).Addr().As4()
	p[3] = byte(host)
	return net.IP(p[:]).String()
}

// Prefix is block b (a.b.c.0/24).
func (n *Net) Prefix(b int) string { return prefixOf(n.index(b)).String() }

// IP6 is the IPv6 address .host of block b: fd00:c1a0::G:H, G the block's
// index in 198.18.0.0/15 and H the host, in hex.
func (n *Net) IP6(b, host int) string {
	return net.ParseIP(fmt.Sprintf("fd00:c1a0::%x:%x", n.index(b), host)).String()
}

// Prefix6 is block b's IPv6 /112.
func (n *Net) Prefix6(b int) string { return n.IP6(b, 0) + "/112" }

// Addr is the namespace's address on the link (the DNS server's).
func (n *Net) Addr() string { return n.IP(0, 2) }

// HostAddr is the host's address on the link.
func (n *Net) HostAddr() string { return n.IP(0, 1) }

// addrs are the namespace's addresses of the options.
func (n *Net) addrs() []string {
	out := []string{n.Addr()}
	if n.opts.IPv6 {
		out = append(out, n.IP6(0, 2))
	}
	for _, h := range n.opts.Hosts {
		out = append(out, n.IP(h.Block, h.N))
	}
	return out
}

// NetnsPath is the namespace's path, for a container to join.
func (n *Net) NetnsPath() string { return "/run/netns/" + n.NS }

// AddLocal gives the namespace one more address (on its loopback) and
// routes it there from the host, until remove.
func (n *Net) AddLocal(addr string) (remove func() error, err error) {
	host := addr + "/32"
	if _, err := run("ip", "-n", n.NS, "addr", "add", host, "dev", "lo"); err != nil {
		return nil, err
	}
	if _, err := run("ip", "route", "add", host, "via", n.Addr(), "dev", n.HostIf); err != nil {
		_, _ = run("ip", "-n", n.NS, "addr", "del", host, "dev", "lo")
		return nil, err
	}
	return func() error {
		_, err1 := run("ip", "route", "del", host, "via", n.Addr(), "dev", n.HostIf)
		_, err2 := run("ip", "-n", n.NS, "addr", "del", host, "dev", "lo")
		return errors.Join(err1, err2)
	}, nil
}

// InNS runs f on a thread in the namespace: the sockets it makes live
// there.
func (n *Net) InNS(f func() error) error { return InNetns(n.NetnsPath(), f) }

// InNetns runs f on a thread switched into the network namespace at path,
// and switched back after. (A thread left in another namespace would be
// the process's main thread at times: Go keeps that one, and
// /proc/self/net would show the other namespace.)
func InNetns(path string, f func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		self, err := os.Open("/proc/thread-self/ns/net")
		if err != nil {
			runtime.UnlockOSThread()
			errc <- err
			return
		}
		defer self.Close()
		target, err := os.Open(path)
		if err != nil {
			runtime.UnlockOSThread()
			errc <- err
			return
		}
		err = unix.Setns(int(target.Fd()), unix.CLONE_NEWNET)
		target.Close()
		if err != nil {
			runtime.UnlockOSThread()
			errc <- fmt.Errorf("setns %s: %w", path, err)
			return
		}
		ferr := f()
		if err := unix.Setns(int(self.Fd()), unix.CLONE_NEWNET); err != nil {
			// Left locked: Go ends the thread with this goroutine.
			errc <- errors.Join(ferr, fmt.Errorf("setns back: %w", err))
			return
		}
		runtime.UnlockOSThread()
		errc <- ferr
	}()
	return <-errc
}

// run runs a command with a bounded time; the error has its output.
func run(name string, args ...string) (string, error) {
	return runIn("", append([]string{name}, args...)...)
}

// runIn is run with stdin.
func runIn(stdin string, argv ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	cmd.Stdin = strings.NewReader(stdin)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("%s: %v: %s", strings.Join(argv, " "), err, strings.TrimSpace(string(out)))
	}
	return string(out), nil
}

func runAll(cmds [][]string) error {
	for _, c := range cmds {
		if _, err := run(c[0], c[1:]...); err != nil {
			return err
		}
	}
	return nil
}
