package resolver

import (
	"context"
	"errors"
	"fmt"
	"math"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/miekg/dns"

	"github.com/clawrun/clawrun/egress/decisionlog"
	"github.com/clawrun/clawrun/egress/inference"
	"github.com/clawrun/clawrun/egress/kernel"
	"github.com/clawrun/clawrun/egress/rules"
	"github.com/clawrun/clawrun/runtime/policy/hostname"
)

const (
	defaultTTLCap          = 60 * time.Second
	defaultUpstreamTimeout = 2 * time.Second
	defaultNegativeTTL     = 5 * time.Second
	syntheticTTL           = 60
	// ednsSize is the EDNS0 buffer advertised upstream and to clients:
	// large enough for address answers, small enough not to fragment
	// (DNS flag day 2020).
	ednsSize = 1232
	// maxCNAMEHops bounds CNAME following inside one answer.
	maxCNAMEHops = 16
	// maxInflight bounds the client queries waiting on upstream, so a
	// container flooding its resolver cannot flood the host's.
	maxInflight = 256
	// maxTCPConns bounds the DNS-over-TCP connections open at once (each
	// one's idle time is bounded by the server).
	maxTCPConns = 64
)

// Resolver is the policy resolver of one network namespace: nftables
// redirects every DNS query of the container to it, whatever resolver
// address the query was sent to.
//
// A name the policy does not allow is answered NXDOMAIN locally and never
// sent upstream, whatever the query type: a query name is a channel out
// (DNS exfiltration), so only names that pass the policy — validated and
// lower-cased — ever leave. For allowed names only A and AAAA are
// resolved; answers are flattened (no CNAMEs) and addresses of blocked
// classes are removed. Names of protocol:tcp endpoints get a synthetic
// address. Every query produces one Record.
//
// A Resolver must not be copied after first use.
type Resolver struct {
	// Rules returns the current generation; it is called once per query,
	// so a reload applies to the next query.
	Rules func() *rules.Rules
	// Upstream lists the host's resolvers ("ip:port"), tried in order.
	Upstream []string
	// Synthetic answers protocol:tcp names; nil fails those queries.
	Synthetic *SyntheticPool
	// Inference answers inference.local (from Synthetic) whatever the
	// rules: egress.inference routes it.
	Inference bool
	Log       func(decisionlog.Record)
	Container string
	// TTLCap bounds the TTL of answers and of the answer cache (60 s when
	// zero), so a policy change or a rebinding takes effect soon.
	TTLCap time.Duration
	// Timeout bounds each upstream attempt (2 s when zero).
	Timeout time.Duration
	// ConfigAllowed opens otherwise blocked address ranges for every name.
	ConfigAllowed []netip.Prefix
	// TCPOwners returns the chains (rules.JoinChains) of the processes holding
	// the namespace's TCP socket connected from local to remote; nil when
	// it cannot tell. The names that policies allow only to some binaries
	// are answered to those processes only, over TCP (see askers); nil
	// TCPOwners denies them to all.
	TCPOwners func(local, remote netip.AddrPort) []string

	once     sync.Once
	inflight chan struct{}
	cache    lookupCache
	tcpConns tcpConns
}

var errNoUpstream = errors.New("egress: no upstream resolver configured")

func (r *Resolver) ttlCap() time.Duration {
	if r.TTLCap > 0 {
		return r.TTLCap
	}
	return defaultTTLCap
}

func (r *Resolver) timeout() time.Duration {
	if r.Timeout > 0 {
		return r.Timeout
	}
	return defaultUpstreamTimeout
}

// budget bounds one resolution across all upstreams.
func (r *Resolver) budget() time.Duration {
	return r.timeout() * time.Duration(len(r.Upstream)+1)
}

func (r *Resolver) currentRules() *rules.Rules {
	if r.Rules == nil {
		return nil
	}
	return r.Rules()
}

// generation is the current rules' generation (0 without rules).
func (r *Resolver) generation() int64 {
	if current := r.currentRules(); current != nil {
		return current.Generation
	}
	return 0
}

