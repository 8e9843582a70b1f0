package resolver

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"reflect"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/clawrun/clawrun/egress/decisionlog"
	"github.com/clawrun/clawrun/egress/internal/egresstest"
	"github.com/clawrun/clawrun/egress/rules"
)

// upstreamQuery is one query the fake upstream received, as received.
type upstreamQuery struct {
	Name string
	Type uint16
	Net  string // udp or tcp
	Opts int    // EDNS0 options carried
}

// fakeUpstream is an authoritative test zone on 127.0.0.1 that logs every
// query it receives, so that tests can assert what never reached it.
type fakeUpstream struct {
	addr string
	zone map[string][]dns.RR

	mu      sync.Mutex
	queries []upstreamQuery
	hold    chan struct{} // when set, gate.test answers wait for it
	rr      atomic.Uint32
}

var longTXT = strings.Repeat("exfiltrated-data-", 15)

func testZone() map[string][]dns.RR {
	lines := []string{
		"allowed.test. 3600 IN A 93.184.216.34",
		"allowed.test. 3600 IN AAAA 2606:2800:220:1:248:1893:25c8:1946",
		`allowed.test. 3600 IN TXT "v=spf1 -all"`,
		"a.test. 300 IN CNAME b.test.",
		"b.test. 30 IN CNAME c.test.",
		"c.test. 120 IN A 93.184.216.35",
		"c.test. 120 IN AAAA 2606:2800:220:1::35",
		"short.test. 300 IN CNAME c.test.", // answered without the rest of the chain
		"meta.test. 300 IN A 169.254.169.254",
		"meta6.test. 300 IN AAAA ::ffff:169.254.169.254",
		"internal.test. 300 IN A 10.0.0.1",
		"mixed.test. 300 IN A 10.0.0.2",
		"mixed.test. 300 IN A 93.184.216.36",
		"privok.test. 300 IN A 10.0.0.3",
		"rr.test. 20 IN A 93.184.216.41",
		"rr.test. 20 IN A 93.184.216.42",
		"rr.test. 20 IN A 93.184.216.43",
		fmt.Sprintf(`txt.test. 300 IN TXT "%s" "%s" "%s"`, longTXT, longTXT, longTXT),
		"foo.wild.test. 300 IN A 93.184.216.50",
		"gate.test. 300 IN A 93.184.216.60",
		"gate.test. 300 IN AAAA 2606:2800:220:1::60",
		"nodata.test. 300 IN TXT \"only text\"",
		"svc.test. 300 IN A 93.184.216.70",
		"allowed.fuzz.test. 300 IN A 93.184.216.80",
	}
	for i := 1; i <= 100; i++ {
		lines = append(lines, fmt.Sprintf("big.test. 300 IN A 93.184.217.%d", i))
	}
	zone := map[string][]dns.RR{}
	for _, l := range lines {
		rr, err := dns.NewRR(l)
		if err != nil {
			panic(err)
		}
		zone[rr.Header().Name] = append(zone[rr.Header().Name], rr)
	}
	return zone
}

func startUpstream(t testing.TB) *fakeUpstream {
	t.Helper()
	u := &fakeUpstream{zone: testZone()}
	var pc net.PacketConn
	var ln net.Listener
	for try := 0; ; try++ {
		var err error
		pc, err = net.ListenPacket("udp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		ln, err = net.Listen("tcp", pc.LocalAddr().String())
		if err == nil {
			break
		}
		pc.Close()
		if try == 20 {
			t.Fatal(err)
		}
	}
	u.addr = pc.LocalAddr().String()
	for _, s := range []*dns.Server{{PacketConn: pc, Handler: u}, {Listener: ln, Handler: u}} {
		started := make(chan struct{})
		s.NotifyStartedFunc = func() { close(started) }
		go s.ActivateAndServe()
		<-started
		t.Cleanup(func() { s.Shutdown() })
	}
	return u
}

func (u *fakeUpstream) ServeDNS(w dns.ResponseWriter, req *dns.Msg) {
	q := req.Question[0]
	rec := upstreamQuery{Name: q.Name, Type: q.Qtype, Net: "udp"}
	if _, ok := w.LocalAddr().(*net.TCPAddr); ok {
		rec.Net = "tcp"
	}
	size := dns.MinMsgSize
	if opt := req.IsEdns0(); opt != nil {
		rec.Opts = len(opt.Option)
		size = int(opt.UDPSize())
	}
	u.mu.Lock()
	u.queries = append(u.queries, rec)
	hold := u.hold
	u.mu.Unlock()

	name := strings.ToLower(q.Name)
	resp := new(dns.Msg)
	resp.SetReply(req)
	switch name {
	case "slow.test.":
		return // never answers: the resolver must time out
	case "fail.test.":
		resp.Rcode = dns.RcodeServerFailure
		w.WriteMsg(resp)
		return
	case "gate.test.":
		if hold != nil {
			<-hold
		}
	}
	cur := name
	for range 8 {
		rrs, ok := u.zone[cur]
		if !ok {
			break
		}
		next := ""
		for _, rr := range rrs {
			if c, ok := rr.(*dns.CNAME); ok {
				resp.Answer = append(resp.Answer, dns.Copy(rr))
				next = c.Target
			}
		}
		if next == "" || name == "short.test." {
			break
		}
		cur = next
	}
	for _, rr := range u.zone[cur] {
		if rr.Header().Rrtype == q.Qtype {
			resp.Answer = append(resp.Answer, dns.Copy(rr))
		}
	}
	if name == "rr.test." && len(resp.Answer) > 0 { // round robin
		n := int(u.rr.Add(1)) % len(resp.Answer)
		resp.Answer = append(resp.Answer[n:], resp.Answer[:n]...)
	}
	if len(resp.Answer) == 0 {
		if _, ok := u.zone[name]; !ok {
			resp.Rcode = dns.RcodeNameError
		}
		soa, _ := dns.NewRR("test. 30 IN SOA ns.test. admin.test. 1 60 60 60 10")
		resp.Ns = append(resp.Ns, soa)
	}
	if rec.Net == "udp" {
		resp.Truncate(size)
	}
	w.WriteMsg(resp)
}

func (u *fakeUpstream) seen() []upstreamQuery {
	u.mu.Lock()
	defer u.mu.Unlock()
	return slices.Clone(u.queries)
}

// count returns how many queries for name (compared case-insensitively)
// and, unless qtype is 0, of that type the upstream received.
func (u *fakeUpstream) count(name string, qtype uint16) int {
	n := 0
	for _, q := range u.seen() {
		if strings.EqualFold(q.Name, dns.Fqdn(name)) && (qtype == 0 || q.Type == qtype) {
			n++
		}
	}
	return n
}

func (u *fakeUpstream) setHold(c chan struct{}) {
	u.mu.Lock()
	u.hold = c
	u.mu.Unlock()
}

// testRules allows the names of the test zone that tests expect to
// resolve; every other name is denied.
func testRules(gen int64) *rules.Rules {
	web := func(host string) rules.Endpoint { return rules.Endpoint{Host: host, Ports: []int{443}} }
	return &rules.Rules{Generation: gen, Layers: []rules.Layer{{Source: "test", Policies: []rules.Policy{{
		Name: "web",
		Endpoints: []rules.Endpoint{
			web("allowed.test"), web("a.test"), web("short.test"), web("meta.test"), web("meta6.test"),
			web("internal.test"), web("mixed.test"), web("rr.test"), web("txt.test"), web("big.test"),
			web("slow.test"), web("fail.test"), web("nxd.test"), web("nodata.test"), web("gate.test"),
			web("*.wild.test"), web("*.fuzz.test"),
			{Host: "privok.test", Ports: []int{443}, AllowedIPs: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}},
			{Host: "svc.test", Ports: []int{5432}, Protocol: "tcp"},
		},
	}}}}}
}

