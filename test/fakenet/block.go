package fakenet

// The address blocks of the fake internets: runs of /24s of the
// benchmarking range 198.18.0.0/15 (RFC 2544) that no address or route of
// the host overlaps, so that runs side by side (tests, the demo, the
// benchmark), and the host's own networks, never share one.

import (
	"errors"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"strings"

	"golang.org/x/sys/unix"
)

// lockFile serializes picking a block and making it visible on the host
// between every user of this package.
const lockFile = "/run/lock/clawrun-netblock.lock"

// rangeSize is how many /24s 198.18.0.0/15 holds.
const rangeSize = 512

// reserveTable is the routing table that holds a route for each /24 of a
// block the host would not otherwise show (a client's link, a range for
// later): no rule points to it, so it routes nothing, but the next pick
// sees the /24 taken. Its routes are bound to the block's veth and go
// with it.
const reserveTable = "2544"

// lock takes lockFile; the returned function releases it.
func lock() (unlock func(), err error) {
	f, err := os.OpenFile(lockFile, os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, err
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX); err != nil {
		f.Close()
		return nil, fmt.Errorf("lock %s: %w", lockFile, err)
	}
	return func() { f.Close() }, nil
}

// pick returns the first index g such that the /24s g to g+size-1 of
// 198.18.0.0/15 overlap no address or route of the host. Hold lock from
// pick until the block is visible on the host.
func pick(size int) (int, error) {
	used, err := hostPrefixes()
	if err != nil {
		return 0, err
	}
	for g := 0; g+size <= rangeSize; g++ {
		if free(g, size, used) {
			return g, nil
		}
	}
	return 0, fmt.Errorf("no free run of %d /24s in 198.18.0.0/15", size)
}

// prefixOf is the /24 of index g of 198.18.0.0/15.
func prefixOf(g int) netip.Prefix {
	return netip.PrefixFrom(netip.AddrFrom4([4]byte{198, byte(18 + g/256), byte(g % 256), 0}), 24)
}

func free(g, size int, used []netip.Prefix) bool {
	for k := g; k < g+size; k++ {
		for _, p := range used {
			if p.Overlaps(prefixOf(k)) {
				return false
			}
		}
	}
	return true
}

// hostPrefixes are the host's IPv4 routes (all tables, the default route
// aside) and addresses.
func hostPrefixes() ([]netip.Prefix, error) {
	var used []netip.Prefix
	for _, args := range [][]string{{"-4", "route", "show", "table", "all"}, {"-4", "-o", "addr", "show"}} {
		out, err := exec.Command("ip", args...).CombinedOutput()
		if err != nil {
			return nil, errors.New("ip " + strings.Join(args, " ") + ": " + err.Error() + ": " + strings.TrimSpace(string(out)))
		}
		for _, f := range strings.Fields(string(out)) {
			if p, err := netip.ParsePrefix(f); err == nil && p.Bits() > 0 {
				used = append(used, p.Masked())
			} else if a, err := netip.ParseAddr(f); err == nil && a.Is4() {
				used = append(used, netip.PrefixFrom(a, 32))
			}
		}
	}
	return used, nil
}
