package egresstest

import (
	"fmt"
	"net/netip"
	"os"
	"strings"
	"testing"
)

// TCPState is the state (uapi tcp_states.h, e.g. "06" for TIME_WAIT) of
// the socket of this network namespace from local to remote, as
// /proc/net/tcp shows it; "" when there is none.
func TCPState(t testing.TB, local, remote netip.AddrPort) string {
	t.Helper()
	file := "/proc/net/tcp"
	if !local.Addr().Unmap().Is4() {
		file = "/proc/net/tcp6"
	}
	data, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	l, r := procNetAddr(local), procNetAddr(remote)
	for _, line := range strings.Split(string(data), "\n")[1:] {
		f := strings.Fields(line)
		if len(f) > 3 && f[1] == l && f[2] == r {
			return f[3]
		}
	}
	return ""
}

// TimeWait is TCPState's name for TIME_WAIT.
const TimeWait = "06"

// procNetAddr writes ap as /proc/net/tcp does: the address in 32-bit
// words of host (little-endian) order, the port, in hex.
func procNetAddr(ap netip.AddrPort) string {
	a := ap.Addr().Unmap().AsSlice()
	var b strings.Builder
	for i := 0; i < len(a); i += 4 {
		fmt.Fprintf(&b, "%02X%02X%02X%02X", a[i+3], a[i+2], a[i+1], a[i])
	}
	fmt.Fprintf(&b, ":%04X", ap.Port())
	return b.String()
}
