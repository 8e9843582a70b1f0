package resolver

import (
	"fmt"
	"net/netip"
	"sync"
	"testing"
)

func TestSyntheticPool(t *testing.T) {
	p := NewSyntheticPool(DefaultSyntheticPrefix)
	if p.Prefix() != netip.MustParsePrefix("100.127.0.0/16") {
		t.Fatalf("prefix %v", p.Prefix())
	}
	a := p.Assign("svc.test")
	if !a.Is4() || !p.Prefix().Contains(a) {
		t.Fatalf("Assign = %v", a)
	}
	if b := p.Assign("SVC.test."); b != a {
		t.Errorf("not stable across spellings: %v, %v", a, b)
	}
	if name, ok := p.Lookup(a); !ok || name != "svc.test" {
		t.Errorf("Lookup(%v) = %q, %v", a, name, ok)
	}
	if name, ok := p.Lookup(netip.AddrFrom16(a.As16())); !ok || name != "svc.test" {
		t.Errorf("Lookup(mapped %v) = %q, %v", a, name, ok)
	}
	if _, ok := p.Lookup(netip.MustParseAddr("100.127.0.0")); ok {
		t.Error("Lookup of an unassigned address succeeded")
	}

	// Same name, same address in a new pool (a restarted filter).
	if b := NewSyntheticPool(DefaultSyntheticPrefix).Assign("svc.test"); b != a {
		t.Errorf("a new pool gave %v, the first %v", b, a)
	}

	seen := map[netip.Addr]bool{a: true}
	for i := range 1000 {
		b := p.Assign(fmt.Sprintf("n%d.test", i))
		if seen[b] || !p.Prefix().Contains(b) {
			t.Fatalf("Assign gave %v twice or outside the range", b)
		}
		seen[b] = true
	}
}

func TestSyntheticPoolExhaustion(t *testing.T) {
	p := NewSyntheticPool(netip.MustParsePrefix("10.9.9.4/30"))
	a, b := p.Assign("a"), p.Assign("b")
	want := map[netip.Addr]bool{netip.MustParseAddr("10.9.9.5"): true, netip.MustParseAddr("10.9.9.6"): true}
	if !want[a] || !want[b] || a == b {
		t.Fatalf("Assign in a /30 gave %v, %v (network and broadcast excluded)", a, b)
	}
	if c := p.Assign("c"); c.IsValid() {
		t.Errorf("exhausted pool gave %v", c)
	}
	if p.Assign("a") != a {
		t.Error("existing names keep their address when the pool is full")
	}
}

func TestSyntheticPoolBadPrefix(t *testing.T) {
	for _, s := range []string{"fd00::/64", "10.0.0.0/31", "10.0.0.1/32"} {
		func() {
			defer func() {
				if recover() == nil {
					t.Errorf("NewSyntheticPool(%s) did not panic", s)
				}
			}()
			NewSyntheticPool(netip.MustParsePrefix(s))
		}()
	}
}

func TestSyntheticPoolConcurrent(t *testing.T) {
	p := NewSyntheticPool(DefaultSyntheticPrefix)
	var wg sync.WaitGroup
	got := make([]netip.Addr, 16)
	for i := range got {
		wg.Go(func() {
			for j := range 200 {
				p.Assign(fmt.Sprintf("x%d.test", j))
			}
			got[i] = p.Assign("shared.test")
		})
	}
	wg.Wait()
	for _, a := range got {
		if a != got[0] {
			t.Fatalf("concurrent Assign disagrees: %v", got)
		}
	}
}