type harness struct {
	up      *fakeUpstream
	res     *Resolver
	rules   atomic.Pointer[rules.Rules]
	udp     string
	tcp     string
	mu      sync.Mutex
	records []decisionlog.Record
	next    int
}

func newHarness(t *testing.T, mod func(*Resolver)) *harness {
	t.Helper()
	h := &harness{up: startUpstream(t)}
	h.rules.Store(testRules(1))
	h.res = &Resolver{
		Rules:     h.rules.Load,
		Upstream:  []string{h.up.addr},
		Synthetic: NewSyntheticPool(DefaultSyntheticPrefix),
		Container: "ctr",
		Timeout:   300 * time.Millisecond,
		Log: func(r decisionlog.Record) {
			h.mu.Lock()
			h.records = append(h.records, r)
			h.mu.Unlock()
		},
	}
	if mod != nil {
		mod(h.res)
	}
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	h.udp, h.tcp = pc.LocalAddr().String(), ln.Addr().String()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- h.res.Serve(ctx, pc, ln) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Serve: %v", err)
			}
		case <-time.After(5 * time.Second):
			t.Errorf("Serve did not return after cancel")
		}
	})
	return h
}

func (h *harness) exchange(t *testing.T, m *dns.Msg, network string) *dns.Msg {
	t.Helper()
	addr := h.udp
	if network == "tcp" {
		addr = h.tcp
	}
	c := dns.Client{Net: network, Timeout: 3 * time.Second}
	resp, _, err := c.Exchange(m, addr)
	if err != nil {
		t.Fatalf("exchange %v: %v", m.Question, err)
	}
	return resp
}

func (h *harness) query(t *testing.T, name string, qtype uint16) *dns.Msg {
	t.Helper()
	m := new(dns.Msg)
	m.SetQuestion(name, qtype)
	return h.exchange(t, m, "udp")
}

// record returns the next decision record, waiting for it: the resolver
// logs after it has answered.
func (h *harness) record(t *testing.T) decisionlog.Record {
	t.Helper()
	deadline := time.Now().Add(3 * time.Second)
	for {
		h.mu.Lock()
		if h.next < len(h.records) {
			r := h.records[h.next]
			h.next++
			h.mu.Unlock()
			return r
		}
		h.mu.Unlock()
		if time.Now().After(deadline) {
			t.Fatal("no decision record")
		}
		time.Sleep(time.Millisecond)
	}
}

func answerAddrs(m *dns.Msg) []string {
	var out []string
	for _, rr := range m.Answer {
		switch v := rr.(type) {
		case *dns.A:
			out = append(out, v.A.String())
		case *dns.AAAA:
			out = append(out, v.AAAA.String())
		default:
			out = append(out, "unexpected "+rr.String())
		}
	}
	return out
}

func TestQueryName(t *testing.T) {
	for in, want := range map[string]bool{
		"Allowed.TEST.": true, "allowed.test": true, "_dmarc.x.test.": true, "xn--bcher-kva.test.": true,
		".": false, "": false, `a\.b.test.`: false, `a\000.test.`: false, "*.wild.test.": false,
		"a..test.": false, "a b.test.": false, strings.Repeat("a", 64) + ".test.": false,
	} {
		if _, ok := queryName(in); ok != want {
			t.Errorf("queryName(%q) ok = %v, want %v", in, ok, want)
		}
	}
	if got, _ := queryName("AlLoWeD.TeSt."); got != "allowed.test" {
		t.Errorf("queryName lower-cases and drops the dot: got %q", got)
	}
}

