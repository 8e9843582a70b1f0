package integration

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/clawrun/clawrun/test/fakenet"
)

// metadataIP is the cloud metadata address (link-local).
const metadataIP = "169.254.169.254"

// TestEgressBlockedUpstreams: a name the policy allows that resolves to
// loopback, to the metadata address or to a range outside
// allowed_upstream_ranges is never dialled. Each of those addresses has a
// listener that records every connection, and each listener is shown
// reachable from where the filter dials (the host): a TLS server on the
// host's 127.0.0.1, the fake internet's servers on 169.254.169.254 (routed
// there from the host for the test) and on 198.18.N+1.10. The container,
// allowed those names, gets no connection to any of them; with the
// private range in allowed_upstream_ranges it reaches that one, while
// loopback and metadata stay refused even when the config lists them.
func TestEgressBlockedUpstreams(t *testing.T) {
	r, fn := egressRuntime(t)
	loop := fn.loopbackListener(t)
	fn.routeMetadata(t)
	inside := fn.ip2(hSecond)
	loopPort := strconv.Itoa(loop.Port)

	// The controls: each listener takes a connection from the host.
	for _, c := range []struct{ addr, sni string }{
		{loop.String(), "loop.test"},
		{net.JoinHostPort(metadataIP, "443"), "meta.test"},
		{net.JoinHostPort(inside, "443"), "inside2.test"},
	} {
		em := fn.Mark()
		if err := fn.hostTLS(c.addr, c.sni); err != nil {
			t.Fatalf("control: TLS from the host to %s: %v", c.addr, err)
		}
		fn.waitSaw(t, em, "the host's handshake on "+c.addr, sawTLS(c.sni, fakenet.HostOf(c.addr)).match)
	}
	em := fn.Mark()
	if body, err := hostHTTP(metadataIP, "meta.test"); err != nil || !strings.Contains(body, "host=meta.test local="+metadataIP) {
		t.Fatalf("control: HTTP from the host to %s: %q %v", metadataIP, body, err)
	}
	fn.waitSaw(t, em, "the host's request to the metadata address", sawHTTP("meta.test", metadataIP).match)

	doc := policyDoc(fmt.Sprintf(`  web:
    endpoints:
      - {host: loop.test, port: %s}
      - {host: meta.test, ports: [443, 80]}
      - {host: inside2.test, port: 443}
`, loopPort))
	allowedIP := fn.ip(hAllowed)
	cut := "ERR EOF|ERR ECONNRESET"
	toLoopback := seen{"a connection to " + loop.String(), func(e fakenet.Event) bool { return e.Local == loop.String() }}
	toMetadata := seen{"a connection to " + metadataIP, func(e fakenet.Event) bool { return e.LocalIP() == metadataIP }}
	toInside := seen{"a connection to " + inside, func(e fakenet.Event) bool { return e.LocalIP() == inside && e.Kind != "dns" }}
	alwaysBlocked := []echeck{
		{name: "allowed name resolving to loopback",
			args:  []string{"tls", allowedIP, loopPort, "loop.test"},
			out:   cut,
			dec:   []want{connWant("tls", "loop.test", loop.Port, "deny", "private_ip")},
			never: []seen{noConnection, toLoopback}},
		{name: "allowed name resolving to the metadata address, TLS",
			args:  []string{"tls", allowedIP, "443", "meta.test"},
			out:   cut,
			dec:   []want{connWant("tls", "meta.test", 443, "deny", "private_ip")},
			never: []seen{noConnection, toMetadata}},
		{name: "allowed name resolving to the metadata address, HTTP",
			args:  []string{"http", allowedIP, "80", "meta.test"},
			out:   "OK 403 clawrun: egress to meta.test:80 denied (private_ip)",
			dec:   []want{connWant("http", "meta.test", 80, "deny", "private_ip")},
			never: []seen{noConnection, toMetadata}},
	}

	// Under the tests' config: none of the three is dialled.
	c := fn.startPolicy(r, doc)
	c.checks(alwaysBlocked...)
	c.check(echeck{name: "allowed name resolving outside allowed_upstream_ranges",
		args:  []string{"tls", allowedIP, "443", "inside2.test"},
		out:   cut,
		dec:   []want{connWant("tls", "inside2.test", 443, "deny", "private_ip")},
		never: []seen{noConnection, toInside}})

	// With all three in allowed_upstream_ranges: the private range is
	// reached, loopback and metadata are not.
	wide := fn.configFile(t, "", fn.range2(), "127.0.0.0/8", metadataIP+"/32")
	b := fn.egressBundle(r, withInline(doc))
	opened := fn.startAs(r, newID(t), b, "--config", wide)
	opened.checks(alwaysBlocked...)
	opened.check(echeck{name: "the same name, its range in allowed_upstream_ranges",
		args: []string{"tls", allowedIP, "443", "inside2.test"},
		out:  "OK cn=inside2.test verify=ok hello sni=inside2.test local=" + inside,
		dec:  []want{connWant("tls", "inside2.test", 443, "allow", "allowed")},
		saw:  []seen{sawTLS("inside2.test", inside)}})

	if q := acceptQueue(t, loop.String()); q != 0 {
		t.Errorf("%d connections wait in the loopback listener's queue", q)
	}
}

