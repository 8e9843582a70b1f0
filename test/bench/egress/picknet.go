package main

import (
	"fmt"
	"net/netip"
	"os/exec"
	"strings"
)

// pickNet prints N such that 198.19.N.0/24, 198.19.N+1.0/24 and
// 198.19.N+2.0/24 overlap no route and no address of the host: the links
// to the fake internet, the direct client's and the filtered client's.
// (198.18.0.0/16 is where the integration tests and the demo build
// theirs, often concurrently.) The caller holds a lock until its veths
// exist, so two benches do not pick the same block.
func pickNet() {
	var used []netip.Prefix
	for _, args := range [][]string{
		{"-4", "route", "show", "table", "all"},
		{"-4", "-o", "addr", "show"},
	} {
		out, err := exec.Command("ip", args...).Output()
		if err != nil {
			fatalf("ip %s: %v", strings.Join(args, " "), err)
		}
		for _, f := range strings.Fields(string(out)) {
			if p, err := netip.ParsePrefix(f); err == nil && p.Addr().Is4() && p.Bits() > 0 {
				used = append(used, p.Masked())
			} else if a, err := netip.ParseAddr(f); err == nil && a.Is4() {
				used = append(used, netip.PrefixFrom(a, 32))
			}
		}
	}
	for n := 100; n+2 <= 254; n += 3 {
		free := true
		for k := n; k <= n+2 && free; k++ {
			mine := netip.MustParsePrefix(fmt.Sprintf("198.19.%d.0/24", k))
			for _, p := range used {
				if p.Overlaps(mine) {
					free = false
					break
				}
			}
		}
		if free {
			fmt.Println(n)
			return
		}
	}
	fatalf("no free block of three /24s in 198.19.100.0-198.19.254.255")
}
