package integration

import (
	"bufio"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/clawrun/clawrun/test/fakenet"
)

// TestEgressHTTP: plain HTTP is decided on the Host of every request of a
// connection; a refused request gets a 403 from the proxy and never
// reaches anyone.
func TestEgressHTTP(t *testing.T) {
	r, fn := egressRuntime(t)
	c := fn.startPolicy(r, policyDoc(`  web:
    endpoints:
      - {host: allowed.test, ports: [80, 443]}
      - {host: other.test, port: 80}
`))
	allowedIP := fn.ip(hAllowed)
	ok := "OK 200 host=allowed.test local=" + allowedIP + " path=/"

	c.checks(
		echeck{name: "allowed Host",
			args: []string{"http", "allowed.test", "80", "allowed.test"},
			out:  ok,
			dec:  []want{connWant("http", "allowed.test", 80, "allow", "allowed")},
			saw:  []seen{sawHTTP("allowed.test", allowedIP)}},
		echeck{name: "denied Host aimed at an allowed host's address",
			args:  []string{"http", allowedIP, "80", "denied.test"},
			out:   "OK 403 clawrun: egress to denied.test:80 denied (not_allowed)",
			dec:   []want{connWant("http", "denied.test", 80, "deny", "not_allowed")},
			never: []seen{nothing}},
		echeck{name: "an IP literal as Host",
			args:  []string{"http", allowedIP, "80", allowedIP},
			out:   "OK 403 ",
			dec:   []want{connWant("http", allowedIP, 80, "deny", "ip_literal")},
			never: []seen{nothing}},
		echeck{name: "allowed Host on a port it is not allowed on",
			args:  []string{"http", allowedIP, "8080", "other.test"},
			out:   "OK 403 ",
			dec:   []want{connWant("http", "other.test", 8080, "deny", "port")},
			never: []seen{nothing}},
		echeck{name: "allowed Host aimed at a denied address",
			args:  []string{"http", fn.ip(hDenied), "80", "allowed.test"},
			out:   ok,
			dec:   []want{connWant("http", "allowed.test", 80, "allow", "allowed")},
			saw:   []seen{sawHTTP("allowed.test", allowedIP)},
			never: []seen{{"a connection to the denied address", func(e fakenet.Event) bool { return e.Kind != "dns" && e.LocalIP() == fn.ip(hDenied) }}}},
	)

	// Keep-alive: the second request of the connection names another
	// host. It is refused (403) whether that host is denied or allowed
	// (the connection is already bound to the first host's upstream).
	for _, second := range []string{"denied.test", "other.test"} {
		lm, em := c.logMark(), fn.Mark()
		line := c.probe("http", "allowed.test", "80", "allowed.test", second)
		if want := ok + " proto=HTTP/1.1 | 403 clawrun: egress to " + second + ":80 denied (not_allowed)"; line != want {
			t.Errorf("keep-alive, second Host %s: got %q, want %q", second, line, want)
		}
		c.waitDecision(lm, connWant("http", second, 80, "deny", "not_allowed"))
		// The connection itself was allowed for its first host.
		c.waitDecision(lm, connWant("http", "allowed.test", 80, "allow", "allowed"))
		fn.waitSaw(t, em, "the first request", sawHTTP("allowed.test", allowedIP).match)
		var accepts, requests int
		for _, e := range fn.Since(em) {
			switch {
			case e.Kind == "accept":
				accepts++
			case e.Kind == "http" && e.Name == "allowed.test":
				requests++
			case e.Kind == "http":
				t.Errorf("keep-alive, second Host %s: the upstream received the refused request: %s", second, e)
			}
		}
		if accepts != 1 || requests != 1 {
			t.Errorf("keep-alive, second Host %s: the upstream got %d connections and %d requests, want 1 and 1:%s", second, accepts, requests, fn.Dump(em))
		}
	}
}

// upgradePolicy: allowed.test:80 with request rules that allow public
// reads and the websocket endpoint, nothing else.
const upgradePolicy = `  api:
    endpoints:
      - host: allowed.test
        port: 80
        protocol: rest
        rules:
          - allow: {method: GET, path: /public/**}
          - allow: {method: GET, path: /ws}
`