// loopbackListener is a TLS server of the fake internet's kind on the
// host's 127.0.0.1 (a port of its own), recording what it receives; it
// closes at the end of t.
func (fn *fakeNet) loopbackListener(t *testing.T) *net.TCPAddr {
	t.Helper()
	l, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	fn.ServeTLSOn(l, fakenet.TLSOptions{})
	return l.Addr().(*net.TCPAddr)
}

// routeMetadata gives the fake internet the metadata address and routes it
// there from the host, for the test: the host's route to it (a cloud's
// metadata service) is shadowed until the end of t. One test run at a time
// may do so (a lock).
func (fn *fakeNet) routeMetadata(t *testing.T) {
	t.Helper()
	lock, err := os.OpenFile(filepath.Join("/run/lock", "clawrun-test-metadata-route.lock"), os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	if err := unix.Flock(int(lock.Fd()), unix.LOCK_EX); err != nil {
		lock.Close()
		t.Fatal(err)
	}
	t.Cleanup(func() { lock.Close() }) // last: releases the lock
	remove, err := fn.AddLocal(metadataIP)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := remove(); err != nil {
			t.Errorf("removing %s from the fake internet: %v", metadataIP, err)
		}
	})
}

// hostTLS completes a TLS handshake from the host with addr, for sni.
func (fn *fakeNet) hostTLS(addr, sni string) error {
	pool := x509.NewCertPool()
	pool.AddCert(fn.CA())
	d := &net.Dialer{Timeout: 5 * time.Second}
	c, err := tls.DialWithDialer(d, "tcp", addr, &tls.Config{ServerName: sni, RootCAs: pool})
	if err != nil {
		return err
	}
	return c.Close()
}

// hostHTTP is a GET from the host to ip:80 for host; it returns the body.
func hostHTTP(ip, host string) (string, error) {
	req, err := http.NewRequest("GET", "http://"+ip+"/", nil)
	if err != nil {
		return "", err
	}
	req.Host = host
	resp, err := (&http.Client{Timeout: 5 * time.Second}).Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	return string(body), err
}

// acceptQueue is how many connections wait to be accepted by the host's
// TCP listener on addr (ip:port).
func acceptQueue(t *testing.T, addr string) int {
	t.Helper()
	a, err := net.ResolveTCPAddr("tcp4", addr)
	if err != nil {
		t.Fatal(err)
	}
	want := fmt.Sprintf("%02X%02X%02X%02X:%04X", a.IP.To4()[3], a.IP.To4()[2], a.IP.To4()[1], a.IP.To4()[0], a.Port)
	data, err := os.ReadFile("/proc/self/net/tcp")
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(data), "\n")[1:] {
		f := strings.Fields(line)
		if len(f) > 4 && f[1] == want && f[3] == "0A" {
			_, rx, _ := strings.Cut(f[4], ":")
			n, _ := strconv.ParseInt(rx, 16, 64)
			return int(n)
		}
	}
	t.Fatalf("no listener on %s", addr)
	return 0
}
