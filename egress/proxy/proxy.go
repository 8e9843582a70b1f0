package proxy

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"time"

	"github.com/clawrun/clawrun/egress/credentials"
	"github.com/clawrun/clawrun/egress/decisionlog"
	"github.com/clawrun/clawrun/egress/inference"
	"github.com/clawrun/clawrun/egress/inspect"
	"github.com/clawrun/clawrun/egress/kernel"
	"github.com/clawrun/clawrun/egress/rules"
	"github.com/clawrun/clawrun/egress/wire"
	"github.com/clawrun/clawrun/runtime/policy/hostname"
)

// Proxy is the transparent TCP proxy of one network namespace. Every TCP
// connection the container opens is redirected to it; it reads the TLS
// ClientHello's SNI or the HTTP Host of every request, decides with the
// current Rules, resolves the name itself, refuses blocked address classes,
// and dials the address it checked — never the destination the client
// chose.
type Proxy struct {
	Rules func() *rules.Rules
	// Lookup resolves a name the proxy is to dial: every address (the
	// policy resolver's LookupIP); the proxy dials the permitted ones.
	Lookup func(ctx context.Context, host string) ([]netip.Addr, error)
	// Synthetic returns the protocol: tcp name a synthetic address stands
	// for (resolver.SyntheticPool.Lookup); nil when there are none.
	Synthetic     func(netip.Addr) (string, bool)
	ConfigAllowed []netip.Prefix
	Log           func(decisionlog.Record)
	Container     string
	// Dial connects upstream (from the host's namespace).
	Dial func(ctx context.Context, network, addr string) (net.Conn, error)
	// CloseUpstream closes an upstream connection once both its
	// directions have ended (nil: its Close). The worker's removes the
	// TIME_WAIT the filter's side is left in when it closed first
	// (kernel.TimeWaits).
	CloseUpstream func(net.Conn) error
	// Binaries returns the executables of the processes that hold a
	// client connection, each followed by its ancestors' (rules.JoinChains);
	// nil when it cannot tell.
	Binaries func(client net.Conn) []string
	// Limits bound the connections of the namespace (zero fields:
	// DefaultConnLimits').
	Limits ConnLimits
	// Inspect serves the TLS connections to inspected endpoints (the
	// container's inspection engine); nil denies them.
	Inspect *inspect.Engine
	// Credentials replace the placeholders of inspected requests to the
	// endpoints they are bound to (nil: none; every placeholder is then
	// refused). A placeholder in plain HTTP is refused.
	Credentials *credentials.Set
	// Inference routes inference.local to the configured model backend
	// (nil: not configured; the name is then a name like any other).
	Inference *inference.Route

	admitOnce    sync.Once
	adm          admission
	mu           sync.Mutex
	live         map[*flow]struct{}
	count        atomic.Int64
	lastRelease  time.Time   // p.mu
	releaseTimer *time.Timer // p.mu: a release waiting for its turn
}

// flow is one proxied connection, re-checked when the rules change from
// its decision on, its upstream dial included.
type flow struct {
	client   net.Conn
	upstream net.Conn // p.mu; nil while the dial is pending
	dialCtx  context.Context
	cancel   context.CancelFunc // ends a pending dial
	host     string
	port     int
	binaries []string // p.mu for writes; see owners
	looked   bool     // binaries were looked up
	// admittedBy: the rules that admitted the flow (see admit).
	admittedBy *rules.Rules
	http       bool // plain HTTP: its requests are checked one by one
	cut        bool // p.mu: closed by Recheck
	// inspected: served by the inspection engine until serveCtx ends
	// (stopServe: Recheck cut it).
	inspected bool
	// inference: a connection to inference.local, which no policy
	// decides (a reload leaves it alone).
	inference bool
	serveCtx  context.Context
	stopServe context.CancelFunc
}

// dialTimeout bounds the resolution and dial of a flow's upstream.
const dialTimeout = 15 * time.Second

// errFlowCut: Recheck closed the flow while it was dialling.
var errFlowCut = errors.New("egress: the flow was closed by a reload")

