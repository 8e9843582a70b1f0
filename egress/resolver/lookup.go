package resolver

import (
	"context"
	"net"
	"net/netip"
	"slices"
	"sync"
	"time"

	"github.com/miekg/dns"
)

// maxCacheEntries bounds the answer cache; names reach it only after the
// policy allowed them, but a wildcard endpoint allows unboundedly many.
const maxCacheEntries = 4096

// lookupCache holds upstream answers by name and type until their TTL
// ends, for both the container's queries and the proxy's own lookups (so
// a connection right after the container's lookup asks nothing upstream),
// and the queries in flight, which concurrent callers join instead of
// asking upstream again.
type lookupCache struct {
	mu      sync.Mutex
	entries map[cacheKey]cacheEntry
	flights map[cacheKey]*flight
	now     func() time.Time // the clock TTLs run on (nil: time.Now); tests set it
}

func (c *lookupCache) clock() time.Time {
	if c.now != nil {
		return c.now()
	}
	return time.Now()
}

type cacheKey struct {
	name  string // validated and lower-case (queryName)
	qtype uint16
}

type cacheEntry struct {
	set     answerSet // NXDOMAIN and no-data answers are cached too
	expires time.Time
	hits    uint32
}

type flight struct {
	done chan struct{}
	set  answerSet
	err  error
}

// cachedResolve is resolve through the cache. Answers are kept for their
// TTL, at most TTLCap; failures (SERVFAIL, timeouts) are not kept. The
// returned TTL is what is left of it. name must have passed queryName.
func (r *Resolver) cachedResolve(ctx context.Context, name string, qtype uint16) (answerSet, error) {
	key := cacheKey{name, qtype}
	c := &r.cache
	c.mu.Lock()
	if set, ok := c.hit(key); ok {
		c.mu.Unlock()
		return set, nil
	}
	f, ok := c.flights[key]
	if !ok {
		if c.flights == nil {
			c.flights = map[cacheKey]*flight{}
		}
		f = &flight{done: make(chan struct{})}
		c.flights[key] = f
		// The query outlives this caller's cancellation: others may have
		// joined it.
		go r.fly(context.WithoutCancel(ctx), key, f)
	}
	c.mu.Unlock()

	select {
	case <-f.done:
		set := f.set
		set.addrs = slices.Clone(set.addrs)
		return set, f.err
	case <-ctx.Done():
		return answerSet{}, ctx.Err()
	}
}

func (r *Resolver) fly(ctx context.Context, key cacheKey, f *flight) {
	ctx, cancel := context.WithTimeout(ctx, r.budget())
	defer cancel()
	set, err := r.resolve(ctx, key.name, key.qtype)
	keep := min(time.Duration(set.ttl)*time.Second, r.ttlCap())
	if err == nil {
		set.ttl = uint32((keep + time.Second - 1) / time.Second)
	}
	c := &r.cache
	c.mu.Lock()
	delete(c.flights, key)
	if err == nil && keep > 0 {
		c.store(key, cacheEntry{set: set, expires: c.clock().Add(keep)})
	}
	f.set, f.err = set, err
	c.mu.Unlock()
	close(f.done)
}

// hit returns the cached answer for key while it is fresh: a copy, with
// the TTL left, rotated on every hit as a round-robin upstream would (so
// that clients taking the first address spread out). c.mu held.
func (c *lookupCache) hit(key cacheKey) (answerSet, bool) {
	e, ok := c.entries[key]
	if !ok {
		return answerSet{}, false
	}
	left := e.expires.Sub(c.clock())
	if left <= 0 {
		delete(c.entries, key)
		return answerSet{}, false
	}
	e.hits++
	c.entries[key] = e
	set := e.set
	set.addrs = slices.Clone(set.addrs)
	if n := len(set.addrs); n > 1 {
		k := int(e.hits % uint32(n))
		set.addrs = append(set.addrs[k:], set.addrs[:k]...)
	}
	set.ttl = uint32((left + time.Second - 1) / time.Second)
	return set, true
}

// store adds an entry, making room first if the cache is full. c.mu held.
func (c *lookupCache) store(key cacheKey, e cacheEntry) {
	if c.entries == nil {
		c.entries = map[cacheKey]cacheEntry{}
	}
	if len(c.entries) >= maxCacheEntries {
		now := c.clock()
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
	c.entries[key] = e
}

// LookupIP resolves host's A and AAAA addresses through the upstreams (or
// the cache), for the proxy, which dials only addresses it has classified
// itself. It returns every address, IPv4 first; the caller decides which
// are permitted. A name that does not exist or has no address gives a
// *net.DNSError with IsNotFound set.
func (r *Resolver) LookupIP(ctx context.Context, host string) ([]netip.Addr, error) {
	name, ok := queryName(host)
	if !ok {
		return nil, &net.DNSError{Err: "invalid host name", Name: host, IsNotFound: true}
	}
	qtypes := [2]uint16{dns.TypeA, dns.TypeAAAA}
	var res [2]answerSet
	var errs [2]error
	// Cached types are answered here; the others are asked at once.
	var hit [2]bool
	c := &r.cache
	c.mu.Lock()
	for i, qt := range qtypes {
		res[i], hit[i] = c.hit(cacheKey{name, qt})
	}
	c.mu.Unlock()
	var wg sync.WaitGroup
	for i, qt := range qtypes {
		if !hit[i] {
			wg.Go(func() { res[i], errs[i] = r.cachedResolve(ctx, name, qt) })
		}
	}
	wg.Wait()

	var addrs []netip.Addr
	var failure error
	for i := range qtypes {
		if errs[i] != nil {
			failure = errs[i]
			continue
		}
		addrs = append(addrs, res[i].addrs...)
	}
	if len(addrs) == 0 {
		if err := ctx.Err(); err != nil {
			return nil, err // this caller gave up; the query goes on for others
		}
		if failure != nil {
			return nil, &net.DNSError{Err: failure.Error(), Name: name, IsTemporary: true}
		}
		return nil, &net.DNSError{Err: "no such host", Name: name, IsNotFound: true}
	}
	return addrs, nil
}