func (r *Resolver) log(rec decisionlog.Record) {
	if r.Log != nil {
		r.Log(rec)
	}
}

func (r *Resolver) acquire() bool {
	r.once.Do(func() { r.inflight = make(chan struct{}, maxInflight) })
	select {
	case r.inflight <- struct{}{}:
		return true
	default:
		return false
	}
}

func (r *Resolver) release() { <-r.inflight }

// queryName returns a query name as the rules compare it
// (hostname.Canonical), or, when it is not a plain host name, the name
// lower-cased for the log and false. A name on the wire is ASCII (the
// DNS library escapes other bytes), and anything but letters, digits,
// '-' and '_' in labels of 1-63 bytes (an escaped dot or byte, '*', an
// empty name) could be matched by the policy as one name and resolved
// upstream as another, so it is refused. Non-ASCII names (a U-label
// passed by the proxy) are refused too: the upstream is asked only for
// names as the query or the client wrote them.
func queryName(name string) (string, bool) {
	for i := 0; i < len(name); i++ {
		if name[i] >= utf8.RuneSelf {
			return strings.TrimSuffix(strings.ToLower(name), "."), false
		}
	}
	host, ok := hostname.Canonical(name)
	if !ok {
		return strings.TrimSuffix(strings.ToLower(name), "."), false
	}
	return host, true
}

func typeString(t uint16) string {
	if s, ok := dns.TypeToString[t]; ok {
		return s
	}
	return "TYPE" + strconv.Itoa(int(t))
}

// ServeDNS answers one query (dns.Handler).
func (r *Resolver) ServeDNS(w dns.ResponseWriter, req *dns.Msg) {
	if req == nil || req.Response {
		return // never answer a response: no reflection loops
	}
	start := time.Now()
	rec := decisionlog.Record{Time: start.UTC(), Container: r.Container, Protocol: "dns"}
	if a := w.RemoteAddr(); a != nil {
		rec.Source = a.String()
	}
	_, tcp := w.LocalAddr().(*net.TCPAddr)
	var asker func() []string // nil: the asking process cannot be told
	if tcp {
		asker = func() []string { return r.tcpAsker(w.RemoteAddr()) }
	}

	resp := r.answer(req, &rec, asker)
	size := dns.MinMsgSize
	if tcp {
		size = dns.MaxMsgSize
	}
	if opt := req.IsEdns0(); opt != nil {
		if !tcp {
			size = max(int(opt.UDPSize()), dns.MinMsgSize)
		}
		resp.SetEdns0(ednsSize, false)
	}
	resp.Truncate(size) // sets TC when records had to go
	if err := w.WriteMsg(resp); err != nil {
		// The echoed question could not be packed: say SERVFAIL without it.
		fail := new(dns.Msg)
		fail.Id, fail.Response, fail.Opcode, fail.Rcode = req.Id, true, req.Opcode&0xF, dns.RcodeServerFailure
		_ = w.WriteMsg(fail)
	}
	rec.DurationMS = float64(time.Since(start).Microseconds()) / 1000
	r.log(rec)
}

