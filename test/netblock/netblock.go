// Package netblock picks the address blocks of the test networks (the
// integration tests' and the demo's fake internets, the end-to-end
// tests'): runs of /24s of a benchmarking range (198.18.0.0/15, RFC 2544)
// that no address or route of the host overlaps, so that runs side by
// side, and the host's own networks, never share one.
package netblock

import (
	"errors"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"strings"

	"golang.org/x/sys/unix"
)

// LockFile serializes picking a block and putting addresses on it
// between the runs that use this package (a shell holds it with flock(1)).
const LockFile = "/run/lock/clawrun-netblock.lock"

// Lock takes LockFile; the returned function releases it.
func Lock() (unlock func(), err error) {
	f, err := os.OpenFile(LockFile, os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, err
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX); err != nil {
		f.Close()
		return nil, fmt.Errorf("lock %s: %w", LockFile, err)
	}
	return func() { f.Close() }, nil
}

// Pick returns the first N of first, first+step, ... (N+size <= limit)
// such that prefix16.N.0/24 to prefix16.(N+size-1).0/24 overlap no
// address or route of the host (prefix16 is "198.18" or "198.19"). Hold
// Lock from Pick until the block's addresses are in place.
func Pick(prefix16 string, first, step, size, limit int) (int, error) {
	used, err := hostPrefixes()
	if err != nil {
		return 0, err
	}
	for n := first; n+size <= limit; n += step {
		if free(prefix16, n, size, used) {
			return n, nil
		}
	}
	return 0, fmt.Errorf("no free run of %d /24s in %s.%d-%d.0", size, prefix16, first, limit-1)
}

func free(prefix16 string, n, size int, used []netip.Prefix) bool {
	for k := n; k < n+size; k++ {
		mine := netip.MustParsePrefix(fmt.Sprintf("%s.%d.0/24", prefix16, k))
		for _, p := range used {
			if p.Overlaps(mine) {
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
