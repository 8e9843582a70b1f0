package integration

// The filter's CA under a policy whose Landlock layer does not grant /etc:
// the runtime mounts the trust bundle under /etc/clawrun, and a plan
// whose egress is inspected grants that directory read-only in every
// layer, and nothing more of /etc.

import (
	"strconv"
	"testing"
)

// noEtcDoc reads only /bin and /usr (no /etc); allowed.test is
// inspected (read-only).
const noEtcDoc = `version: 1
filesystem_policy:
  read_only: [/bin, /usr]
  read_write: [/dev/null]
landlock:
  compatibility: hard_requirement
network_policies:
  api:
    endpoints:
      - host: allowed.test
        port: 8443
        protocol: rest
        access: read-only
`

// TestEgressInspectTrustWithoutEtc: under a policy without /etc, an
// inspected HTTPS request verifies the filter's certificate through
// SSL_CERT_FILE (the bundle under /etc/clawrun) and is answered; a POST
// still gets 403 and never reaches the upstream; another file of /etc
// stays unreadable, and so does /etc itself. The same holds for a process
// exec'd into the container (the probe runs through exec).
func TestEgressInspectTrustWithoutEtc(t *testing.T) {
	r, fn := egressRuntime(t)
	c := fn.startInspected(t, r, noEtcDoc)
	// The probe dials the fake internet's address: /etc/resolv.conf is
	// not readable either.
	addr := fn.ip(hAllowed) // allowed.test
	line := c.check(echeck{name: "inspected HTTPS without /etc in the policy",
		args:  []string{"https", addr, strconv.Itoa(portHTTPS), "allowed.test", "h1", "allowed.test", "GET:/trust", "POST:/trust-post"},
		out:   `OK issuer="clawrun egress CA `,
		saw:   []seen{sawHTTPS("GET", "allowed.test", "/trust")},
		never: []seen{sawHTTPS("POST", "allowed.test", "")}})
	wantParts(t, line, "200 GET /trust conn=1", "403 POST /trust-post conn=1")
	c.expect("OK", "read", "/etc/clawrun/ca-bundle.pem")
	c.expect("OK", "read", "/etc/clawrun/ca.pem")
	// The grant is /etc/clawrun, not /etc.
	c.expect("ERR EACCES", "read", "/etc/passwd")
	c.expect("ERR EACCES", "read", "/etc")
	c.expect("ERR EACCES|ERR EROFS", "write", "/etc/clawrun/planted")
}
