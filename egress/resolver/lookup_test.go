package resolver

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/clawrun/clawrun/egress/internal/egresstest"
)

func newLookupResolver(t *testing.T, mod func(*Resolver)) (*Resolver, *fakeUpstream) {
	t.Helper()
	up := startUpstream(t)
	r := &Resolver{Upstream: []string{up.addr}, Timeout: 300 * time.Millisecond}
	if mod != nil {
		mod(r)
	}
	return r, up
}

func addrs(ss ...string) []netip.Addr {
	out := make([]netip.Addr, len(ss))
	for i, s := range ss {
		out[i] = netip.MustParseAddr(s)
	}
	return out
}

func TestLookupIP(t *testing.T) {
	r, up := newLookupResolver(t, nil)
	ctx := context.Background()

	got, err := r.LookupIP(ctx, "Allowed.Test.")
	want := addrs("93.184.216.34", "2606:2800:220:1:248:1893:25c8:1946")
	if err != nil || !slices.Equal(got, want) {
		t.Fatalf("LookupIP = %v, %v; want %v", got, err, want)
	}
	// Cached: no new upstream query, and callers cannot corrupt the cache.
	got[0] = netip.Addr{}
	got, err = r.LookupIP(ctx, "allowed.test")
	if err != nil || !slices.Equal(got, want) {
		t.Fatalf("cached LookupIP = %v, %v", got, err)
	}
	if a, aaaa := up.count("allowed.test", dns.TypeA), up.count("allowed.test", dns.TypeAAAA); a != 1 || aaaa != 1 {
		t.Errorf("upstream saw %d A and %d AAAA queries, want 1 and 1", a, aaaa)
	}

	// CNAME chains are followed; blocked classes are returned (the proxy
	// classifies).
	got, err = r.LookupIP(ctx, "a.test")
	if err != nil || !slices.Equal(got, addrs("93.184.216.35", "2606:2800:220:1::35")) {
		t.Errorf("a.test: %v, %v", got, err)
	}
	got, err = r.LookupIP(ctx, "meta.test")
	if err != nil || !slices.Equal(got, addrs("169.254.169.254")) {
		t.Errorf("meta.test: %v, %v", got, err)
	}
	got, err = r.LookupIP(ctx, "rr.test")
	if err != nil || len(got) != 3 {
		t.Errorf("rr.test: %v, %v", got, err)
	}

	// Names that are not host names never reach upstream.
	for _, bad := range []string{"", ".", `a\.b.test`, "a..test", "*.wild.test", "a b.test"} {
		if _, err := r.LookupIP(ctx, bad); err == nil {
			t.Errorf("LookupIP(%q) succeeded", bad)
		}
	}
	for _, q := range up.seen() {
		switch q.Name {
		case "allowed.test.", "a.test.", "meta.test.", "rr.test.":
		default:
			t.Errorf("upstream saw %+v", q)
		}
	}
}

func TestLookupIPNegativeAndFailures(t *testing.T) {
	r, up := newLookupResolver(t, nil)
	ctx := context.Background()

	// NXDOMAIN: not found, cached (SOA minimum).
	for range 2 {
		_, err := r.LookupIP(ctx, "nxd.test")
		var de *net.DNSError
		if !errors.As(err, &de) || !de.IsNotFound {
			t.Fatalf("nxd.test: %v", err)
		}
	}
	if n := up.count("nxd.test", 0); n != 2 {
		t.Errorf("upstream saw nxd.test %d times, want 2 (A and AAAA, once)", n)
	}
	// No address at all: not found.
	if _, err := r.LookupIP(ctx, "nodata.test"); err == nil {
		t.Error("nodata.test succeeded")
	}

	// SERVFAIL and timeouts are errors, not cached.
	for _, name := range []string{"fail.test", "slow.test"} {
		for range 2 {
			_, err := r.LookupIP(ctx, name)
			var de *net.DNSError
			if !errors.As(err, &de) || !de.IsTemporary {
				t.Errorf("%s: %v", name, err)
			}
		}
		if n := up.count(name, 0); n != 4 {
			t.Errorf("upstream saw %s %d times, want 4 (not cached)", name, n)
		}
	}

	// No upstream.
	r2 := &Resolver{}
	if _, err := r2.LookupIP(ctx, "allowed.test"); err == nil {
		t.Error("LookupIP without upstream succeeded")
	}
}

func TestLookupIPExpiry(t *testing.T) {
	clock := egresstest.NewClock()
	r, up := newLookupResolver(t, func(r *Resolver) { r.TTLCap = 150 * time.Millisecond; r.cache.now = clock.Now })
	ctx := context.Background()
	for range 2 {
		if _, err := r.LookupIP(ctx, "allowed.test"); err != nil {
			t.Fatal(err)
		}
		clock.Add(149 * time.Millisecond / 2)
	}
	if n := up.count("allowed.test", dns.TypeA); n != 1 {
		t.Fatalf("upstream saw %d A queries before expiry", n)
	}
	clock.Add(2 * time.Millisecond) // 150 ms after the answer
	if _, err := r.LookupIP(ctx, "allowed.test"); err != nil {
		t.Fatal(err)
	}
	if n := up.count("allowed.test", dns.TypeA); n != 2 {
		t.Errorf("upstream saw %d A queries after expiry, want 2", n)
	}
}

func TestLookupIPDedup(t *testing.T) {
	r, up := newLookupResolver(t, func(r *Resolver) { r.Timeout = 5 * time.Second })
	hold := make(chan struct{})
	up.setHold(hold)

	const n = 50
	var wg sync.WaitGroup
	results := make([][]netip.Addr, n)
	errs := make([]error, n)
	for i := range n {
		wg.Go(func() { results[i], errs[i] = r.LookupIP(context.Background(), "gate.test") })
	}
	// Wait until the upstream holds both queries, let the others join.
	deadline := time.Now().Add(5 * time.Second)
	for up.count("gate.test", 0) < 2 && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	time.Sleep(50 * time.Millisecond)

	// A caller that gives up does not cancel the lookup for the others.
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := r.LookupIP(ctx, "gate.test"); !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled caller: %v", err)
	}

	close(hold)
	wg.Wait()
	want := addrs("93.184.216.60", "2606:2800:220:1::60")
	for i := range n {
		if errs[i] != nil || !slices.Equal(results[i], want) {
			t.Fatalf("caller %d: %v, %v", i, results[i], errs[i])
		}
	}
	if a, aaaa := up.count("gate.test", dns.TypeA), up.count("gate.test", dns.TypeAAAA); a != 1 || aaaa != 1 {
		t.Errorf("upstream saw %d A and %d AAAA queries for %d concurrent lookups, want 1 and 1", a, aaaa, n)
	}
}

func TestLookupCacheBound(t *testing.T) {
	var c lookupCache
	exp := time.Now().Add(time.Hour)
	for i := range maxCacheEntries + 100 {
		c.store(cacheKey{name: strconv.Itoa(i), qtype: dns.TypeA}, cacheEntry{expires: exp})
	}
	if len(c.entries) > maxCacheEntries {
		t.Errorf("cache holds %d entries, bound %d", len(c.entries), maxCacheEntries)
	}
}
