package fakenet

import (
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Event is one thing a server of the fake internet received.
type Event struct {
	Seq    int
	Kind   string // dns, accept (a TCP connection), tls (a handshake), tls-fail, http, udp
	Net    string // tcp or udp (dns)
	Local  string // the address it reached (ip:port)
	Remote string // where it came from
	Name   string // DNS query name as received, TLS SNI, HTTP Host
	QType  string // DNS
	Path   string // HTTP
	Data   string // UDP payload, TLS error, HTTP method
	Auth   string // HTTP: the Authorization field
}

func (e Event) String() string {
	s := fmt.Sprintf("#%d %s %s->%s", e.Seq, e.Kind, e.Remote, e.Local)
	if e.Name != "" {
		s += " name=" + e.Name
	}
	if e.QType != "" {
		s += " type=" + e.QType + "/" + e.Net
	}
	if e.Path != "" {
		s += " path=" + e.Path
	}
	if e.Data != "" {
		s += " data=" + strconv.Quote(e.Data)
	}
	if e.Auth != "" {
		s += " auth=" + strconv.Quote(e.Auth)
	}
	return s
}

// LocalIP is the address part of Local (IPv4-mapped addresses unmapped).
func (e Event) LocalIP() string { return HostOf(e.Local) }

// RemoteIP is the address part of Remote.
func (e Event) RemoteIP() string { return HostOf(e.Remote) }

// LocalPort is the port part of Local.
func (e Event) LocalPort() int {
	ap, err := netip.ParseAddrPort(e.Local)
	if err != nil {
		return 0
	}
	return int(ap.Port())
}

// HostOf is the address part of ip:port, IPv4-mapped addresses unmapped.
func HostOf(addr string) string {
	ap, err := netip.ParseAddrPort(addr)
	if err != nil {
		h, _, _ := net.SplitHostPort(addr)
		return h
	}
	return ap.Addr().Unmap().String()
}

// Record adds an event of a server of the caller's (a TLSOptions.Handler).
func (n *Net) Record(e Event) { n.record(e) }

func (n *Net) record(e Event) {
	n.mu.Lock()
	defer n.mu.Unlock()
	e.Seq = len(n.events)
	n.events = append(n.events, e)
	if n.opts.Log != nil {
		fmt.Fprintln(n.opts.Log, e.String())
	}
}

// Mark is the number of events so far: Since(mark) is what came after.
func (n *Net) Mark() int {
	n.mu.Lock()
	defer n.mu.Unlock()
	return len(n.events)
}

// Since is what the servers received after mark.
func (n *Net) Since(mark int) []Event {
	n.mu.Lock()
	defer n.mu.Unlock()
	return slices.Clone(n.events[min(mark, len(n.events)):])
}

// Dump is Since(mark) for a message: a line each, or " (nothing)".
func (n *Net) Dump(mark int) string {
	var b strings.Builder
	for _, e := range n.Since(mark) {
		b.WriteString("\n  " + e.String())
	}
	if b.Len() == 0 {
		return " (nothing)"
	}
	return b.String()
}

// Wait waits up to timeout for an event since mark that matches.
func (n *Net) Wait(mark int, timeout time.Duration, match func(Event) bool) (Event, bool) {
	deadline := time.Now().Add(timeout)
	for {
		for _, e := range n.Since(mark) {
			if match(e) {
				return e, true
			}
		}
		if time.Now().After(deadline) {
			return Event{}, false
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Event matchers.

// Any matches every event.
func Any(Event) bool { return true }

// OfKind matches the events of a kind.
func OfKind(kind string) func(Event) bool {
	return func(e Event) bool { return e.Kind == kind }
}

// Query matches a DNS query for name (case-insensitively, with or
// without the trailing dot).
func Query(name string) func(Event) bool {
	return func(e Event) bool {
		return e.Kind == "dns" && strings.EqualFold(strings.TrimSuffix(e.Name, "."), strings.TrimSuffix(name, "."))
	}
}

// QueryContaining matches a DNS query whose name contains s
// (case-insensitively).
func QueryContaining(s string) func(Event) bool {
	return func(e Event) bool {
		return e.Kind == "dns" && strings.Contains(strings.ToLower(e.Name), strings.ToLower(s))
	}
}