func TestResolverAllowed(t *testing.T) {
	h := newHarness(t, nil)

	resp := h.query(t, "allowed.test.", dns.TypeA)
	if resp.Rcode != dns.RcodeSuccess || !slices.Equal(answerAddrs(resp), []string{"93.184.216.34"}) {
		t.Fatalf("A allowed.test: %v", resp)
	}
	if ttl := resp.Answer[0].Header().Ttl; ttl != 60 {
		t.Errorf("TTL %d, want the 60 s cap (upstream said 3600)", ttl)
	}
	rec := h.record(t)
	want := decisionlog.Record{Container: "ctr", Generation: 1, Protocol: "dns", Host: "allowed.test", QueryType: "A",
		ResolvedIP: "93.184.216.34", Decision: "allow", Reason: rules.ReasonAllowed, Rule: "web"}
	got := rec
	got.Time, got.Source, got.DurationMS = time.Time{}, "", 0
	if !reflect.DeepEqual(got, want) {
		t.Errorf("record %+v\nwant   %+v", got, want)
	}
	if rec.Time.IsZero() || !strings.HasPrefix(rec.Source, "127.0.0.1:") {
		t.Errorf("record time/source missing: %+v", rec)
	}

	resp = h.query(t, "allowed.test.", dns.TypeAAAA)
	if !slices.Equal(answerAddrs(resp), []string{"2606:2800:220:1:248:1893:25c8:1946"}) {
		t.Fatalf("AAAA allowed.test: %v", resp)
	}
	h.record(t)

	// Mixed case: answered under the client's spelling, asked upstream in
	// lower case.
	resp = h.query(t, "AlLoWeD.TeSt.", dns.TypeA)
	if resp.Rcode != dns.RcodeSuccess || len(resp.Answer) != 1 || resp.Answer[0].Header().Name != "AlLoWeD.TeSt." {
		t.Fatalf("mixed case: %v", resp)
	}
	if rec := h.record(t); rec.Host != "allowed.test" {
		t.Errorf("record host %q", rec.Host)
	}
	for _, q := range h.up.seen() {
		if q.Name != strings.ToLower(q.Name) {
			t.Errorf("upstream saw a mixed-case name %q", q.Name)
		}
		if q.Opts != 0 {
			t.Errorf("upstream saw EDNS options from the client: %+v", q)
		}
	}
	// The second query was answered from the cache.
	if n := h.up.count("allowed.test", dns.TypeA); n != 1 {
		t.Errorf("upstream saw %d A queries for allowed.test, want 1 (then cached)", n)
	}

	// A wildcard allows exactly one more label.
	resp = h.query(t, "foo.wild.test.", dns.TypeA)
	if !slices.Equal(answerAddrs(resp), []string{"93.184.216.50"}) {
		t.Fatalf("foo.wild.test: %v", resp)
	}
	h.record(t)
}

func TestResolverDenied(t *testing.T) {
	h := newHarness(t, nil)
	names := []string{
		"denied.test.", "DeNiEd.TeSt.", "c.test.", "sub.allowed.test.", "x.y.wild.test.", "wild.test.",
		"aGVsbG8gd29ybGQ.exfil.test.", `evil\.foo.wild.test.`, `a\000.wild.test.`, "*.wild.test.", ".",
		"127.0.0.1.", "evil.test",
	}
	types := []uint16{dns.TypeA, dns.TypeAAAA, dns.TypeTXT, dns.TypeMX, dns.TypeANY, dns.TypeHTTPS, dns.TypePTR}
	for _, name := range names {
		for _, qt := range types {
			m := new(dns.Msg)
			m.SetQuestion(dns.Fqdn(name), qt)
			resp := h.exchange(t, m, "udp")
			if resp.Rcode != dns.RcodeNameError || len(resp.Answer) != 0 {
				t.Errorf("%s %s: rcode %s, %d answers; want NXDOMAIN", name, dns.TypeToString[qt],
					dns.RcodeToString[resp.Rcode], len(resp.Answer))
			}
			rec := h.record(t)
			if rec.Decision != "deny" || rec.Reason == rules.ReasonAllowed || rec.Reason == "" {
				t.Errorf("%s %s: record %+v", name, dns.TypeToString[qt], rec)
			}
		}
	}
	if seen := h.up.seen(); len(seen) != 0 {
		t.Fatalf("denied names reached upstream: %+v", seen)
	}
	// The rejected spellings are denied as not_allowed, not by accident.
	m := new(dns.Msg)
	m.SetQuestion("denied.test.", dns.TypeA)
	h.exchange(t, m, "udp")
	if rec := h.record(t); rec.Reason != rules.ReasonNotAllowed || rec.Host != "denied.test" {
		t.Errorf("record %+v", rec)
	}
}

func TestResolverOtherTypesNeverForwarded(t *testing.T) {
	h := newHarness(t, nil)
	for _, qt := range []uint16{dns.TypeTXT, dns.TypeHTTPS, dns.TypeSVCB, dns.TypeMX, dns.TypeANY, dns.TypePTR,
		dns.TypeNS, dns.TypeSRV, dns.TypeCNAME, dns.TypeSOA, dns.TypeNULL, 65000} {
		for _, name := range []string{"txt.test.", "allowed.test.", "TxT.TeSt."} {
			resp := h.query(t, name, qt)
			if resp.Rcode != dns.RcodeSuccess || len(resp.Answer) != 0 {
				t.Errorf("%s %d: %v", name, qt, resp)
			}
			rec := h.record(t)
			if rec.Decision != "deny" || rec.Reason != rules.ReasonQueryType || rec.Host != strings.ToLower(strings.TrimSuffix(name, ".")) {
				t.Errorf("%s %d: record %+v", name, qt, rec)
			}
		}
	}
	if seen := h.up.seen(); len(seen) != 0 {
		t.Fatalf("upstream saw %+v", seen)
	}
	// Class CHAOS (version.bind-style probes) is refused, not forwarded.
	m := new(dns.Msg)
	m.SetQuestion("allowed.test.", dns.TypeTXT)
	m.Question[0].Qclass = dns.ClassCHAOS
	if resp := h.exchange(t, m, "udp"); resp.Rcode != dns.RcodeRefused {
		t.Errorf("CHAOS: %v", resp)
	}
	h.record(t)
	if seen := h.up.seen(); len(seen) != 0 {
		t.Fatalf("upstream saw %+v", seen)
	}
}

func TestResolverCNAMEFlattened(t *testing.T) {
	h := newHarness(t, nil)
	resp := h.query(t, "a.test.", dns.TypeA)
	if resp.Rcode != dns.RcodeSuccess || len(resp.Answer) != 1 {
		t.Fatalf("a.test: %v", resp)
	}
	a, ok := resp.Answer[0].(*dns.A)
	if !ok || a.Hdr.Name != "a.test." || a.A.String() != "93.184.216.35" {
		t.Fatalf("want a.test. A 93.184.216.35 (no CNAME), got %v", resp.Answer)
	}
	if a.Hdr.Ttl != 30 {
		t.Errorf("TTL %d, want 30 (the chain's minimum)", a.Hdr.Ttl)
	}
	if rec := h.record(t); rec.ResolvedIP != "93.184.216.35" || rec.Decision != "allow" {
		t.Errorf("record %+v", rec)
	}
	resp = h.query(t, "a.test.", dns.TypeAAAA)
	if !slices.Equal(answerAddrs(resp), []string{"2606:2800:220:1::35"}) {
		t.Fatalf("a.test AAAA: %v", resp)
	}
	h.record(t)

	// An unfinished chain is not continued upstream: c.test is not allowed.
	resp = h.query(t, "short.test.", dns.TypeA)
	if resp.Rcode != dns.RcodeSuccess || len(resp.Answer) != 0 {
		t.Fatalf("short.test: %v", resp)
	}
	h.record(t)
	for _, q := range h.up.seen() {
		if q.Name != "a.test." && q.Name != "short.test." {
			t.Errorf("upstream saw %+v", q)
		}
	}
}