// answer decides a query and builds the response, filling rec. asker
// returns the processes that asked (rules.JoinChains); nil when they cannot be
// told.
func (r *Resolver) answer(req *dns.Msg, rec *decisionlog.Record, asker func() []string) *dns.Msg {
	resp := new(dns.Msg)
	resp.SetReply(req)
	resp.RecursionAvailable = true
	out := &reply{resp: resp, rec: rec}

	current := r.currentRules()
	if current != nil {
		rec.Generation = current.Generation
	}
	if req.Opcode != dns.OpcodeQuery {
		resp.Question = nil
		return out.deny(dns.RcodeNotImplemented, rules.ReasonQueryType)
	}
	if len(req.Question) != 1 {
		resp.Question = nil
		return out.deny(dns.RcodeFormatError, rules.ReasonNotAllowed)
	}
	q := req.Question[0]
	host, valid := queryName(q.Name)
	rec.Host, rec.QueryType = host, typeString(q.Qtype)
	if opt := req.IsEdns0(); opt != nil && opt.Version() != 0 {
		return out.deny(dns.RcodeBadVers, rules.ReasonQueryType)
	}

	// The name decides first, whatever the type or class: a denied name
	// is NXDOMAIN (not REFUSED, which breaks musl's search lists).
	if !valid || current == nil {
		return out.deny(dns.RcodeNameError, rules.ReasonNotAllowed)
	}
	if r.Inference && host == inference.Host {
		return r.answerInference(out, q, host)
	}
	dec, truncate := askerDecision(current, host, asker, rec)
	rec.Rule = dec.Rule
	if truncate {
		resp.Truncated = true
		return out.deny(dns.RcodeSuccess, rules.ReasonTCPRequired)
	}
	if !dec.Allow {
		reason := dec.Reason
		if reason == "" {
			reason = rules.ReasonNotAllowed
		}
		return out.deny(dns.RcodeNameError, reason)
	}
	out.verdict, out.reason = "allow", rules.ReasonAllowed
	if dec.Audit {
		out.verdict, out.reason = "audit", dec.Reason // what audit mode waived
	}
	if q.Qclass != dns.ClassINET {
		return out.deny(dns.RcodeRefused, rules.ReasonQueryType)
	}
	if _, ok := current.TCPEndpoint(host); ok {
		return r.answerSynthetic(out, q, host)
	}
	// TXT, HTTPS, SVCB, MX, ANY...: answered empty, never forwarded; their
	// answers are data channels in, and ECH keys live in HTTPS records.
	if q.Qtype != dns.TypeA && q.Qtype != dns.TypeAAAA {
		return out.deny(dns.RcodeSuccess, rules.ReasonQueryType)
	}
	return r.answerUpstream(out, q, host, dec.AllowedIPs)
}

// reply is the response to one query in the making, with its record.
type reply struct {
	resp *dns.Msg
	rec  *decisionlog.Record
	// verdict and reason are what an allowed name is logged with: allow,
	// or audit with the reason audit mode waived.
	verdict string
	reason  rules.Reason
}

// deny answers rcode, logged as denied for reason.
func (out *reply) deny(rcode int, reason rules.Reason) *dns.Msg {
	out.resp.Rcode = rcode
	out.rec.Decision, out.rec.Reason = "deny", reason
	return out.resp
}

// allow answers what resp holds, logged with the name's verdict.
func (out *reply) allow() *dns.Msg {
	out.rec.Decision, out.rec.Reason = out.verdict, out.reason
	return out.resp
}

// answerInference answers inference.local when egress.inference routes
// it, whatever the policy: with an address of the synthetic pool, which
// the proxy maps back to the name (its connections carry the name too).
func (r *Resolver) answerInference(out *reply, q dns.Question, host string) *dns.Msg {
	out.rec.Rule = inference.Rule
	out.verdict, out.reason = "allow", rules.ReasonAllowed
	if q.Qclass != dns.ClassINET {
		return out.deny(dns.RcodeRefused, rules.ReasonQueryType)
	}
	return r.answerSynthetic(out, q, host)
}

// answerSynthetic answers an allowed protocol: tcp name. The proxy cannot
// learn the name from the connection (the server may speak first), so
// the address itself carries it. Nothing is asked upstream.
func (r *Resolver) answerSynthetic(out *reply, q dns.Question, host string) *dns.Msg {
	switch q.Qtype {
	case dns.TypeA:
		var a netip.Addr
		if r.Synthetic != nil {
			a = r.Synthetic.Assign(host)
		}
		if !a.IsValid() {
			return out.deny(dns.RcodeServerFailure, rules.ReasonResolve)
		}
		out.resp.Answer = []dns.RR{addrRR(q.Name, dns.TypeA, syntheticTTL, a)}
		out.rec.ResolvedIP = a.String()
		return out.allow()
	case dns.TypeAAAA:
		return out.allow() // the synthetic range is IPv4: no data
	}
	return out.deny(dns.RcodeSuccess, rules.ReasonQueryType)
}

