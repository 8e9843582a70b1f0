package egress

import (
	"context"
	"math"
	"net"
	"net/netip"
	"slices"
	"sync"
	"time"

	"github.com/miekg/dns"
)

// maxCacheEntries bounds LookupIP's cache; names reach it only after the
// policy allowed them, but a wildcard endpoint allows unboundedly many.
const maxCacheEntries = 4096

// lookupCache is LookupIP's state: answers by name until their TTL ends,
// and the lookups in flight, which concurrent callers for the same name
// join instead of asking upstream again.
type lookupCache struct {
	mu      sync.Mutex
	entries map[string]cacheEntry
	flights map[string]*flight
}

type cacheEntry struct {
	addrs   []netip.Addr
	err     error // a negative answer (no such host) is cached too
	expires time.Time
}

type flight struct {
	done  chan struct{}
	addrs []netip.Addr
	err   error
}

// LookupIP resolves host's A and AAAA addresses through the upstreams, for
// the proxy, which dials only addresses it has classified itself. It
// returns every address, IPv4 first; the caller decides which are
// permitted. Answers are cached for their TTL (at most TTLCap). A name
// that does not exist or has no address gives a *net.DNSError with
// IsNotFound set.
func (r *Resolver) LookupIP(ctx context.Context, host string) ([]netip.Addr, error) {
	name, ok := queryName(host)
	if !ok {
		return nil, &net.DNSError{Err: "invalid host name", Name: host, IsNotFound: true}
	}
	c := &r.cache
	c.mu.Lock()
	if e, ok := c.entries[name]; ok {
		if time.Now().Before(e.expires) {
			c.mu.Unlock()
			return slices.Clone(e.addrs), e.err
		}
		delete(c.entries, name)
	}
	f, ok := c.flights[name]
	if !ok {
		if c.flights == nil {
			c.flights = map[string]*flight{}
		}
		f = &flight{done: make(chan struct{})}
		c.flights[name] = f
		// The lookup outlives this caller's cancellation: others may
		// have joined it.
		go r.fly(context.WithoutCancel(ctx), name, f)
	}
	c.mu.Unlock()

	select {
	case <-f.done:
		return slices.Clone(f.addrs), f.err
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

func (r *Resolver) fly(ctx context.Context, name string, f *flight) {
	addrs, ttl, err := r.lookupBoth(ctx, name)
	c := &r.cache
	c.mu.Lock()
	delete(c.flights, name)
	if ttl > 0 {
		c.store(name, cacheEntry{addrs: addrs, err: err, expires: time.Now().Add(ttl)})
	}
	f.addrs, f.err = addrs, err
	c.mu.Unlock()
	close(f.done)
}

// store adds an entry, making room first if the cache is full. c.mu held.
func (c *lookupCache) store(name string, e cacheEntry) {
	if c.entries == nil {
		c.entries = map[string]cacheEntry{}
	}
	if len(c.entries) >= maxCacheEntries {
		now := time.Now()
		for k, v := range c.entries {
			if !now.Before(v.expires) {
				delete(c.entries, k)
			}
		}
		for k := range c.entries { // still full: drop arbitrary entries
			if len(c.entries) < maxCacheEntries {
				break
			}
			delete(c.entries, k)
		}
	}
	c.entries[name] = e
}

// lookupBoth asks A and AAAA in parallel and returns the addresses with
// how long they may be cached (0: not at all, e.g. after a failure).
func (r *Resolver) lookupBoth(ctx context.Context, name string) ([]netip.Addr, time.Duration, error) {
	ctx, cancel := context.WithTimeout(ctx, r.budget())
	defer cancel()
	qtypes := [2]uint16{dns.TypeA, dns.TypeAAAA}
	var res [2]answerSet
	var errs [2]error
	var wg sync.WaitGroup
	for i, qt := range qtypes {
		wg.Go(func() { res[i], errs[i] = r.resolve(ctx, name, qt) })
	}
	wg.Wait()

	var addrs []netip.Addr
	ttl := uint32(math.MaxUint32)
	failed := false
	for i := range qtypes {
		if errs[i] != nil {
			failed = true
			continue
		}
		addrs = append(addrs, res[i].addrs...)
		ttl = min(ttl, res[i].ttl)
	}
	cacheFor := min(time.Duration(ttl)*time.Second, r.ttlCap())
	if failed {
		cacheFor = 0 // a partial answer is not worth keeping
	}
	if len(addrs) == 0 {
		if failed {
			err := errs[0]
			if err == nil {
				err = errs[1]
			}
			return nil, 0, &net.DNSError{Err: err.Error(), Name: name, IsTemporary: true}
		}
		return nil, cacheFor, &net.DNSError{Err: "no such host", Name: name, IsNotFound: true}
	}
	return addrs, cacheFor, nil
}