func TestResolverBlockedAddresses(t *testing.T) {
	h := newHarness(t, nil)
	for _, c := range []struct {
		name  string
		qtype uint16
		want  []string
		rec   decisionlog.Record
	}{
		{"meta.test.", dns.TypeA, nil, decisionlog.Record{Decision: "deny", Reason: rules.ReasonPrivateIP, ResolvedIP: "169.254.169.254"}},
		{"meta6.test.", dns.TypeAAAA, nil, decisionlog.Record{Decision: "deny", Reason: rules.ReasonPrivateIP, ResolvedIP: "::ffff:169.254.169.254"}},
		{"internal.test.", dns.TypeA, nil, decisionlog.Record{Decision: "deny", Reason: rules.ReasonPrivateIP, ResolvedIP: "10.0.0.1"}},
		{"mixed.test.", dns.TypeA, []string{"93.184.216.36"}, decisionlog.Record{Decision: "allow", Reason: rules.ReasonAllowed, ResolvedIP: "93.184.216.36"}},
		// allowed_ips of the endpoint open 10/8 for this name only.
		{"privok.test.", dns.TypeA, []string{"10.0.0.3"}, decisionlog.Record{Decision: "allow", Reason: rules.ReasonAllowed, ResolvedIP: "10.0.0.3"}},
	} {
		resp := h.query(t, c.name, c.qtype)
		if resp.Rcode != dns.RcodeSuccess || !slices.Equal(answerAddrs(resp), c.want) {
			t.Errorf("%s: %v", c.name, resp)
		}
		rec := h.record(t)
		if rec.Decision != c.rec.Decision || rec.Reason != c.rec.Reason || rec.ResolvedIP != c.rec.ResolvedIP {
			t.Errorf("%s: record %+v, want %+v", c.name, rec, c.rec)
		}
	}

	// ConfigAllowed opens a range for every name.
	h2 := newHarness(t, func(r *Resolver) { r.ConfigAllowed = []netip.Prefix{netip.MustParsePrefix("10.0.0.0/24")} })
	if resp := h2.query(t, "internal.test.", dns.TypeA); !slices.Equal(answerAddrs(resp), []string{"10.0.0.1"}) {
		t.Errorf("internal.test with ConfigAllowed: %v", resp)
	}
	// ...but never the metadata address.
	if resp := h2.query(t, "meta.test.", dns.TypeA); len(resp.Answer) != 0 {
		t.Errorf("meta.test with ConfigAllowed: %v", resp)
	}
}

func TestResolverRoundRobinAndTTLCap(t *testing.T) {
	h := newHarness(t, func(r *Resolver) { r.TTLCap = 10 * time.Second })
	var firsts []string
	for range 3 {
		resp := h.query(t, "rr.test.", dns.TypeA)
		got := answerAddrs(resp)
		if len(got) != 3 {
			t.Fatalf("rr.test: %v", resp)
		}
		for _, rr := range resp.Answer {
			if rr.Header().Ttl != 10 {
				t.Errorf("TTL %d, want 10 (cap)", rr.Header().Ttl)
			}
		}
		firsts = append(firsts, got[0])
		if rec := h.record(t); strings.Count(rec.ResolvedIP, ",") != 2 {
			t.Errorf("resolved_ip %q", rec.ResolvedIP)
		}
	}
	slices.Sort(firsts)
	if len(slices.Compact(firsts)) != 3 {
		t.Errorf("the upstream's order is not kept: %v", firsts)
	}
}

func TestResolverUpstreamFailures(t *testing.T) {
	h := newHarness(t, nil)
	for _, name := range []string{"slow.test.", "fail.test."} {
		start := time.Now()
		resp := h.query(t, name, dns.TypeA)
		if resp.Rcode != dns.RcodeServerFailure {
			t.Errorf("%s: %v", name, resp)
		}
		if d := time.Since(start); d > 2*time.Second {
			t.Errorf("%s took %v", name, d)
		}
		if rec := h.record(t); rec.Reason != rules.ReasonResolve || rec.Decision != "deny" {
			t.Errorf("%s: record %+v", name, rec)
		}
		if n := h.up.count(name, dns.TypeA); n != 1 {
			t.Errorf("%s: upstream saw %d queries", name, n)
		}
	}
	// An allowed name that does not exist: NXDOMAIN from upstream.
	resp := h.query(t, "nxd.test.", dns.TypeA)
	if resp.Rcode != dns.RcodeNameError {
		t.Errorf("nxd.test: %v", resp)
	}
	if rec := h.record(t); rec.Decision != "allow" {
		t.Errorf("nxd.test record %+v", rec)
	}
	// An allowed name without addresses: NOERROR, no data.
	resp = h.query(t, "nodata.test.", dns.TypeA)
	if resp.Rcode != dns.RcodeSuccess || len(resp.Answer) != 0 {
		t.Errorf("nodata.test: %v", resp)
	}
	h.record(t)
}

func TestResolverUpstreamFailover(t *testing.T) {
	// A closed port answers with ICMP unreachable: the next one is tried.
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dead := pc.LocalAddr().String()
	pc.Close()
	h := newHarness(t, func(r *Resolver) { r.Upstream = append([]string{dead}, r.Upstream...) })
	if resp := h.query(t, "allowed.test.", dns.TypeA); len(resp.Answer) != 1 {
		t.Fatalf("failover: %v", resp)
	}
	h.record(t)

	h = newHarness(t, func(r *Resolver) { r.Upstream = nil })
	if resp := h.query(t, "allowed.test.", dns.TypeA); resp.Rcode != dns.RcodeServerFailure {
		t.Fatalf("no upstream: %v", resp)
	}
	if rec := h.record(t); rec.Reason != rules.ReasonResolve {
		t.Errorf("record %+v", rec)
	}
}