// answerUpstream answers an allowed name's A or AAAA query with what the
// upstream resolves (through the cache), less the addresses the endpoints'
// allowedIPs and the config leave blocked.
func (r *Resolver) answerUpstream(out *reply, q dns.Question, host string, allowedIPs []netip.Prefix) *dns.Msg {
	if !r.acquire() {
		return out.deny(dns.RcodeServerFailure, rules.ReasonResolve)
	}
	defer r.release()
	ctx, cancel := context.WithTimeout(context.Background(), r.budget())
	defer cancel()
	res, err := r.cachedResolve(ctx, host, q.Qtype)
	if err != nil {
		return out.deny(dns.RcodeServerFailure, rules.ReasonResolve)
	}
	if res.nxdomain {
		out.resp.Rcode = dns.RcodeNameError
		return out.allow()
	}

	// The proxy is where addresses are enforced (it dials its own lookup);
	// here blocked addresses are only kept from the client. The ranges are
	// what every layer's endpoints of the name open (intersected): never
	// more than the floor allows.
	var kept, blocked []netip.Addr
	for _, a := range res.addrs {
		if r.permitted(a, allowedIPs) {
			kept = append(kept, a)
		} else {
			blocked = append(blocked, a)
		}
	}
	if len(kept) == 0 && len(blocked) > 0 {
		out.rec.ResolvedIP = joinAddrs(blocked)
		return out.deny(dns.RcodeSuccess, rules.ReasonPrivateIP)
	}
	ttl := min(res.ttl, uint32(r.ttlCap()/time.Second))
	for _, a := range kept {
		out.resp.Answer = append(out.resp.Answer, addrRR(q.Name, q.Qtype, ttl, a))
	}
	out.rec.ResolvedIP = joinAddrs(kept)
	return out.allow()
}

// askerDecision decides a name for the processes that asked. A name that
// some policies allow only to certain binaries depends on them: over TCP
// they are the processes holding the client's socket, found by its exact
// addresses. Over UDP they cannot be told for sure (sockets can share a
// port, and the sender may be gone by the time it is looked up), so
// such a name is answered empty and truncated, without asking upstream,
// for the client to ask again over TCP (stub resolvers do); truncate
// reports that. Audit endpoints answer either way.
func askerDecision(current *rules.Rules, host string, asker func() []string, rec *decisionlog.Record) (d rules.Decision, truncate bool) {
	if d = current.NameAllowed(host); !d.Allow {
		return d, false // for no process at all
	}
	d = current.NameAllowedFor(host, nil)
	if d.Reason != rules.ReasonBinary {
		return d, false // no binaries decide it
	}
	if asker == nil {
		return d, !d.Allow
	}
	d = current.NameAllowedFor(host, asker())
	rec.Binary = d.Binary
	return d, false
}

// tcpAsker returns the processes holding the client socket of an open
// DNS-over-TCP connection.
func (r *Resolver) tcpAsker(client net.Addr) []string {
	if r.TCPOwners == nil {
		return nil
	}
	local := kernel.AddrPort(client)
	remote, ok := r.tcpConns.originalDst(local)
	if !ok {
		return nil
	}
	return r.TCPOwners(local, remote)
}

// permitted classifies an address; an IPv4-mapped IPv6 address must pass
// as itself and as the IPv4 address it stands for.
func (r *Resolver) permitted(a netip.Addr, endpointAllowed []netip.Prefix) bool {
	ok, _ := rules.Permitted(a, endpointAllowed, r.ConfigAllowed)
	if ok && a.Is4In6() {
		ok, _ = rules.Permitted(a.Unmap(), endpointAllowed, r.ConfigAllowed)
	}
	return ok
}