// TestEgressHTTPUpgrade: an Upgrade header does not switch off the checks
// of the requests after it: only the server's 101 answer to that very
// request makes the connection a tunnel. h2c cannot be checked request by
// request and is refused; a websocket upgrade the rules allow works both
// ways. The client is a raw socket in the container's namespace.
func TestEgressHTTPUpgrade(t *testing.T) {
	r, fn := egressRuntime(t)
	c := fn.startPolicy(r, policyDoc(upgradePolicy))
	ip := fn.ip(hAllowed)
	allowed := "GET allowed.test /public/x"
	const smuggled = "POST /admin/exfil HTTP/1.1\r\nHost: allowed.test\r\nContent-Length: 6\r\n\r\nsecret" +
		"DELETE /admin/users/1 HTTP/1.1\r\nHost: denied.test\r\n\r\n"
	for _, tc := range []struct {
		name, first string
		status      string
		reason      string
	}{
		{"behind an upgrade request", "GET /public/x HTTP/1.1\r\nHost: allowed.test\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n", "[200 403]", "request"},
		{"behind a plain request (control)", "GET /public/x HTTP/1.1\r\nHost: allowed.test\r\n\r\n", "[200 403]", "request"},
		{"behind an h2c upgrade", "GET /public/x HTTP/1.1\r\nHost: allowed.test\r\nConnection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAAQCAAAAAAIAAAAA\r\n\r\n", "[403]", "unenforceable"},
	} {
		lm, em := c.logMark(), fn.Mark()
		if got := c.exchange(ip, 80, tc.first+smuggled); fmt.Sprint(got) != tc.status {
			t.Errorf("%s: responses %v, want %s", tc.name, got, tc.status)
		}
		c.waitDecision(lm, connWant("http", "allowed.test", 80, "deny", tc.reason))
		want := []string{allowed}
		if tc.status == "[403]" {
			want = nil
			time.Sleep(150 * time.Millisecond) // packets in flight
		} else {
			fn.waitSaw(t, em, "the allowed request", sawHTTP("allowed.test", ip).match)
		}
		if seen := fn.httpSeen(em); !slices.Equal(seen, want) {
			t.Errorf("%s: the upstream received %q, want %q", tc.name, seen, want)
		}
	}

	// HTTP/2 with prior knowledge is not HTTP/1: refused.
	lm, em := c.logMark(), fn.Mark()
	if got := c.exchange(ip, 80, "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"); fmt.Sprint(got) != "[403]" {
		t.Errorf("HTTP/2 preface: responses %v, want [403]", got)
	}
	c.waitDecision(lm, connWant("http", "", 80, "deny", "unknown_protocol"))
	time.Sleep(150 * time.Millisecond) // packets in flight
	if ev := fn.Since(em); len(ev) != 0 {
		t.Errorf("HTTP/2 preface: the fake internet received %v", ev)
	}

	// Positive control: a websocket upgrade the rules allow and the server
	// accepts carries data both ways.
	em = fn.Mark()
	conn := c.netnsDial(ip, 80)
	if _, err := io.WriteString(conn, "GET /ws HTTP/1.1\r\nHost: allowed.test\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(conn)
	if resp, err := http.ReadResponse(br, nil); err != nil || resp.StatusCode != http.StatusSwitchingProtocols {
		t.Fatalf("websocket upgrade: %v %v, want 101", resp, err)
	}
	for _, msg := range []string{"ping\n", "GET /admin HTTP/1.1\n"} {
		if _, err := io.WriteString(conn, msg); err != nil {
			t.Fatal(err)
		}
		if line, err := br.ReadString('\n'); line != msg {
			t.Errorf("websocket echo: %q %v, want %q", line, err, msg)
		}
	}
	if seen := fn.httpSeen(em); !slices.Equal(seen, []string{"GET allowed.test /ws"}) {
		t.Errorf("websocket upgrade: the upstream received %q", seen)
	}
}

// TestEgressHTTPReadOnlyWrites: on a read-only endpoint, plain HTTP that
// would write through a read method is refused and never reaches the
// upstream: a GET overridden to DELETE (X-HTTP-Method-Override), and a
// WebSocket upgrade (its messages write). Control: the same GET without
// them goes out. The client is a raw socket in the container's namespace.
func TestEgressHTTPReadOnlyWrites(t *testing.T) {
	r, fn := egressRuntime(t)
	c := fn.startPolicy(r, policyDoc(`  api:
    endpoints:
      - host: allowed.test
        port: 80
        protocol: rest
        access: read-only
`))
	ip := fn.ip(hAllowed)
	for _, tc := range []struct {
		name, head, status, reason string
		seen                       []string
	}{
		{"a plain GET (control)", "Connection: close\r\n", "[200]", "allowed", []string{"GET allowed.test /public/x"}},
		{"a GET overridden to DELETE", "X-HTTP-Method-Override: DELETE\r\nConnection: close\r\n", "[403]", "method_override", nil},
		{"a WebSocket upgrade", "Connection: Upgrade\r\nUpgrade: websocket\r\n", "[403]", "request", nil},
	} {
		lm, em := c.logMark(), fn.Mark()
		req := "GET /public/x HTTP/1.1\r\nHost: allowed.test\r\n" + tc.head + "\r\n"
		if got := c.exchange(ip, 80, req); fmt.Sprint(got) != tc.status {
			t.Errorf("%s: responses %v, want %s", tc.name, got, tc.status)
		}
		decision := "deny"
		if tc.seen != nil {
			decision = "allow"
			fn.waitSaw(t, em, "the allowed request", sawHTTP("allowed.test", ip).match)
		} else {
			time.Sleep(150 * time.Millisecond) // packets in flight
		}
		c.waitDecision(lm, connWant("http", "allowed.test", 80, decision, tc.reason))
		if seen := fn.httpSeen(em); !slices.Equal(seen, tc.seen) {
			t.Errorf("%s: the upstream received %q, want %q", tc.name, seen, tc.seen)
		}
	}
}

// TestEgressHTTPSmuggling: the filter frames every request exactly as it
// forwards it and refuses framing a server could read otherwise, so that
// no request the rules refuse hides in another's body. The upstream is
// the fake internet's lenient server (ServeLaxHTTP), which reads each of
// these bodies as a second request. The client is a raw socket in the
// container's namespace.
func TestEgressHTTPSmuggling(t *testing.T) {
	r, fn := egressRuntime(t)
	c := fn.startPolicy(r, policyDoc(`  api:
    endpoints:
      - host: allowed.test
        port: 8081
        protocol: rest
        rules:
          - allow: {method: GET, path: /public/**}
          - allow: {method: POST, path: /public/**}
`))
	ip := fn.ip(hAllowed)
	const smuggled = "POST /admin/exfil HTTP/1.1\r\nHost: allowed.test\r\nContent-Length: 6\r\n\r\nsecret"
	n := strconv.Itoa(len(smuggled))
	chunked := "0\r\n\r\n" + smuggled
	// Each refusal is logged: the framing as unknown_protocol (without the
	// Host when the header fields could not be read), a refused request
	// of a keep-alive connection as request.
	framing := want{protocol: "http", host: "allowed.test", port: portLax, decision: "deny", reason: "unknown_protocol"}
	fields := framing
	fields.host = ""
	for _, tc := range []struct {
		name, send, status string
		denied             *want
		seen               []string // what the upstream reads
	}{
		// The server ignores the body of a GET (CL.0).
		{name: "GET with Content-Length", send: "GET /public/x HTTP/1.1\r\nHost: allowed.test\r\nContent-Length: " + n + "\r\n\r\n" + smuggled,
			status: "[403]", denied: &framing},
		{name: "GET chunked", send: "GET /public/x HTTP/1.1\r\nHost: allowed.test\r\nTransfer-Encoding: chunked\r\n\r\n" + strconv.FormatInt(int64(len(smuggled)), 16) + "\r\n" + smuggled + "\r\n0\r\n\r\n",
			status: "[403]", denied: &framing},
		// A GET without a length has no body: what follows is a request,
		// checked as such.
		{name: "GET body without a length", send: "GET /public/x HTTP/1.1\r\nHost: allowed.test\r\n\r\n" + smuggled,
			status: "[200 403]", denied: &want{protocol: "http", host: "allowed.test", port: portLax, decision: "deny", reason: "request"},
			seen: []string{"GET allowed.test /public/x"}},
		// The server prefers Transfer-Encoding, joins folded lines, reads
		// '_' as '-', keeps the last Content-Length.
		{name: "Transfer-Encoding and Content-Length", send: "POST /public/x HTTP/1.1\r\nHost: allowed.test\r\nContent-Length: " + strconv.Itoa(len(chunked)) + "\r\nTransfer-Encoding: chunked\r\n\r\n" + chunked,
			status: "[403]", denied: &framing},
		{name: "folded Transfer-Encoding", send: "POST /public/x HTTP/1.1\r\nHost: allowed.test\r\nContent-Length: " + strconv.Itoa(len(chunked)) + "\r\nTransfer-Encoding:\r\n chunked\r\n\r\n" + chunked,
			status: "[403]", denied: &fields},
		{name: "Transfer_Encoding", send: "POST /public/x HTTP/1.1\r\nHost: allowed.test\r\nContent-Length: " + strconv.Itoa(len(chunked)) + "\r\nTransfer_Encoding: chunked\r\n\r\n" + chunked,
			status: "[403]", denied: &fields},
		{name: "two Content-Length", send: "POST /public/x HTTP/1.1\r\nHost: allowed.test\r\nContent-Length: " + n + "\r\nContent-Length: 0\r\n\r\n" + smuggled,
			status: "[403]", denied: &framing},
		// Positive control: bodies where they belong, on one connection.
		{name: "allowed", send: "GET /public/x HTTP/1.1\r\nHost: allowed.test\r\n\r\nPOST /public/y HTTP/1.1\r\nHost: allowed.test\r\nContent-Length: 6\r\n\r\nhello!" +
			"POST /public/z HTTP/1.1\r\nHost: allowed.test\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n2\r\nhi\r\n0\r\n\r\n",
			status: "[200 200 200]", seen: []string{"GET allowed.test /public/x", "POST allowed.test /public/y", "POST allowed.test /public/z"}},
	} {
		lm, em := c.logMark(), fn.Mark()
		if got := c.exchange(ip, portLax, tc.send); fmt.Sprint(got) != tc.status {
			t.Errorf("%s: responses %v, want %s", tc.name, got, tc.status)
		}
		if tc.denied != nil {
			c.waitDecision(lm, *tc.denied)
		}
		for deadline := time.Now().Add(5 * time.Second); len(fn.httpSeen(em)) < len(tc.seen) && time.Now().Before(deadline); {
			time.Sleep(20 * time.Millisecond) // the allowed requests, recorded as they are read
		}
		time.Sleep(150 * time.Millisecond) // packets in flight
		if seen := fn.httpSeen(em); !slices.Equal(seen, tc.seen) {
			t.Errorf("%s: the upstream read %q, want %q", tc.name, seen, tc.seen)
		}
	}
}

// TestEgressHTTPPaths: a deny rule holds against the spellings of its
// path that a lenient server routes to the same place, and targets whose
// reading is ambiguous are refused, on an endpoint with rules. The client
// is the probe in the container; the upstream records the raw target.
func TestEgressHTTPPaths(t *testing.T) {
	r, fn := egressRuntime(t)
	c := fn.startPolicy(r, policyDoc(`  api:
    endpoints:
      - host: allowed.test
        port: 80
        protocol: rest
        access: full
        deny_rules:
          - deny: {method: "*", path: /admin}
`))
	ip := fn.ip(hAllowed)
	for _, tc := range []struct{ path, reason string }{
		{"/admin", "deny_rule"},
		{"/admin/", "deny_rule"},
		{"/admin;x", "deny_rule"},
		{"/ADMIN", "deny_rule"},
		{"/%61dmin", "deny_rule"},
		{"/admin.json", "deny_rule"},
		{"//admin", "request"},
		{"/admin%2f..", "request"},
		{"/public/../admin", "request"},
		{"/public/%2e%2e/admin", "request"},
		{"/public/..;/admin", "request"},
		{"/;x/admin", "request"},
		{"/%c0%afadmin", "request"},
	} {
		c.check(echeck{name: "GET " + tc.path,
			args:  []string{"http", ip, "80", "allowed.test", "-", tc.path},
			out:   "OK 403 clawrun: egress to allowed.test:80 denied (" + tc.reason + ")",
			dec:   []want{connWant("http", "allowed.test", 80, "deny", tc.reason)},
			never: []seen{nothing}})
	}
	// Positive control: the endpoint's other paths.
	for _, p := range []string{"/administrator", "/public/admin", "/public/x;v=1"} {
		c.check(echeck{name: "GET " + p,
			args: []string{"http", ip, "80", "allowed.test", "-", p},
			out:  "OK 200 host=allowed.test local=" + ip + " path=" + p,
			dec:  []want{connWant("http", "allowed.test", 80, "allow", "allowed")},
			saw:  []seen{sawHTTP("allowed.test", ip)}})
	}
}