func newFlow(client net.Conn, host string, port int, http bool) *flow {
	ctx, cancel := context.WithTimeout(context.Background(), dialTimeout)
	serveCtx, stopServe := context.WithCancel(context.Background())
	return &flow{client: client, dialCtx: ctx, cancel: cancel, host: host, port: port, http: http,
		serveCtx: serveCtx, stopServe: stopServe}
}

// cutLocked closes the flow for Recheck, cancelling its dial if it is
// still pending. p.mu held.
func (f *flow) cutLocked() {
	f.cut = true
	f.cancel()
	f.stopServe()
	f.client.Close()
	if f.upstream != nil {
		f.upstream.Close()
	}
}

// Serve accepts connections until ln is closed.
func (p *Proxy) Serve(ln net.Listener) error {
	for {
		c, err := ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return nil
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				continue
			}
			return err
		}
		t, reason := p.admission().admit(c, time.Now())
		if t == nil {
			p.refuse(c, reason)
			continue
		}
		go func() {
			defer p.admission().done(t)
			p.handle(c, t)
		}()
	}
}

// admission is the proxy's count of its connections.
func (p *Proxy) admission() *admission {
	p.admitOnce.Do(func() { p.adm.limits = p.limits() })
	return &p.adm
}

// limits are p.Limits, DefaultConnLimits' where unset.
func (p *Proxy) limits() ConnLimits {
	l, d := p.Limits, DefaultConnLimits
	if l.Conns <= 0 {
		l.Conns = d.Conns
	}
	if l.Pending <= 0 {
		l.Pending = d.Pending
	}
	if l.HandshakeTimeout <= 0 {
		l.HandshakeTimeout = d.HandshakeTimeout
	}
	if l.HandshakeBytes <= 0 {
		l.HandshakeBytes = d.HandshakeBytes
	}
	return l
}

// refuse turns away a connection the limits do not let in, and logs it.
func (p *Proxy) refuse(c net.Conn, reason rules.Reason) {
	rec := decisionlog.Record{Generation: p.Rules().Generation, Protocol: "tcp", Source: c.RemoteAddr().String(),
		Decision: "deny", Reason: reason}
	if dst, err := kernel.OriginalDst(c); err == nil {
		rec.Destination, rec.Port = dst.String(), int(dst.Port())
	}
	kernel.Reset(c)
	p.log(rec)
}

// OpenConns is the number of connections open now, decided or not.
func (p *Proxy) OpenConns() int {
	a := p.admission()
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.open
}

