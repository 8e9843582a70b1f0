package resolver

import (
	"encoding/binary"
	"fmt"
	"hash/fnv"
	"net/netip"
	"strings"
	"sync"
)

// DefaultSyntheticPrefix is the range clawrun answers protocol:tcp names
// from. The addresses never leave the container's network namespace: all
// TCP there is redirected to the proxy, which maps the original
// destination back to exactly one (name, port) and dials its own lookup of
// the name. The range is the top /16 of the shared address space
// (RFC 6598, 100.64.0.0/10): never routed on the internet, unlikely to
// collide with container networks (Docker 172.17/16, pods in 10/8), and a
// class the IP check blocks anyway, so no real answer handed to the client
// can be mistaken for a synthetic one unless an operator opens it.
var DefaultSyntheticPrefix = netip.MustParsePrefix("100.127.0.0/16")

// SyntheticPool hands out one stable IPv4 address per name from a private
// range, and maps addresses back to names. It is safe for concurrent use.
//
// Addresses are derived from a hash of the name (linear probing on
// collision), so a restarted filter usually gives a name the address the
// container may still have cached, instead of handing it to another name.
type SyntheticPool struct {
	prefix netip.Prefix
	base   uint32 // network address
	size   uint32 // usable host addresses (network and broadcast excluded)

	mu     sync.Mutex
	byName map[string]netip.Addr
	byAddr map[netip.Addr]string
}

// NewSyntheticPool returns a pool over prefix, which must be IPv4 and hold
// at least two host addresses (/30 or shorter). It panics otherwise: the
// prefix is configuration validated before the filter starts.
func NewSyntheticPool(prefix netip.Prefix) *SyntheticPool {
	if !prefix.IsValid() || !prefix.Addr().Is4() || prefix.Bits() > 30 {
		panic(fmt.Sprintf("egress: synthetic range %v: need an IPv4 prefix of /30 or shorter", prefix))
	}
	prefix = prefix.Masked()
	a := prefix.Addr().As4()
	return &SyntheticPool{
		prefix: prefix,
		base:   binary.BigEndian.Uint32(a[:]),
		size:   uint32(1<<(32-prefix.Bits())) - 2,
		byName: map[string]netip.Addr{},
		byAddr: map[netip.Addr]string{},
	}
}

// Prefix returns the pool's range: a connection to an address in it that
// Lookup does not know must be refused, not dialled.
func (p *SyntheticPool) Prefix() netip.Prefix { return p.prefix }

// Assign returns name's address, allocating it on first use. It returns
// the zero Addr when the range is exhausted.
func (p *SyntheticPool) Assign(name string) netip.Addr {
	name = strings.TrimSuffix(strings.ToLower(name), ".")
	p.mu.Lock()
	defer p.mu.Unlock()
	if a, ok := p.byName[name]; ok {
		return a
	}
	if uint32(len(p.byAddr)) >= p.size {
		return netip.Addr{}
	}
	h := fnv.New32a()
	h.Write([]byte(name))
	off := h.Sum32() % p.size
	for {
		var b [4]byte
		binary.BigEndian.PutUint32(b[:], p.base+1+off)
		a := netip.AddrFrom4(b)
		if _, taken := p.byAddr[a]; !taken {
			p.byName[name] = a
			p.byAddr[a] = name
			return a
		}
		off = (off + 1) % p.size
	}
}

// Lookup returns the name an address was assigned to. IPv4-mapped IPv6
// addresses are accepted.
func (p *SyntheticPool) Lookup(addr netip.Addr) (name string, ok bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	name, ok = p.byAddr[addr.Unmap()]
	return name, ok
}
