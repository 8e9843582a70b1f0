package proxy

import (
	"bufio"
	"fmt"
	"io"
	"testing"

	"github.com/clawrun/clawrun/egress/decisionlog"
	"github.com/clawrun/clawrun/runtime/policy"
)

// TestProxyLogsEveryHTTPRequest: every request of a plain-HTTP connection
// is in the decision log with its method and path, allowed or audited,
// the first on the connection's own line and each later one on a line
// of its own, as the requests of an inspected connection are: what an
// audit endpoint waived is evidence, and what a policy is learned from.
func TestProxyLogsEveryHTTPRequest(t *testing.T) {
	h := newProxyHarness(t, "web.test")
	up := startRecordingServer(t)
	h.upstream(up.ln.Addr().String())
	h.setRules(1, policy.Endpoint{Host: "web.test", Protocol: "rest", Enforcement: "audit",
		Rules: []policy.Rule{{Method: "GET", Path: "/public/**"}}})
	h.serve()

	c := h.dial()
	send := "GET /public/a?q=1 HTTP/1.1\r\nHost: web.test\r\n\r\n" +
		"POST /private/b HTTP/1.1\r\nHost: web.test\r\nContent-Length: 2\r\n\r\nhi" +
		"GET /public/c HTTP/1.1\r\nHost: web.test\r\nConnection: close\r\n\r\n"
	if _, err := io.WriteString(c, send); err != nil {
		t.Fatal(err)
	}
	if got := statuses(t, bufio.NewReader(c)); fmt.Sprint(got) != "[200 200 200]" {
		t.Fatalf("responses %v, want [200 200 200] (audit allows)", got)
	}
	for _, want := range []struct{ decision, method, path string }{
		{"allow", "GET", "/public/a"},
		{"audit", "POST", "/private/b"},
		{"allow", "GET", "/public/c"},
	} {
		h.waitRecord(want.method+" "+want.path, func(r decisionlog.Record) bool {
			return r.Protocol == "http" && r.Host == "web.test" && r.Decision == want.decision &&
				r.Method == want.method && r.Path == want.path
		})
	}
}
