package integration

import (
	"testing"

	"github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/clawrun/clawrun/test/bundle"
)

// tcpRulesDoc lists TCP ports for Landlock (clawrun.landlock.tcp_bind and
// tcp_connect) and has no network_policies: no egress filter runs, so a
// refused connection can only be Landlock's. Without tcpRules it is the
// same file policy with TCP unrestricted.
func tcpRulesDoc(tcpRules bool) string {
	doc := `version: 1
filesystem_policy:
  read_only: [/bin, /usr, /proc]
  read_write: [/tmp, /dev/null]
`
	if tcpRules {
		doc += `clawrun:
  landlock:
    tcp_bind: [8001, 8002, 8004]
    tcp_connect: [8001]
`
	}
	return doc
}

// TestPolicyLandlockTCP: clawrun.landlock.tcp_connect and tcp_bind. The
// init listens on 127.0.0.1:8001 and :8002 (both may be bound); an exec'd
// process may connect to 8001 only and bind 8004 but not 8003 or 8005,
// each refused with Landlock's EACCES. Landlock sees TCP sockets, not
// Multipath TCP ones (IPPROTO_MPTCP, which Go's listeners use by default
// and GODEBUG=multipathtcp=1 its dialers too): the policy refuses those, as
// a kernel without MPTCP does, so that programs fall back to TCP and its
// rules. The same file policy without the TCP lists, and no policy, allow
// everything: the lists are what refuses.
func TestPolicyLandlockTCP(t *testing.T) {
	t.Parallel()
	policyRuntime(t)
	if abi := hostLandlockABI(); abi < 4 {
		t.Skipf("kernel lacks Landlock ABI 4 (TCP port rules); it has ABI %d", abi)
	}
	init := "probe tcp-listen 8001 120 & probe tcp-listen 8002 120 & " + sleeper
	const tcp, mptcp, mptcpListen = "GODEBUG=multipathtcp=0 probe ", "GODEBUG=multipathtcp=1 probe ", "GODEBUG=multipathtcp=2 probe "
	checks := []pcheck{
		{name: "connect-listed", cmd: tcp + "tcp 127.0.0.1 8001", policy: "OK hello from 8001", base: "OK hello from 8001"},
		{name: "connect-unlisted", cmd: tcp + "tcp 127.0.0.1 8002", policy: "ERR EACCES connect", base: "OK hello from 8002"},
		{name: "bind-listed", cmd: tcp + "tcp-listen 8004", policy: "OK listening on 8004", base: "OK listening on 8004"},
		{name: "bind-unlisted", cmd: tcp + "tcp-listen 8003", policy: "ERR EACCES listen", base: "OK listening on 8003"},
	}
	if hostHasMPTCP() {
		checks = append(checks,
			pcheck{name: "mptcp-socket", cmd: "probe socket mptcp", policy: "ERR EPROTONOSUPPORT", base: "OK"},
			pcheck{name: "mptcp6-socket", cmd: "probe socket mptcp6", policy: "ERR EPROTONOSUPPORT", base: "OK"},
			pcheck{name: "mptcp-connect-unlisted", cmd: mptcp + "tcp 127.0.0.1 8002", policy: "ERR EACCES connect", base: "OK hello from 8002"},
			pcheck{name: "mptcp-connect-listed", cmd: mptcp + "tcp 127.0.0.1 8001", policy: "OK hello from 8001", base: "OK hello from 8001"},
			pcheck{name: "mptcp-bind-unlisted", cmd: mptcpListen + "tcp-listen 8005", policy: "ERR EACCES listen", base: "OK listening on 8005"})
	} else {
		t.Log("the kernel has no Multipath TCP: its checks are left out")
	}

	for _, tc := range []struct {
		name  string
		edits []func(*specs.Spec)
		pick  func(pcheck) string
	}{
		{"tcp-rules", []func(*specs.Spec){withInline(tcpRulesDoc(true))}, wantPolicy},
		{"no-tcp-rules", []func(*specs.Spec){withInline(tcpRulesDoc(false))}, wantBase},
		{"no-policy", nil, wantBase},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			r := policyRuntime(t)
			b := r.probeBundle(append(tc.edits, bundle.Shell(init))...)
			id := newID(t)
			r.runReady(id, b, "OK listening on 8001", "OK listening on 8002")
			if tc.edits != nil {
				c := r.fullState(id).Clawrun
				if c.Landlock.Status != "enforced" || len(c.Landlock.Layers) != 1 || len(c.Landlock.Layers[0].Missing) > 0 {
					t.Errorf("state: want one fully enforced Landlock layer; got %s", c)
				}
				checkEgress(t, c, false)
			}
			res := r.ok("exec", id, "sh", "-c", checkScript(checks))
			verifyChecks(t, tc.name, res.Stdout, checks, tc.pick)
		})
	}
}

// hostHasMPTCP tells whether this kernel opens Multipath TCP sockets.
func hostHasMPTCP() bool {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM, unix.IPPROTO_MPTCP)
	if err != nil {
		return false
	}
	unix.Close(fd)
	return true
}