func TestResolverTruncationAndTCP(t *testing.T) {
	h := newHarness(t, nil)

	// UDP without EDNS0: 512 bytes, TC set. Upstream answered over TCP
	// after its own UDP answer was truncated.
	resp := h.query(t, "big.test.", dns.TypeA)
	if !resp.Truncated || len(resp.Answer) == 0 || len(resp.Answer) >= 100 {
		t.Fatalf("UDP/512: truncated=%v, %d answers", resp.Truncated, len(resp.Answer))
	}
	resp.Compress = true // as it was sent
	if b, _ := resp.Pack(); len(b) > dns.MinMsgSize {
		t.Errorf("UDP answer is %d bytes", len(b))
	}
	h.record(t)
	var nets []string
	for _, q := range h.up.seen() {
		nets = append(nets, q.Net)
	}
	if !slices.Equal(nets, []string{"udp", "tcp"}) {
		t.Errorf("upstream transports %v, want udp then tcp", nets)
	}

	// EDNS0 with a large buffer: everything, and an OPT in the answer.
	m := new(dns.Msg)
	m.SetQuestion("big.test.", dns.TypeA)
	m.SetEdns0(4096, false)
	resp = h.exchange(t, m, "udp")
	if resp.Truncated || len(resp.Answer) != 100 || resp.IsEdns0() == nil {
		t.Fatalf("UDP/EDNS 4096: truncated=%v, %d answers, opt=%v", resp.Truncated, len(resp.Answer), resp.IsEdns0())
	}
	h.record(t)

	// TCP: everything.
	m = new(dns.Msg)
	m.SetQuestion("big.test.", dns.TypeA)
	resp = h.exchange(t, m, "tcp")
	if resp.Truncated || len(resp.Answer) != 100 {
		t.Fatalf("TCP: truncated=%v, %d answers", resp.Truncated, len(resp.Answer))
	}
	h.record(t)

	// The same policy over TCP.
	m = new(dns.Msg)
	m.SetQuestion("DENIED.test.", dns.TypeA)
	if resp = h.exchange(t, m, "tcp"); resp.Rcode != dns.RcodeNameError {
		t.Fatalf("TCP denied: %v", resp)
	}
	m = new(dns.Msg)
	m.SetQuestion("allowed.test.", dns.TypeTXT)
	if resp = h.exchange(t, m, "tcp"); resp.Rcode != dns.RcodeSuccess || len(resp.Answer) != 0 {
		t.Fatalf("TCP TXT: %v", resp)
	}
	if h.up.count("denied.test", 0) != 0 || h.up.count("allowed.test", 0) != 0 {
		t.Errorf("upstream saw %+v", h.up.seen())
	}
}

func TestResolverMalformed(t *testing.T) {
	h := newHarness(t, nil)

	two := new(dns.Msg)
	two.SetQuestion("allowed.test.", dns.TypeA)
	two.Question = append(two.Question, dns.Question{Name: "denied.test.", Qtype: dns.TypeA, Qclass: dns.ClassINET})
	if resp := h.exchange(t, two, "udp"); resp.Rcode != dns.RcodeFormatError {
		t.Errorf("two questions: %v", resp)
	}
	if rec := h.record(t); rec.Decision != "deny" {
		t.Errorf("record %+v", rec)
	}

	none := new(dns.Msg)
	none.Id = dns.Id()
	if resp := h.exchange(t, none, "udp"); resp.Rcode != dns.RcodeFormatError {
		t.Errorf("no question: %v", resp)
	}
	h.record(t)

	upd := new(dns.Msg)
	upd.SetUpdate("allowed.test.")
	if resp := h.exchange(t, upd, "udp"); resp.Rcode != dns.RcodeNotImplemented {
		t.Errorf("UPDATE: %v", resp)
	}
	h.record(t)

	// EDNS version 1: BADVERS, with an OPT.
	v1 := new(dns.Msg)
	v1.SetQuestion("allowed.test.", dns.TypeA)
	v1.SetEdns0(1232, false)
	v1.IsEdns0().SetVersion(1)
	resp := h.exchange(t, v1, "udp")
	if resp.Rcode != dns.RcodeBadVers || resp.IsEdns0() == nil {
		t.Errorf("EDNS v1: %v", resp)
	}
	h.record(t)

	// Client EDNS options (client subnet) are not passed upstream.
	ecs := new(dns.Msg)
	ecs.SetQuestion("allowed.test.", dns.TypeA)
	ecs.SetEdns0(1232, false)
	ecs.IsEdns0().Option = append(ecs.IsEdns0().Option, &dns.EDNS0_SUBNET{Code: dns.EDNS0SUBNET, Family: 1,
		SourceNetmask: 24, Address: net.IPv4(192, 0, 2, 0).To4()})
	if resp := h.exchange(t, ecs, "udp"); len(resp.Answer) != 1 || resp.IsEdns0() == nil {
		t.Errorf("ECS: %v", resp)
	}
	h.record(t)

	// A raw garbage packet is logged and answered FORMERR by the server.
	c, err := net.Dial("udp", h.udp)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.Write([]byte{0x12, 0x34, 0x01, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x3f, 'x'})
	if rec := h.record(t); rec.Decision != "deny" || rec.Protocol != "dns" {
		t.Errorf("garbage record %+v", rec)
	}

	for _, q := range h.up.seen() {
		if q.Name != "allowed.test." || q.Opts != 0 {
			t.Errorf("upstream saw %+v", q)
		}
	}
}

