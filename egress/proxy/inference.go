package proxy

import (
	"context"
	"net"
	"net/http"
	"net/netip"
	"strings"

	"github.com/clawrun/clawrun/egress/decisionlog"
	"github.com/clawrun/clawrun/egress/inference"
	"github.com/clawrun/clawrun/egress/inspect"
	"github.com/clawrun/clawrun/egress/rules"
)

// isInference reports a connection to inference.local that the proxy
// routes (egress.inference is configured and there is an engine).
func (p *Proxy) isInference(host string) bool {
	return p.Inference != nil && p.Inspect != nil && strings.EqualFold(host, inference.Host)
}

// inferencePool is the Options.Pool of inference.local's connections.
type inferencePool struct{ route *inference.Route }

// inferenceFlow serves a connection to inference.local, TLS or (cleartext)
// plain HTTP: the engine presents a leaf for inference.local from the
// container's CA (TLS) and sends
// every request to the configured backend, with the agent's header fields
// narrowed to the route's allowlist and the backend's key injected. No
// policy is asked: the administrator's config allows it, and the agent
// reaches nothing but the backend. Every request is a record.
func (p *Proxy) inferenceFlow(client net.Conn, port int, prefix []byte, cleartext bool, rec *decisionlog.Record, finish func(rules.Decision)) {
	route := p.Inference
	f := newFlow(client, inference.Host, port, false)
	f.inspected, f.inference = true, true
	f.cancel() // the engine dials per request
	p.track(f, true)
	defer p.track(f, false)
	rec.Inspected = true
	d := rules.Decision{Allow: true, Reason: rules.ReasonAllowed, Rule: inference.Rule}
	opts := inspect.Options{
		ServerName:   inference.Host,
		Port:         port,
		Prefix:       prefix,
		Upstream:     route.BackendHost,
		UpstreamPort: route.BackendPort,
		// The backend's connections are shared by every connection to
		// inference.local: its dial depends on the route alone.
		Pool: inferencePool{route},
		Decide: func(inspect.Request) inspect.Verdict {
			return inspect.Verdict{Allow: true, Rule: inference.Rule, Reason: string(rules.ReasonAllowed)}
		},
		Rewrite:   func(r *http.Request) error { return route.Rewrite(r, p.Credentials.Value) },
		Log:       func(dec inspect.Decision) { p.log(p.requestRecord(f, rec, dec)) },
		Cleartext: cleartext,
	}
	opts.DialUpstream, opts.GotUpstream = checkedUpstream(rec, func(ctx context.Context) (net.Conn, netip.Addr, error) {
		ctx, cancel := context.WithTimeout(ctx, dialTimeout)
		defer cancel()
		c, ip, _, err := p.dialChecked(ctx, route.BackendHost, route.BackendPort, nil)
		return c, ip, err
	})
	p.serveInspected(f, opts, d, rec, finish)
}
