package inspect

import (
	"context"
	"errors"
	"net"
	"sync"
	"time"
)

// Upstream connections shared by a container's client connections.
//
// A client that opens a connection per request (curl in a loop, a script
// without an HTTP session, a tool spawned per call) would otherwise cost
// an upstream TCP connection and TLS handshake per request, on top of its
// own handshake with the filter. The HTTP/1.1 client connections whose
// Options.Pool is equal share one upstream client per upstream (name and
// port; an h1Upstream and its Transport): a request goes on an idle
// upstream connection another one left, when there is one, else on a new
// one it dials. (An HTTP/2 client keeps its connection and sends its
// requests on it as streams: its upstream connections stay its own, at
// most maxUpstreamConns, closed with it.)
//
// Reuse never reaches further than a dial would: the filter makes Pool of
// what its dial checks (the rules in force and the addresses they allow
// the connection), so a connection is only reused where the same dial
// would have gone; every request is still decided on its own, with its
// own client connection's identity; the upstream gets requests written
// anew by net/http, never bytes of the client's, so one client connection
// cannot leave anything in a shared connection for the next; and an
// Engine is one container's, never shared with another.

const (
	// maxPools bounds the shared clients of an engine; the least recently
	// used one goes (its idle connections closed) for a new one.
	maxPools = 64
	// pooledIdle is how long an idle shared connection is kept: below
	// the keep-alive timeout of most servers (60 s and more), so that a
	// request rarely meets a connection its server is closing.
	pooledIdle = 50 * time.Second
)

// poolKey is what shares a client: the filter's Pool, and where the
// client connects.
type poolKey struct {
	pool any
	name string // the upstream's name, which its certificate proves
	port int
}

// upstreamPools are an engine's shared upstream clients.
type upstreamPools struct {
	mu sync.Mutex
	m  map[poolKey]*pooledClient
}

type pooledClient struct {
	client *h1Upstream
	used   time.Time
}

// client returns the shared client of key, made by newClient when
// there is none.
func (p *upstreamPools) client(key poolKey, newClient func() *h1Upstream) *h1Upstream {
	p.mu.Lock()
	defer p.mu.Unlock()
	now := time.Now()
	if pt := p.m[key]; pt != nil {
		pt.used = now
		return pt.client
	}
	if p.m == nil {
		p.m = map[poolKey]*pooledClient{}
	}
	if len(p.m) >= maxPools {
		var (
			oldestKey poolKey
			oldest    *pooledClient
		)
		for k, pt := range p.m {
			if oldest == nil || pt.used.Before(oldest.used) {
				oldestKey, oldest = k, pt
			}
		}
		oldest.client.CloseIdleConnections()
		delete(p.m, oldestKey)
	}
	c := newClient()
	p.m[key] = &pooledClient{client: c, used: now}
	return c
}

// drop forgets every shared client and closes their idle connections
// (the rules changed: new client connections get new keys). A connection
// still in use goes back to its client, which only the client
// connections that already hold it still use; CloseIdleConnections makes
// the client close it as it comes back, until one of those asks for a
// connection again.
func (p *upstreamPools) drop() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for k, pt := range p.m {
		pt.client.CloseIdleConnections()
		delete(p.m, k)
	}
}

// DropUpstreamConns closes the idle upstream connections the engine keeps
// for reuse, and forgets them. The filter calls it when its rules change.
func (e *Engine) DropUpstreamConns() { e.pools.drop() }

// dialForRequest is a shared client's dial: that of the session whose
// request needs a connection (its Options.DialUpstream: the filter's
// checks for that client connection).
func dialForRequest(ctx context.Context, _, _ string) (net.Conn, error) {
	ex := exchangeFrom(ctx)
	if ex == nil || ex.session == nil {
		return nil, errors.New("inspect: an upstream dial outside a request")
	}
	return ex.session.dialUpstream(ctx, "", "")
}