func TestResolverHotReload(t *testing.T) {
	h := newHarness(t, nil)
	if resp := h.query(t, "allowed.test.", dns.TypeA); len(resp.Answer) != 1 {
		t.Fatalf("gen 1: %v", resp)
	}
	if rec := h.record(t); rec.Generation != 1 || rec.Decision != "allow" {
		t.Errorf("gen 1 record %+v", rec)
	}

	// Generation 2 drops allowed.test and adds denied.test.
	r2 := &rules.Rules{Generation: 2, Layers: []rules.Layer{{Source: "test", Policies: []rules.Policy{{Name: "new",
		Endpoints: []rules.Endpoint{{Host: "denied.test", Ports: []int{443}}}}}}}}
	h.rules.Store(r2)
	if resp := h.query(t, "allowed.test.", dns.TypeA); resp.Rcode != dns.RcodeNameError {
		t.Fatalf("gen 2 allowed.test: %v", resp)
	}
	if rec := h.record(t); rec.Generation != 2 || rec.Decision != "deny" {
		t.Errorf("gen 2 record %+v", rec)
	}
	if n := h.up.count("allowed.test", 0); n != 1 {
		t.Errorf("upstream saw allowed.test %d times, want 1 (before the reload)", n)
	}
	h.query(t, "denied.test.", dns.TypeA)
	if rec := h.record(t); rec.Decision != "allow" || rec.Rule != "new" {
		t.Errorf("gen 2 denied.test record %+v", rec)
	}
	if n := h.up.count("denied.test", dns.TypeA); n != 1 {
		t.Errorf("upstream saw denied.test %d times after it was allowed", n)
	}

	// Two layers: the floor must allow too.
	h.rules.Store(&rules.Rules{Generation: 3, Layers: []rules.Layer{testRules(3).Layers[0], r2.Layers[0]}})
	if resp := h.query(t, "allowed.test.", dns.TypeA); resp.Rcode != dns.RcodeNameError {
		t.Errorf("gen 3 allowed.test (not in the second layer): %v", resp)
	}
	h.record(t)

	// No rules at all: everything denied.
	h.rules.Store(nil)
	if resp := h.query(t, "denied.test.", dns.TypeA); resp.Rcode != dns.RcodeNameError {
		t.Errorf("nil rules: %v", resp)
	}
	h.record(t)
	if n := h.up.count("denied.test", dns.TypeA); n != 1 {
		t.Errorf("upstream saw denied.test %d times", n)
	}
}

func TestResolverSynthetic(t *testing.T) {
	h := newHarness(t, nil)
	resp := h.query(t, "svc.test.", dns.TypeA)
	if resp.Rcode != dns.RcodeSuccess || len(resp.Answer) != 1 {
		t.Fatalf("svc.test: %v", resp)
	}
	a := resp.Answer[0].(*dns.A)
	addr, _ := netip.AddrFromSlice(a.A.To4())
	if !DefaultSyntheticPrefix.Contains(addr) || a.Hdr.Ttl != 60 {
		t.Errorf("svc.test A %v", a)
	}
	if name, ok := h.res.Synthetic.Lookup(addr); !ok || name != "svc.test" {
		t.Errorf("Lookup(%v) = %q, %v", addr, name, ok)
	}
	if rec := h.record(t); rec.ResolvedIP != addr.String() || rec.Decision != "allow" {
		t.Errorf("record %+v", rec)
	}
	// Stable, whatever the spelling.
	resp = h.query(t, "SVC.test.", dns.TypeA)
	if got := answerAddrs(resp); !slices.Equal(got, []string{addr.String()}) {
		t.Errorf("second answer %v, want %v", got, addr)
	}
	h.record(t)
	resp = h.query(t, "svc.test.", dns.TypeAAAA)
	if resp.Rcode != dns.RcodeSuccess || len(resp.Answer) != 0 {
		t.Errorf("svc.test AAAA: %v", resp)
	}
	h.record(t)
	resp = h.query(t, "svc.test.", dns.TypeTXT)
	if resp.Rcode != dns.RcodeSuccess || len(resp.Answer) != 0 {
		t.Errorf("svc.test TXT: %v", resp)
	}
	if rec := h.record(t); rec.Reason != rules.ReasonQueryType {
		t.Errorf("TXT record %+v", rec)
	}
	if seen := h.up.seen(); len(seen) != 0 {
		t.Errorf("upstream saw %+v", seen)
	}

	// Without a pool: SERVFAIL, never upstream.
	h = newHarness(t, func(r *Resolver) { r.Synthetic = nil })
	if resp := h.query(t, "svc.test.", dns.TypeA); resp.Rcode != dns.RcodeServerFailure {
		t.Errorf("no pool: %v", resp)
	}
	if seen := h.up.seen(); len(seen) != 0 {
		t.Errorf("upstream saw %+v", seen)
	}
}

// TestResolverInference: with Inference, inference.local gets a synthetic
// address that maps back to it, though no rule names it, and is never
// asked upstream; without, it is denied like any unlisted name.
func TestResolverInference(t *testing.T) {
	h := newHarness(t, func(r *Resolver) { r.Inference = true })
	resp := h.query(t, "Inference.Local.", dns.TypeA)
	addrs := answerAddrs(resp)
	if resp.Rcode != dns.RcodeSuccess || len(addrs) != 1 {
		t.Fatalf("inference.local: %v", resp)
	}
	addr := netip.MustParseAddr(addrs[0])
	if name, ok := h.res.Synthetic.Lookup(addr); !ok || name != "inference.local" {
		t.Errorf("Lookup(%v) = %q, %v", addr, name, ok)
	}
	if rec := h.record(t); rec.Decision != "allow" || rec.Rule != "egress.inference" || rec.ResolvedIP != addr.String() {
		t.Errorf("record %+v", rec)
	}
	if seen := h.up.seen(); len(seen) != 0 {
		t.Errorf("upstream saw %+v", seen)
	}

	h = newHarness(t, nil)
	if resp := h.query(t, "inference.local.", dns.TypeA); resp.Rcode != dns.RcodeNameError {
		t.Errorf("without Inference: %v", resp)
	}
	if seen := h.up.seen(); len(seen) != 0 {
		t.Errorf("upstream saw %+v", seen)
	}
}