// addrRR builds an A or AAAA record; the owner is the client's own spelling
// of the query name (resolvers using 0x20 case randomisation compare it).
func addrRR(owner string, qtype uint16, ttl uint32, a netip.Addr) dns.RR {
	hdr := dns.RR_Header{Name: owner, Rrtype: qtype, Class: dns.ClassINET, Ttl: ttl}
	if qtype == dns.TypeA {
		return &dns.A{Hdr: hdr, A: net.IP(a.AsSlice())}
	}
	b := a.As16()
	return &dns.AAAA{Hdr: hdr, AAAA: net.IP(b[:])}
}

func joinAddrs(as []netip.Addr) string {
	s := make([]string, len(as))
	for i, a := range as {
		s[i] = a.String()
	}
	return strings.Join(s, ",")
}

// answerSet is the outcome of resolving one name and type upstream.
type answerSet struct {
	addrs    []netip.Addr
	ttl      uint32 // min over the chain and addresses; negative TTL if none
	nxdomain bool
}

// resolve asks upstream for host's addresses of type qtype and flattens
// the CNAME chain of the answer. host must have passed queryName. A chain
// the upstream left unfinished is not continued: that would send a name
// the policy never saw upstream (recursive resolvers answer whole chains).
func (r *Resolver) resolve(ctx context.Context, host string, qtype uint16) (answerSet, error) {
	m, err := r.exchange(ctx, host+".", qtype)
	if err != nil {
		return answerSet{}, err
	}
	_, addrs, ttl := flatten(m, host+".", qtype)
	switch {
	case m.Rcode == dns.RcodeNameError:
		return answerSet{ttl: min(ttl, negativeTTL(m)), nxdomain: true}, nil
	case len(addrs) == 0:
		return answerSet{ttl: min(ttl, negativeTTL(m))}, nil
	}
	return answerSet{addrs: addrs, ttl: ttl}, nil
}

// flatten follows the CNAME chain from name inside one answer and returns
// its end (lower-case) with that name's addresses of type qtype. Records
// for names off the chain are ignored.
func flatten(m *dns.Msg, name string, qtype uint16) (final string, addrs []netip.Addr, ttl uint32) {
	ttl = math.MaxUint32
	final = name
	for range maxCNAMEHops {
		found := false
		for _, rr := range m.Answer {
			if c, ok := rr.(*dns.CNAME); ok && strings.EqualFold(c.Hdr.Name, final) {
				final, ttl, found = strings.ToLower(c.Target), min(ttl, c.Hdr.Ttl), true
				break
			}
		}
		if !found {
			break
		}
	}
	for _, rr := range m.Answer {
		if !strings.EqualFold(rr.Header().Name, final) {
			continue
		}
		var a netip.Addr
		var ok bool
		switch v := rr.(type) {
		case *dns.A:
			if qtype == dns.TypeA {
				a, ok = netip.AddrFromSlice(v.A.To4())
			}
		case *dns.AAAA:
			if qtype == dns.TypeAAAA {
				a, ok = netip.AddrFromSlice(v.AAAA.To16())
			}
		}
		if ok {
			addrs = append(addrs, a)
			ttl = min(ttl, rr.Header().Ttl)
		}
	}
	return final, addrs, ttl
}

// negativeTTL is how long an answer without data may be cached (RFC 2308:
// the SOA's TTL bounded by its minimum).
func negativeTTL(m *dns.Msg) uint32 {
	for _, rr := range m.Ns {
		if soa, ok := rr.(*dns.SOA); ok {
			return min(soa.Hdr.Ttl, soa.Minttl)
		}
	}
	return uint32(defaultNegativeTTL / time.Second)
}

// exchange asks the upstreams in order, each with its own timeout, until
// one answers NOERROR or NXDOMAIN for exactly this question.
func (r *Resolver) exchange(ctx context.Context, name string, qtype uint16) (*dns.Msg, error) {
	if len(r.Upstream) == 0 {
		return nil, errNoUpstream
	}
	var lastErr error
	for _, up := range r.Upstream {
		m, err := r.exchangeOne(ctx, up, name, qtype)
		if err == nil {
			return m, nil
		}
		lastErr = err
		if ctx.Err() != nil {
			break
		}
	}
	return nil, lastErr
}