// Recheck closes the live connections the current rules no longer allow
// (hot reload: a new generation takes effect on open flows too), and
// cancels the dials of those still connecting. Connections not decided
// yet need nothing: they are decided with the rules current then.
func (p *Proxy) Recheck() int {
	current := p.Rules()
	if p.Inspect != nil {
		// Shared upstream connections were checked under the old rules.
		p.Inspect.DropUpstreamConns()
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	closed := 0
	for f := range p.live {
		if f.cut || f.inference {
			continue
		}
		d := current.MatchBinary(f.host, f.port, f.binaries)
		if f.http {
			d = current.MatchHTTPConnection(f.host, f.port, f.binaries)
		} else if d.Allow && d.Inspect && !f.inspected {
			// Spliced, its requests unread: the endpoint is now inspected.
			d = rules.Decision{Reason: rules.ReasonInspect, Rule: d.Rule}
		}
		if !d.Allow {
			f.cutLocked()
			closed++
			p.log(decisionlog.Record{Generation: current.Generation, Protocol: "tcp", Host: f.host, Port: f.port,
				Decision: "deny", Reason: d.Reason, Rule: d.Rule})
		}
	}
	return closed
}

func (p *Proxy) log(r decisionlog.Record) {
	if p.Log == nil {
		return
	}
	r.Time = time.Now().UTC()
	r.Container = p.Container
	p.Log(r)
}

// admit decides f with the rules current now (not those of when the
// connection was accepted: its ClientHello or request may come after a
// reload) and, when they allow it, registers it for Recheck before
// anything is dialled. A reload landing between the decision and the
// registration is caught by deciding again; one after it, by Recheck.
// rec gets the deciding generation and the connection's executable.
func (p *Proxy) admit(f *flow, rec *decisionlog.Record, decide func(current *rules.Rules, binaries []string) rules.Decision) rules.Decision {
	for {
		current := p.Rules()
		d := decide(current, p.owners(f, current))
		rec.Generation = current.Generation
		if len(f.binaries) > 0 {
			rec.Binary = f.binaries[0]
		}
		if !d.Allow {
			f.cancel()
			return d
		}
		p.mu.Lock()
		if p.Rules() == current {
			f.admittedBy = current
			p.trackLocked(f, true)
			p.mu.Unlock()
			return d
		}
		p.mu.Unlock()
	}
}

// owners returns the executables of the process that owns f's client
// connection and of its ancestors, looked up once, when some policy of
// rules lists binaries (it costs a /proc scan).
func (p *Proxy) owners(f *flow, current *rules.Rules) []string {
	if f.looked || p.Binaries == nil || !current.HasBinaries() {
		return f.binaries
	}
	binaries := p.Binaries(f.client)
	p.mu.Lock()
	f.binaries, f.looked = binaries, true
	p.mu.Unlock()
	return binaries
}

// dialFlow resolves and dials an admitted flow's upstream and hands it to
// the flow, unless Recheck cut the flow meanwhile (errFlowCut: Recheck
// logged it, the client is closed).
func (p *Proxy) dialFlow(f *flow, d rules.Decision) (net.Conn, netip.Addr, rules.Reason, error) {
	up, ip, reason, err := p.dialChecked(f.dialCtx, f.host, f.port, d.AllowedIPs)
	f.cancel()
	p.mu.Lock()
	cut := f.cut
	if !cut && err == nil {
		f.upstream = up
	}
	p.mu.Unlock()
	if cut {
		if up != nil {
			up.Close()
		}
		return nil, netip.Addr{}, rules.ReasonUpstream, errFlowCut
	}
	return up, ip, reason, err
}

// handle decides and serves one admitted connection (its ticket t).
func (p *Proxy) handle(client net.Conn, t *ticket) {
	start := time.Now()
	// The generation of refusals made before any rule is read; a
	// decision gives its own.
	rec := decisionlog.Record{Generation: p.Rules().Generation, Source: client.RemoteAddr().String()}
	dst := kernel.Destination(client)
	rec.Destination = dst.String()
	rec.Port = int(dst.Port())
	finish := func(d rules.Decision) {
		rec.Reason, rec.Rule = d.Reason, d.Rule
		if d.Binary != "" {
			rec.Binary = d.Binary // the process the binaries refused
		}
		rec.Decision = decisionOf(d)
		rec.DurationMS = float64(time.Since(start).Microseconds()) / 1000
		p.log(rec)
	}
	port := int(dst.Port())

	// A synthetic address stands for exactly one protocol:tcp endpoint:
	// dial at once, the server may speak first.
	if p.Synthetic != nil {
		// inference.local's address is the pool's too: its connections
		// are TLS or HTTP, read below.
		if name, ok := p.Synthetic(dst.Addr().Unmap()); ok && !p.isInference(name) {
			p.admission().decided(t)
			rec.Protocol, rec.Host = "tcp", name
			f := newFlow(client, name, port, false)
			d := p.admit(f, &rec, func(r *rules.Rules, exes []string) rules.Decision { return r.MatchBinary(name, port, exes) })
			if !d.Allow {
				finish(d)
				client.Close()
				return
			}
			p.connect(f, nil, d, &rec, finish)
			return
		}
	}

	limits := p.admission().limits
	_ = client.SetReadDeadline(time.Now().Add(limits.HandshakeTimeout))
	// Small: an HTTP connection keeps it for its whole life (heads longer
	// than the buffer are read in pieces).
	br := bufio.NewReaderSize(client, 4<<10)
	first, err := br.Peek(1)
	if err != nil {
		rec.Protocol = "tcp"
		finish(rules.Decision{Reason: p.adm.failedFor(t, err, rules.ReasonNotHTTP)})
		client.Close()
		return
	}
	if first[0] == 0x16 { // TLS handshake record
		rec.Protocol = "tls"
		hello, helloBytes, err := readClientHello(br, limits.HandshakeBytes)
		p.adm.decided(t)
		if err != nil {
			finish(rules.Decision{Reason: p.adm.failedFor(t, err, rules.ReasonNoSNI)})
			client.Close()
			return
		}
		rec.Host = hello.ServerName
		if d, ok := refuseName(hello.ServerName, hello.ECH); !ok {
			finish(d)
			client.Close()
			return
		}
		if p.isInference(hello.ServerName) {
			_ = client.SetReadDeadline(time.Time{})
			p.inferenceFlow(client, port, append(helloBytes, buffered(br)...), false, &rec, finish)
			return
		}
		// MatchBinary denies endpoints whose rules TLS hides (Unenforceable),
		// except in audit mode.
		f := newFlow(client, hello.ServerName, port, false)
		d := p.admit(f, &rec, func(r *rules.Rules, exes []string) rules.Decision {
			return p.matchTLS(f, r, exes)
		})
		if !d.Allow {
			finish(d)
			client.Close()
			return
		}
		_ = client.SetReadDeadline(time.Time{})
		// Replay the ClientHello and whatever else was read ahead, then
		// splice straight from the socket (a reader wrapper would force
		// a copy through user space for the whole flow), or inspect.
		prefix := append(helloBytes, buffered(br)...)
		if f.inspected {
			p.inspectFlow(f, prefix, d, &rec, finish)
			return
		}
		p.connect(f, prefix, d, &rec, finish)
		return
	}
	rec.Protocol = "http"
	p.serveHTTP(client, br, dst, t, &rec, finish)
}

// matchTLS decides a TLS flow: MatchBinary, and whether it is to be
// inspected (f.inspected, set before admit registers the flow for
// Recheck). An endpoint to inspect is denied when the proxy has no
// engine (unenforceable).
func (p *Proxy) matchTLS(f *flow, current *rules.Rules, exes []string) rules.Decision {
	d := current.MatchBinary(f.host, f.port, exes)
	f.inspected = d.Allow && d.Inspect
	if f.inspected && p.Inspect == nil {
		f.inspected = false
		return rules.Decision{Reason: rules.ReasonUnenforceable, Rule: d.Rule, Layer: d.Layer, Endpoint: d.Endpoint}
	}
	return d
}

// refuseName denies names that cannot be checked: none, an IP literal, or
// an encrypted ClientHello (whose outer SNI is a decoy).
func refuseName(name string, ech bool) (rules.Decision, bool) {
	switch {
	case ech:
		return rules.Decision{Reason: rules.ReasonECH}, false
	case name == "":
		return rules.Decision{Reason: rules.ReasonNoSNI}, false
	}
	if hostname.IsIPLiteral(name) {
		return rules.Decision{Reason: rules.ReasonIPLiteral}, false
	}
	return rules.Decision{}, true
}

// errHandshakeTooLarge: a connection sent more than it may make the
// proxy buffer before its handshake could be read.
var errHandshakeTooLarge = errors.New("handshake larger than a connection may buffer")

// readClientHello reads until a whole ClientHello is buffered (at most
// limit bytes) and returns it with the bytes read (to be replayed
// upstream).
func readClientHello(br *bufio.Reader, limit int) (wire.ClientHello, []byte, error) {
	var buf []byte
	for {
		// Whatever one read brought, without a buffer of its own.
		if _, err := br.Peek(1); err != nil {
			return wire.ClientHello{}, nil, err
		}
		chunk, _ := br.Peek(br.Buffered())
		if len(buf)+len(chunk) > limit {
			return wire.ClientHello{}, nil, errHandshakeTooLarge
		}
		buf = append(buf, chunk...)
		_, _ = br.Discard(len(chunk))
		hello, err := wire.ParseClientHello(buf)
		if err == nil {
			return hello, buf, nil
		}
		if !errors.Is(err, wire.ErrNeedMore) {
			return wire.ClientHello{}, nil, err
		}
	}
}

// dialChecked resolves name itself and dials the first address whose class
// is permitted, on port.
func (p *Proxy) dialChecked(ctx context.Context, name string, port int, endpointAllowed []netip.Prefix) (net.Conn, netip.Addr, rules.Reason, error) {
	addrs, err := p.Lookup(ctx, name)
	if err != nil || len(addrs) == 0 {
		return nil, netip.Addr{}, rules.ReasonResolve, fmt.Errorf("resolve %s: %v", name, err)
	}
	var lastErr error
	reason := rules.ReasonPrivateIP
	for _, a := range addrs {
		if ok, _ := rules.Permitted(a, endpointAllowed, p.ConfigAllowed); !ok {
			continue
		}
		c, err := p.Dial(ctx, "tcp", netip.AddrPortFrom(a.Unmap(), uint16(port)).String())
		if err == nil {
			return c, a, "", nil
		}
		lastErr, reason = err, rules.ReasonUpstream
	}
	if lastErr == nil {
		lastErr = fmt.Errorf("%s resolves only to blocked addresses %v", name, addrs)
	}
	return nil, netip.Addr{}, reason, lastErr
}

// connect dials upstream for an admitted flow and copies both ways.
func (p *Proxy) connect(f *flow, prefix []byte, d rules.Decision, rec *decisionlog.Record, finish func(rules.Decision)) {
	defer p.track(f, false)
	client := f.client
	up, ip, reason, err := p.dialFlow(f, d)
	if errors.Is(err, errFlowCut) {
		return
	}
	if err != nil {
		finish(rules.Decision{Reason: reason, Rule: d.Rule})
		client.Close()
		return
	}
	rec.ResolvedIP = ip.String()
	toUp := &stream{dst: up}
	if err := toUp.write(prefix); err != nil {
		client.Close()
		up.Close()
		finish(rules.Decision{Reason: rules.ReasonUpstream, Rule: d.Rule})
		return
	}
	rec.BytesIn = pipe(client, up, toUp, p.closeUpstream)
	rec.BytesOut = toUp.written
	finish(d)
}

// closeUpstream closes up, an upstream connection whose both directions
// have ended.
func (p *Proxy) closeUpstream(up net.Conn) {
	if p.CloseUpstream != nil {
		_ = p.CloseUpstream(up)
		return
	}
	_ = up.Close()
}

func (p *Proxy) track(f *flow, add bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.trackLocked(f, add)
}

// trackLocked is track with p.mu held.
func (p *Proxy) trackLocked(f *flow, add bool) {
	if p.live == nil {
		p.live = map[*flow]struct{}{}
	}
	if add {
		p.live[f] = struct{}{}
		p.count.Add(1)
		return
	}
	delete(p.live, f)
	if p.count.Add(-1) == 0 {
		p.releaseMemory()
	}
}

// releaseMemory hands the buffers of finished connections back to the
// kernel when the filter goes idle (Go would otherwise keep them until its
// forced collection, two minutes later), at most every 2 s: an idle
// moment within 2 s of the last release is served when they are over,
// if the filter is still idle then. p.mu held.
func (p *Proxy) releaseMemory() {
	const every = 2 * time.Second
	if p.releaseTimer != nil {
		return // one is scheduled
	}
	wait := every - time.Since(p.lastRelease)
	if wait <= 0 {
		p.lastRelease = time.Now()
		go debug.FreeOSMemory()
		return
	}
	p.releaseTimer = time.AfterFunc(wait, func() {
		p.mu.Lock()
		p.releaseTimer = nil
		idle := p.count.Load() == 0
		if idle {
			p.lastRelease = time.Now()
		}
		p.mu.Unlock()
		if idle {
			debug.FreeOSMemory()
		}
	})
}
