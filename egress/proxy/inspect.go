package proxy

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"syscall"

	"github.com/clawrun/clawrun/egress/decisionlog"
	"github.com/clawrun/clawrun/egress/inspect"
	"github.com/clawrun/clawrun/egress/rules"
)

// inspectFlow hands an admitted TLS flow to the inspection engine, which
// terminates its TLS and asks decideInspected for every request: the
// same matching as plain HTTP (rules.MatchRequest) with the rules current
// at each request, so that a reload decides the next request. Upstream
// connections go to the address the proxy resolves and checks itself
// (dialInspected). One record per request (protocol https), and one for
// the connection when it ends.
func (p *Proxy) inspectFlow(f *flow, prefix []byte, d rules.Decision, rec *decisionlog.Record, finish func(rules.Decision)) {
	defer p.track(f, false)
	f.cancel() // no dial of its own: the engine dials per request
	rec.Inspected = true
	opts := inspect.Options{
		ServerName: f.host,
		Port:       f.port,
		Prefix:     prefix,
		Pool:       upstreamPool{rules: f.admittedBy, allowedIPs: joinAddrs(d.AllowedIPs)},
		Decide:     func(req inspect.Request) inspect.Verdict { return p.decideInspected(f, req) },
		InspectRPC: func(req inspect.Request) bool {
			return p.Rules().ReadsRPC(f.host, f.port, req.Method, requestTarget(req))
		},
		Rewrite: func(r *http.Request) error { return p.Credentials.Rewrite(f.host, f.port, r) },
		Log:     func(dec inspect.Decision) { p.log(p.requestRecord(f, rec, dec)) },
	}
	opts.DialUpstream, opts.GotUpstream = checkedUpstream(rec, func(ctx context.Context) (net.Conn, netip.Addr, error) {
		return p.dialInspected(ctx, f)
	})
	p.serveInspected(f, opts, d, rec, finish)
}

// upstreamPool is the Options.Pool of an inspected flow: what
// dialInspected checks that does not change from dial to dial, the rules
// that admitted the flow and the addresses they allow its name to reach
// (admission's decision d). Flows with equal pools share upstream
// connections: a flow reuses a connection only where its own dial would
// go. A reload makes new rules, so new pools: a connection dialled under
// the old ones is not reused by a flow admitted after it.
type upstreamPool struct {
	rules      *rules.Rules
	allowedIPs string // joinAddrs(d.AllowedIPs)
}

// joinAddrs is addrs as one comparable string.
func joinAddrs(addrs []netip.Prefix) string {
	s := make([]string, len(addrs))
	for i, a := range addrs {
		s[i] = a.String()
	}
	return strings.Join(s, ",")
}

// checkedConn is an upstream connection of the engine with the address
// the proxy resolved and checked for it.
type checkedConn struct {
	net.Conn
	ip netip.Addr
}

// SyscallConn is the socket's, for the engine to look at an idle
// connection before it reuses it (closed by its server meanwhile?).
func (c *checkedConn) SyscallConn() (syscall.RawConn, error) {
	if sc, ok := c.Conn.(syscall.Conn); ok {
		return sc.SyscallConn()
	}
	return nil, errors.ErrUnsupported
}

// checkedUpstream makes the engine's DialUpstream and GotUpstream for a
// connection whose record is rec: dial connects to an address the proxy
// checked, and the record names the address of the first upstream
// connection a request used, which may be another connection's (shared
// through Options.Pool) and so not one this connection dialled.
func checkedUpstream(rec *decisionlog.Record, dial func(context.Context) (net.Conn, netip.Addr, error)) (func(context.Context) (net.Conn, error), func(net.Conn)) {
	dialUpstream := func(ctx context.Context) (net.Conn, error) {
		c, ip, err := dial(ctx)
		if err != nil {
			return nil, err
		}
		return &checkedConn{Conn: c, ip: ip}, nil
	}
	gotUpstream := func(c net.Conn) {
		if cc, ok := c.(*checkedConn); ok {
			rec.ResolvedIP = cc.ip.String()
		}
	}
	return dialUpstream, gotUpstream
}