func (r *Resolver) exchangeOne(ctx context.Context, upstream, name string, qtype uint16) (*dns.Msg, error) {
	ctx, cancel := context.WithTimeout(ctx, r.timeout())
	defer cancel()
	// A fresh query: nothing of the client's message (ID, EDNS options
	// such as client subnet or padding) is passed on.
	q := new(dns.Msg)
	q.SetQuestion(name, qtype)
	q.SetEdns0(ednsSize, false)
	c := dns.Client{Net: "udp", Timeout: r.timeout()}
	m, _, err := c.ExchangeContext(ctx, q, upstream)
	if err == nil && m.Truncated {
		c.Net = "tcp"
		m, _, err = c.ExchangeContext(ctx, q, upstream)
	}
	if err != nil {
		return nil, fmt.Errorf("upstream %s: %w", upstream, err)
	}
	if len(m.Question) != 1 || !strings.EqualFold(m.Question[0].Name, name) || m.Question[0].Qtype != qtype {
		return nil, fmt.Errorf("upstream %s: answer for another question", upstream)
	}
	if m.Rcode != dns.RcodeSuccess && m.Rcode != dns.RcodeNameError {
		return nil, fmt.Errorf("upstream %s: %s", upstream, dns.RcodeToString[m.Rcode])
	}
	return m, nil
}

// Serve answers queries on udp and tcp (either may be nil) until ctx ends,
// then shuts both down and returns nil; it returns earlier with the error
// of a listener that failed. The listeners are closed on return.
func (r *Resolver) Serve(ctx context.Context, udp net.PacketConn, tcp net.Listener) error {
	var servers []*dns.Server
	if udp != nil {
		servers = append(servers, r.server(&dns.Server{PacketConn: udp}))
	}
	if tcp != nil {
		tcp = newLimitListener(r.tcpConns.track(tcp), maxTCPConns, func(c net.Conn) {
			r.log(decisionlog.Record{Time: time.Now().UTC(), Container: r.Container, Protocol: "dns", Source: c.RemoteAddr().String(),
				Generation: r.generation(), Decision: "deny", Reason: rules.ReasonConnLimit})
		})
		servers = append(servers, r.server(&dns.Server{Listener: tcp}))
	}
	if len(servers) == 0 {
		return errors.New("egress: DNS Serve without a listener")
	}
	errc := make(chan error, len(servers))
	for _, s := range servers {
		go func() { errc <- s.ActivateAndServe() }()
	}
	pending := len(servers)
	var first error
	select {
	case <-ctx.Done():
	case first = <-errc:
		pending--
		if first == nil {
			first = errors.New("egress: DNS server stopped")
		}
	}
	for _, s := range servers {
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		if err := s.ShutdownContext(sctx); err != nil {
			// Not started yet (or stuck): closing makes it return.
			if s.PacketConn != nil {
				s.PacketConn.Close()
			}
			if s.Listener != nil {
				s.Listener.Close()
			}
		}
		cancel()
	}
	for ; pending > 0; pending-- {
		<-errc
	}
	if ctx.Err() != nil {
		return nil
	}
	return first
}

func (r *Resolver) server(s *dns.Server) *dns.Server {
	s.Handler = r
	// Read whole EDNS0 queries (the default buffer is 512 bytes).
	s.UDPSize = dns.MaxMsgSize
	// Let ServeDNS see (and log) every query, malformed ones included;
	// only responses are dropped unanswered.
	s.MsgAcceptFunc = func(h dns.Header) dns.MsgAcceptAction {
		if h.Bits&(1<<15) != 0 { // QR
			return dns.MsgIgnore
		}
		return dns.MsgAccept
	}
	s.MsgInvalidFunc = func([]byte, error) {
		r.log(decisionlog.Record{Time: time.Now().UTC(), Container: r.Container, Protocol: "dns", Generation: r.generation(),
			Decision: "deny", Reason: rules.ReasonNotAllowed})
	}
	return s
}