func TestResolverServeStops(t *testing.T) {
	r := &Resolver{Rules: func() *rules.Rules { return testRules(1) }}
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel() // before the server even started
	done := make(chan error, 1)
	go func() { done <- r.Serve(ctx, pc, nil) }()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("Serve: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Serve did not return")
	}
	if err := r.Serve(context.Background(), nil, nil); err == nil {
		t.Error("Serve without listeners succeeded")
	}
	// A listener that fails ends Serve with its error.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ln.Close()
	if err := r.Serve(context.Background(), nil, ln); err == nil || errors.Is(err, context.Canceled) {
		t.Errorf("Serve on a closed listener: %v", err)
	}
}

// fakeWriter is a dns.ResponseWriter that keeps what is written.
type fakeWriter struct {
	tcp  bool
	msgs []*dns.Msg
}

func (w *fakeWriter) LocalAddr() net.Addr {
	if w.tcp {
		return &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 53}
	}
	return &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 53}
}
func (w *fakeWriter) RemoteAddr() net.Addr {
	return &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 40000}
}
func (w *fakeWriter) WriteMsg(m *dns.Msg) error {
	if _, err := m.Pack(); err != nil {
		return err
	}
	w.msgs = append(w.msgs, m)
	return nil
}
func (w *fakeWriter) Write(b []byte) (int, error) { return len(b), nil }
func (w *fakeWriter) Close() error                { return nil }
func (w *fakeWriter) TsigStatus() error           { return nil }
func (w *fakeWriter) TsigTimersOnly(bool)         {}
func (w *fakeWriter) Hijack()                     {}