// serveInspected serves an admitted flow with the engine until it ends,
// and logs the connection unless Recheck cut it (and logged it).
func (p *Proxy) serveInspected(f *flow, opts inspect.Options, d rules.Decision, rec *decisionlog.Record, finish func(rules.Decision)) {
	err := p.Inspect.Serve(f.serveCtx, f.client, opts)
	f.stopServe()
	p.mu.Lock()
	cut := f.cut
	p.mu.Unlock()
	if cut {
		return // Recheck logged it
	}
	if err != nil {
		rec.Detail = err.Error()
	}
	finish(d)
}

// decideInspected decides one request of an inspected flow with the
// rules in force now.
func (p *Proxy) decideInspected(f *flow, req inspect.Request) inspect.Verdict {
	current := p.Rules()
	d := current.MatchRequest(f.host, f.port, p.owners(f, current), rules.Request{
		Method: req.Method, Target: requestTarget(req), RPC: rpcOf(req.RPC),
		MethodOverrides: rules.MethodOverrides(req.Header.Values), WebSocket: req.WebSocket})
	return inspect.Verdict{Allow: d.Allow, Rule: d.Rule, Reason: string(d.Reason), DeniedCalls: d.DeniedCalls}
}

// requestTarget is the request-target of an inspected request as plain
// HTTP would carry it, for rules.MatchRequest.
func requestTarget(req inspect.Request) string {
	if req.RawQuery != "" {
		return req.Path + "?" + req.RawQuery
	}
	return req.Path
}

// rpcOf is the engine's reading of a JSON-RPC body as the rules take it.
func rpcOf(in *inspect.RPC) *rules.RPC {
	if in == nil {
		return nil
	}
	out := &rules.RPC{Responses: in.Responses, Calls: make([]rules.RPCCall, len(in.Calls))}
	for i, c := range in.Calls {
		out.Calls[i] = rules.RPCCall{Method: c.Method, Tool: c.Tool}
	}
	return out
}

// dialInspected connects to the upstream of an inspected flow for the
// engine: the connection must still be allowed by the rules in force
// (with their allowed_ips), and the address is the one the proxy resolves
// and checks, never the client's destination.
func (p *Proxy) dialInspected(ctx context.Context, f *flow) (net.Conn, netip.Addr, error) {
	current := p.Rules()
	d := current.MatchBinary(f.host, f.port, p.owners(f, current))
	if !d.Allow {
		return nil, netip.Addr{}, fmt.Errorf("egress: %s:%d is no longer allowed (%s)", f.host, f.port, d.Reason)
	}
	ctx, cancel := context.WithTimeout(ctx, dialTimeout)
	defer cancel()
	c, ip, _, err := p.dialChecked(ctx, f.host, f.port, d.AllowedIPs)
	return c, ip, err
}

// requestRecord is the decision-log record of one request (or engine
// refusal) of an inspected flow. An allowed request whose reason is not
// "allowed" was allowed by audit (Decide allows with another reason only
// then): its decision is audit.
func (p *Proxy) requestRecord(f *flow, conn *decisionlog.Record, dec inspect.Decision) decisionlog.Record {
	current := p.Rules()
	protocol := "https"
	if conn.Protocol == "http" { // inference.local over plain HTTP
		protocol = "http"
	}
	r := decisionlog.Record{Generation: current.Generation, Protocol: protocol, Source: conn.Source,
		Destination: conn.Destination, Host: f.host, Port: f.port, Binary: conn.Binary,
		Reason: rules.Reason(dec.Reason), Rule: dec.Rule, Method: dec.Method, Path: dec.Path,
		Status: dec.Status, Detail: dec.Detail}
	for _, c := range dec.Calls {
		call := c.Method
		if c.Tool != "" {
			call += ":" + c.Tool
		}
		r.Calls = append(r.Calls, call)
	}
	switch {
	case dec.Allow && dec.Reason != string(rules.ReasonAllowed):
		r.Decision = "audit"
	case dec.Allow:
		r.Decision = "allow"
	default:
		r.Decision = "deny"
	}
	return r
}
