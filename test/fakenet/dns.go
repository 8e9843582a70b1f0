package fakenet

import (
	"net"
	"strconv"
	"strings"

	"github.com/miekg/dns"
)

// Records are what a zone holds for a name and a query type.
type Records struct {
	Exists bool     // the name exists (else NXDOMAIN, unless CNAME leads to one)
	CNAME  string   // an alias of CNAME (no trailing dot), followed by the server
	Addrs  []string // the addresses of the query's type (A or AAAA)
	TXT    []string
	TTL    uint32
}

// A Zone answers names (lower-case, without the trailing dot).
type Zone func(name string, qtype uint16) Records

// AnyName is a zone in which every name exists and has the address addr
// (IPv4) and no other record.
func AnyName(addr string) Zone {
	return func(_ string, qtype uint16) Records {
		r := Records{Exists: true, TTL: 60}
		if qtype == dns.TypeA {
			r.Addrs = []string{addr}
		}
		return r
	}
}

// Names is a zone of the names given with their IPv4 address, and no
// other.
func Names(a map[string]string) Zone {
	return func(name string, qtype uint16) Records {
		addr, ok := a[name]
		if !ok {
			return Records{}
		}
		r := Records{Exists: true, TTL: 60}
		if qtype == dns.TypeA {
			r.Addrs = []string{addr}
		}
		return r
	}
}

// ServeDNS serves zone over UDP and TCP on port of every address of the
// namespace, recording each query.
func (n *Net) ServeDNS(port int, zone Zone) error {
	var servers []*dns.Server
	handler := dns.HandlerFunc(func(w dns.ResponseWriter, req *dns.Msg) { n.answer(w, req, zone) })
	err := n.InNS(func() error {
		u, err := net.ListenPacket("udp", ":"+strconv.Itoa(port))
		if err != nil {
			return err
		}
		l, err := net.Listen("tcp", ":"+strconv.Itoa(port))
		if err != nil {
			u.Close()
			return err
		}
		servers = append(servers, &dns.Server{PacketConn: u, Handler: handler}, &dns.Server{Listener: l, Handler: handler})
		return nil
	})
	if err != nil {
		return err
	}
	n.serving("udp", port, "tcp", port)
	n.onClose(func() {
		for _, s := range servers {
			_ = s.Shutdown()
		}
	})
	// Started before Close may shut them down (which does nothing to a
	// server not started yet).
	started := make(chan struct{}, len(servers))
	for _, s := range servers {
		s.NotifyStartedFunc = func() { started <- struct{}{} }
		go func() { _ = s.ActivateAndServe() }()
	}
	for range servers {
		<-started
	}
	return nil
}

// soa is the authority of an answer without records for name: its
// top-level domain's.
func soa(name string) dns.RR {
	return &dns.SOA{Hdr: dns.RR_Header{Name: dns.Fqdn(name[strings.LastIndex(name, ".")+1:]), Rrtype: dns.TypeSOA, Class: dns.ClassINET, Ttl: 60},
		Ns: "ns.fakenet.invalid.", Mbox: "admin.fakenet.invalid.", Serial: 1, Refresh: 60, Retry: 60, Expire: 60, Minttl: 30}
}

// answer records a query and answers it from zone, following CNAMEs.
func (n *Net) answer(w dns.ResponseWriter, req *dns.Msg, zone Zone) {
	network := "udp"
	if _, ok := w.LocalAddr().(*net.TCPAddr); ok {
		network = "tcp"
	}
	e := Event{Kind: "dns", Net: network, Local: w.LocalAddr().String(), Remote: w.RemoteAddr().String()}
	resp := new(dns.Msg)
	resp.SetReply(req)
	resp.Authoritative = true
	if len(req.Question) != 1 {
		n.record(e)
		resp.Rcode = dns.RcodeFormatError
		_ = w.WriteMsg(resp)
		return
	}
	q := req.Question[0]
	e.Name, e.QType = q.Name, dns.TypeToString[q.Qtype]
	n.record(e)
	owner := q.Name
	name := strings.ToLower(strings.TrimSuffix(q.Name, "."))
	recs := zone(name, q.Qtype)
	for hops := 0; recs.CNAME != "" && hops < 8; hops++ {
		resp.Answer = append(resp.Answer, &dns.CNAME{Hdr: dns.RR_Header{Name: owner, Rrtype: dns.TypeCNAME, Class: dns.ClassINET, Ttl: recs.TTL}, Target: recs.CNAME + "."})
		name, owner = recs.CNAME, recs.CNAME+"."
		recs = zone(name, q.Qtype)
	}
	hdr := dns.RR_Header{Name: owner, Rrtype: q.Qtype, Class: dns.ClassINET, Ttl: recs.TTL}
	if q.Qtype == dns.TypeTXT && len(recs.TXT) > 0 {
		resp.Answer = append(resp.Answer, &dns.TXT{Hdr: hdr, Txt: recs.TXT})
	}
	for _, a := range recs.Addrs {
		switch q.Qtype {
		case dns.TypeA:
			resp.Answer = append(resp.Answer, &dns.A{Hdr: hdr, A: net.ParseIP(a)})
		case dns.TypeAAAA:
			resp.Answer = append(resp.Answer, &dns.AAAA{Hdr: hdr, AAAA: net.ParseIP(a)})
		}
	}
	if !recs.Exists && len(resp.Answer) == 0 {
		resp.Rcode = dns.RcodeNameError
	}
	if len(resp.Answer) == 0 {
		resp.Ns = []dns.RR{soa(name)}
	}
	_ = w.WriteMsg(resp)
}