func FuzzServeDNS(f *testing.F) {
	up := startUpstream(f)
	current := testRules(1)
	res := &Resolver{
		Rules:     func() *rules.Rules { return current },
		Upstream:  []string{up.addr},
		Synthetic: NewSyntheticPool(DefaultSyntheticPrefix),
		Timeout:   50 * time.Millisecond,
	}
	seed := func(name string, qtype uint16, mod func(*dns.Msg)) {
		m := new(dns.Msg)
		m.SetQuestion(name, qtype)
		if mod != nil {
			mod(m)
		}
		b, err := m.Pack()
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	edns := func(m *dns.Msg) { m.SetEdns0(4096, true) }
	seed("allowed.test.", dns.TypeA, nil)
	seed("AlLoWeD.TeSt.", dns.TypeAAAA, edns)
	seed("denied.test.", dns.TypeA, nil)
	seed("allowed.test.", dns.TypeTXT, nil)
	seed("a.test.", dns.TypeA, edns)
	seed("mixed.test.", dns.TypeA, nil)
	seed("big.test.", dns.TypeA, nil)
	seed("svc.test.", dns.TypeA, nil)
	seed("x.fuzz.test.", dns.TypeA, nil)
	seed(`a\.b.fuzz.test.`, dns.TypeA, nil)
	seed("allowed.fuzz.test.", dns.TypeANY, nil)
	seed("allowed.test.", dns.TypeA, func(m *dns.Msg) {
		m.Question = append(m.Question, dns.Question{Name: "denied.test.", Qtype: dns.TypeA, Qclass: dns.ClassINET})
	})
	seed("allowed.test.", dns.TypeA, func(m *dns.Msg) { m.Response = true })

	f.Fuzz(func(t *testing.T, data []byte) {
		req := new(dns.Msg)
		if req.Unpack(data) != nil {
			return // the server answers FORMERR before ServeDNS
		}
		before := len(up.seen())
		w := &fakeWriter{tcp: len(data)%2 == 0}
		res.ServeDNS(w, req)

		for _, q := range up.seen()[before:] {
			name, ok := queryName(q.Name)
			if !ok || q.Name != name+"." {
				t.Fatalf("upstream saw a name not in canonical form: %q", q.Name)
			}
			if !current.NameAllowed(name).Allow {
				t.Fatalf("upstream saw a denied name: %q", q.Name)
			}
			if q.Type != dns.TypeA && q.Type != dns.TypeAAAA {
				t.Fatalf("upstream saw type %d for %q", q.Type, q.Name)
			}
			if _, tcp := current.TCPEndpoint(name); tcp {
				t.Fatalf("upstream saw protocol:tcp name %q", q.Name)
			}
		}
		if req.Response {
			if len(w.msgs) != 0 {
				t.Fatalf("answered a response")
			}
			return
		}
		if len(w.msgs) != 1 {
			t.Fatalf("%d answers written", len(w.msgs))
		}
		resp := w.msgs[0]
		if resp.Id != req.Id || !resp.Response {
			t.Fatalf("bad answer header: %v", resp.MsgHdr)
		}
		for _, rr := range resp.Answer {
			if rt := rr.Header().Rrtype; rt != dns.TypeA && rt != dns.TypeAAAA {
				t.Fatalf("answer of type %d", rt)
			}
		}
	})
}

// The container's answer and the proxy's lookup share one cache: a
// connection right after the lookup asks nothing upstream, and a repeated
// query gets what is left of the TTL.
func TestResolverCacheSharedWithProxy(t *testing.T) {
	clock := egresstest.NewClock()
	h := newHarness(t, func(r *Resolver) { r.TTLCap = 3 * time.Second; r.cache.now = clock.Now })
	resp := h.query(t, "allowed.test.", dns.TypeA)
	if len(resp.Answer) != 1 || resp.Answer[0].Header().Ttl != 3 {
		t.Fatalf("first answer: %v", resp)
	}
	h.record(t)
	if _, err := h.res.LookupIP(context.Background(), "allowed.test"); err != nil {
		t.Fatal(err)
	}
	if a, aaaa := h.up.count("allowed.test", dns.TypeA), h.up.count("allowed.test", dns.TypeAAAA); a != 1 || aaaa != 1 {
		t.Errorf("upstream saw %d A and %d AAAA queries, want 1 and 1 (the proxy's A from the cache)", a, aaaa)
	}
	clock.Add(1100 * time.Millisecond)
	resp = h.query(t, "allowed.test.", dns.TypeA)
	if len(resp.Answer) != 1 || resp.Answer[0].Header().Ttl != 2 {
		t.Errorf("cached answer after 1.1 s: %v, want TTL 2", resp)
	}
	if rec := h.record(t); rec.Decision != "allow" {
		t.Errorf("a cached answer is still a decision: %+v", rec)
	}
	// A denied name is never cached into an allowance: the rules decide
	// before the cache is asked.
	h.rules.Store(&rules.Rules{Generation: 2})
	if resp := h.query(t, "allowed.test.", dns.TypeA); resp.Rcode != dns.RcodeNameError {
		t.Errorf("after the policy dropped the name: %v, want NXDOMAIN", resp)
	}
}

// A name restricted to binaries is answered to their processes only: over
// TCP, where the asking socket is found by its addresses; over UDP it is
// answered truncated, nothing asked upstream, for the client to ask again
// over TCP. Every other process gets NXDOMAIN without a query upstream.
func TestResolverBinaries(t *testing.T) {
	type asked struct{ local, remote netip.AddrPort }
	var mu sync.Mutex
	var asks []asked
	var owners []string // what TCPOwners answers
	h := newHarness(t, func(r *Resolver) {
		r.TCPOwners = func(local, remote netip.AddrPort) []string {
			mu.Lock()
			defer mu.Unlock()
			asks = append(asks, asked{local, remote})
			return owners
		}
	})
	current := testRules(2)
	current.Layers[0].Policies = append(current.Layers[0].Policies,
		rules.Policy{Name: "tool", Endpoints: []rules.Endpoint{{Host: "*.tool.test", Ports: []int{443}}}, Binaries: []string{"/usr/bin/tool"}},
		rules.Policy{Name: "watched", Endpoints: []rules.Endpoint{{Host: "*.watch.test", Ports: []int{443}, Audit: true}}, Binaries: []string{"/usr/bin/tool"}})
	h.rules.Store(current)
	h.up.zone["x1.tool.test."] = []dns.RR{mustRR("x1.tool.test. 300 IN A 93.184.216.90")}
	h.up.zone["a1.watch.test."] = []dns.RR{mustRR("a1.watch.test. 300 IN A 93.184.216.91")}
	question := func(name string) *dns.Msg {
		m := new(dns.Msg)
		m.SetQuestion(name, dns.TypeA)
		return m
	}
	upstreamAsked := func(name string) bool {
		return slices.ContainsFunc(h.up.seen(), func(q upstreamQuery) bool { return q.Name == name })
	}
	setOwners := func(exes []string) {
		mu.Lock()
		owners, asks = exes, nil
		mu.Unlock()
	}

	// UDP: truncated, never asked upstream, whoever asks.
	setOwners(rules.JoinChains([]string{"/usr/bin/tool"}))
	resp := h.query(t, "x1.tool.test.", dns.TypeA)
	if !resp.Truncated || resp.Rcode != dns.RcodeSuccess || len(resp.Answer) != 0 {
		t.Errorf("UDP query of a binary-restricted name: %v", resp)
	}
	if rec := h.record(t); rec.Decision != "deny" || rec.Reason != rules.ReasonTCPRequired {
		t.Errorf("UDP record: %+v", rec)
	}
	if upstreamAsked("x1.tool.test.") || len(asks) != 0 {
		t.Errorf("a UDP query was asked upstream (%v) or looked up (%v)", h.up.seen(), asks)
	}

	// TCP, another executable: NXDOMAIN, never asked upstream.
	setOwners(rules.JoinChains([]string{"/usr/bin/tool"}, []string{"/usr/bin/curl", "/usr/bin/bash"}))
	resp = h.exchange(t, question("x2.tool.test."), "tcp")
	if resp.Rcode != dns.RcodeNameError {
		t.Errorf("TCP query of another executable: %v", resp)
	}
	if rec := h.record(t); rec.Decision != "deny" || rec.Reason != rules.ReasonBinary || rec.Binary != "/usr/bin/curl" {
		t.Errorf("TCP record of another executable: %+v", rec)
	}
	if upstreamAsked("x2.tool.test.") {
		t.Errorf("another executable's query was asked upstream")
	}
	// The asking socket is looked up by its own addresses: the client's,
	// and the destination it sent to (here not redirected: the server's).
	if len(asks) != 1 || asks[0].remote.String() != h.tcp || asks[0].local.Port() == 0 {
		t.Errorf("TCPOwners asked %v, want (client, %s)", asks, h.tcp)
	}

	// No process known: NXDOMAIN.
	setOwners(nil)
	if resp = h.exchange(t, question("x3.tool.test."), "tcp"); resp.Rcode != dns.RcodeNameError || upstreamAsked("x3.tool.test.") {
		t.Errorf("TCP query of an unknown process: %v", resp)
	}
	if rec := h.record(t); rec.Decision != "deny" || rec.Reason != rules.ReasonBinary {
		t.Errorf("TCP record of an unknown process: %+v", rec)
	}

	// TCP, the allowed executable: answered.
	setOwners(rules.JoinChains([]string{"/usr/bin/tool", "/usr/bin/bash"}))
	resp = h.exchange(t, question("x1.tool.test."), "tcp")
	if resp.Rcode != dns.RcodeSuccess || !slices.Equal(answerAddrs(resp), []string{"93.184.216.90"}) {
		t.Errorf("TCP query of the allowed executable: %v", resp)
	}
	if rec := h.record(t); rec.Decision != "allow" || rec.Binary != "/usr/bin/tool" {
		t.Errorf("TCP record of the allowed executable: %+v", rec)
	}

	// Names without binaries are answered over UDP, to anyone, unlooked-up.
	setOwners(nil)
	if resp = h.query(t, "allowed.test.", dns.TypeA); resp.Truncated || len(resp.Answer) != 1 {
		t.Errorf("an unrestricted name over UDP: %v", resp)
	}
	if rec := h.record(t); rec.Decision != "allow" || len(asks) != 0 {
		t.Errorf("an unrestricted name over UDP: %+v, looked up %v", rec, asks)
	}
	// An audit endpoint answers over UDP (audit never breaks), logged as
	// what binaries would have denied.
	if resp = h.query(t, "a1.watch.test.", dns.TypeA); resp.Truncated || len(resp.Answer) != 1 {
		t.Errorf("an audited name over UDP: %v", resp)
	}
	if rec := h.record(t); rec.Decision != "audit" || rec.Reason != rules.ReasonBinary {
		t.Errorf("an audited name over UDP: %+v", rec)
	}
}

func mustRR(s string) dns.RR {
	rr, err := dns.NewRR(s)
	if err != nil {
		panic(err)
	}
	return rr
}
