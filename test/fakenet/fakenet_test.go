package fakenet

// These tests make real namespaces: they run as root (make integration).

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"
)

func startNet(t *testing.T, o Options) *Net {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Fatal("the fake internet's tests run as root (network namespaces)")
	}
	n, err := Start(o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := n.Close(); err != nil {
			t.Errorf("close: %v", err)
		}
	})
	return n
}

func query(t *testing.T, server, name string, qtype uint16) *dns.Msg {
	t.Helper()
	m := new(dns.Msg)
	m.SetQuestion(dns.Fqdn(name), qtype)
	r, _, err := (&dns.Client{Timeout: 3 * time.Second}).Exchange(m, server)
	if err != nil {
		t.Fatalf("query %s: %v", name, err)
	}
	return r
}

// TestServers: each server answers the host as documented and records
// what it received.
func TestServers(t *testing.T) {
	n := startNet(t, Options{Blocks: 2, IPv6: true, Hosts: []Host{{0, 3}, {1, 10}}, Routed: []int{1}})
	zone := Names(map[string]string{"a.test": n.IP(0, 3)})
	for _, err := range []error{n.ServeDNS(53, zone), n.ServeHTTP(80), n.ServeTLS(443, TLSOptions{}), n.ServeTLS(8443, TLSOptions{HTTP: true}),
		n.ServeTLS(8444, TLSOptions{HTTP: true, Unsigned: true}), n.ServeBanner(2222, "BANNER"), n.ServeUDPEcho(7)} {
		if err != nil {
			t.Fatal(err)
		}
	}
	dnsAddr := net.JoinHostPort(n.Addr(), "53")

	m := n.Mark()
	if r := query(t, dnsAddr, "a.test", dns.TypeA); len(r.Answer) != 1 || r.Answer[0].(*dns.A).A.String() != n.IP(0, 3) {
		t.Errorf("a.test A: %v", r)
	}
	if r := query(t, dnsAddr, "b.test", dns.TypeA); r.Rcode != dns.RcodeNameError || len(r.Ns) != 1 {
		t.Errorf("b.test: want NXDOMAIN with an SOA: %v", r)
	}
	if _, ok := n.Wait(m, time.Second, Query("b.test")); !ok {
		t.Errorf("the query for b.test was not recorded:%s", n.Dump(m))
	}

	resp, err := (&http.Client{Timeout: 5 * time.Second}).Get("http://" + n.IP(1, 10) + "/x?y")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if want := "host=" + n.IP(1, 10) + " local=" + n.IP(1, 10) + " path=/x?y proto=HTTP/1.1\n"; string(body) != want {
		t.Errorf("HTTP on a routed block: %q, want %q", body, want)
	}

	pool := x509.NewCertPool()
	pool.AddCert(n.CA())
	tc, err := tls.Dial("tcp", net.JoinHostPort(n.IP(0, 3), "443"), &tls.Config{ServerName: "s.test", RootCAs: pool})
	if err != nil {
		t.Fatal(err)
	}
	line, _ := bufio.NewReader(tc).ReadString('\n')
	tc.Close()
	if want := "hello sni=s.test local=" + n.IP(0, 3) + "\n"; line != want {
		t.Errorf("TLS greeting: %q, want %q", line, want)
	}
	hc := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{ForceAttemptHTTP2: true,
		TLSClientConfig: &tls.Config{ServerName: "h.test", RootCAs: pool}}}
	req, _ := http.NewRequest("GET", "https://"+net.JoinHostPort(n.Addr(), "8443")+"/", nil)
	req.Header.Set("Authorization", "Bearer x")
	resp, err = hc.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ = io.ReadAll(resp.Body)
	resp.Body.Close()
	if want := "host=" + n.Addr() + ":8443 local=" + n.Addr() + " path=/ proto=HTTP/2.0\n"; string(body) != want {
		t.Errorf("h2 over TLS: %q, want %q", body, want)
	}
	if _, ok := n.Wait(m, time.Second, func(e Event) bool { return e.Kind == "https" && e.Auth == "Bearer x" }); !ok {
		t.Errorf("the request over TLS and its Authorization were not recorded:%s", n.Dump(m))
	}
	if _, err := hc.Get("https://" + net.JoinHostPort(n.Addr(), "8444") + "/"); err == nil || !strings.Contains(err.Error(), "unknown authority") {
		t.Errorf("the unsigned server's certificate: %v, want one of an unknown authority", err)
	}
	// The server learns of the failed handshake from the client's alert,
	// after the client has given up: wait for it before counting.
	if _, ok := n.Wait(m, 5*time.Second, func(e Event) bool { return e.Kind == "tls-fail" }); !ok {
		t.Errorf("the failed handshake with the unsigned server was not recorded:%s", n.Dump(m))
	}

	c, err := net.Dial("udp", net.JoinHostPort(n.IP6(0, 2), "7"))
	if err != nil {
		t.Fatal(err)
	}
	_, _ = c.Write([]byte("ping6"))
	_ = c.SetDeadline(time.Now().Add(3 * time.Second))
	buf := make([]byte, 16)
	k, err := c.Read(buf)
	c.Close()
	if err != nil || string(buf[:k]) != "ping6" {
		t.Errorf("UDP echo over IPv6: %q %v", buf[:k], err)
	}

	if err := n.Flush(); err != nil {
		t.Fatal(err)
	}
	kinds := map[string]int{}
	for _, e := range n.Since(m) {
		kinds[e.Kind]++
	}
	for kind, want := range map[string]int{"dns": 2, "accept": 4, "http": 1, "https": 1, "tls": 2, "tls-fail": 1, "udp": 1} {
		if kinds[kind] != want {
			t.Errorf("%d %s events, want %d:%s", kinds[kind], kind, want, n.Dump(m))
		}
	}
}

// TestCounters: the counters count what reaches the namespace, whether a
// server takes it or not, and not the markers of Flush.
func TestCounters(t *testing.T) {
	n := startNet(t, Options{Blocks: 2})
	if err := n.ServeUDPEcho(7); err != nil {
		t.Fatal(err)
	}
	before, err := n.Counts()
	if err != nil {
		t.Fatal(err)
	}
	// Nothing listens on 81: refused, but counted.
	if c, err := net.DialTimeout("tcp", net.JoinHostPort(n.Addr(), "81"), 2*time.Second); err == nil {
		c.Close()
		t.Fatal("something listens on port 81")
	}
	if c, err := net.Dial("udp", net.JoinHostPort(n.Addr(), "7")); err == nil {
		_, _ = c.Write([]byte("x"))
		c.Close()
	}
	if err := n.Flush(); err != nil {
		t.Fatal(err)
	}
	after, err := n.Counts()
	if err != nil {
		t.Fatal(err)
	}
	if after.SYNs-before.SYNs != 1 || after.Datagrams-before.Datagrams != 1 || after.Foreign != before.Foreign {
		t.Errorf("counts %+v then %+v: want one more SYN and one more datagram, nothing foreign", before, after)
	}
	if k, err := n.AttemptsTo("tcp", n.Addr(), 81); err != nil || k != 1 {
		t.Errorf("attempts to port 81: %d %v, want 1", k, err)
	}

	cl, err := n.AddClient(ClientOptions{Name: "c", Block: 1})
	if err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command("ip", "netns", "exec", cl.NS, "bash", "-c",
		"echo hi > /dev/udp/"+n.Addr()+"/7").CombinedOutput()
	if err != nil {
		t.Fatalf("a datagram from the client: %v: %s", err, out)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		k, err := cl.PacketsTo("udp", n.Addr(), 7)
		if err != nil {
			t.Fatal(err)
		}
		if k == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the client's datagram was counted %d times, want 1", k)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if p, err := cl.Packets(); err != nil || p == 0 {
		t.Errorf("client packets: %d %v", p, err)
	}
}

// TestClose: a closed net leaves no namespace, link or route behind.
func TestClose(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Fatal("the fake internet's tests run as root (network namespaces)")
	}
	n, err := Start(Options{Blocks: 3, Routed: []int{1}})
	if err != nil {
		t.Fatal(err)
	}
	cl, err := n.AddClient(ClientOptions{Name: "h", Block: 2, ViaHost: true})
	if err != nil {
		t.Fatal(err)
	}
	routes, _ := exec.Command("ip", "-4", "route", "show", "table", "all").Output()
	for _, p := range []string{n.Prefix(0), n.Prefix(1), n.Prefix(2)} {
		if !strings.Contains(string(routes), p) {
			t.Errorf("the host has no route for %s:\n%s", p, routes)
		}
	}
	if err := n.Close(); err != nil {
		t.Fatal(err)
	}
	for _, ns := range []string{n.NS, cl.NS} {
		if _, err := os.Stat("/run/netns/" + ns); err == nil {
			t.Errorf("namespace %s left", ns)
		}
	}
	for _, ifname := range []string{n.HostIf, cl.PeerIf} {
		if _, err := net.InterfaceByName(ifname); err == nil {
			t.Errorf("link %s left", ifname)
		}
	}
	routes, _ = exec.Command("ip", "-4", "route", "show", "table", "all").Output()
	for _, p := range []string{n.Prefix(0), n.Prefix(1), n.Prefix(2)} {
		if strings.Contains(string(routes), p+" ") || strings.Contains(string(routes), strings.TrimSuffix(p, "/24")+" ") {
			t.Errorf("a route for %s is left:\n%s", p, routes)
		}
	}
}

// TestUncounted: an Uncounted net has no nftables rules at all, for its
// clients neither.
func TestUncounted(t *testing.T) {
	n := startNet(t, Options{Blocks: 2, Uncounted: true})
	cl, err := n.AddClient(ClientOptions{Name: "c", Block: 1})
	if err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command("ip", "netns", "exec", n.NS, "nft", "list", "tables").CombinedOutput()
	if err != nil || strings.TrimSpace(string(out)) != "" {
		t.Errorf("tables of an uncounted net: %q %v", out, err)
	}
	if _, err := cl.Packets(); err == nil {
		t.Error("an uncounted net's client has counters")
	}
}

// TestTLSBusyboxClient: busybox's ssl_client (the client of the e2e
// images: TLS 1.2 only, no signature_algorithms extension) completes a
// handshake with the HTTPS server, sends a request and reads the answer;
// the server records the request.
func TestTLSBusyboxClient(t *testing.T) {
	busybox, err := exec.LookPath("busybox")
	if err != nil {
		t.Fatalf("busybox (busybox-static) is needed: %v", err)
	}
	n := startNet(t, Options{Blocks: 1})
	if err := n.ServeTLS(443, TLSOptions{HTTP: true}); err != nil {
		t.Fatal(err)
	}
	m := n.Mark()
	// ssl_client speaks TLS over fds 5 and 6 (the connection nc opened),
	// HTTP on its stdin and stdout; the server closes after its answer.
	script := `exec 4>&1; "$0" nc -w 5 "$1" 443 -e "$0" sh -c "exec 5<&0 6>&1 1>&4; printf 'GET /bb HTTP/1.0\r\nHost: busybox.test\r\n\r\n' | '$0' ssl_client -r 5 -s 6 -n busybox.test"`
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, busybox, "sh", "-c", script, busybox, n.Addr()).CombinedOutput()
	if want := "host=busybox.test local=" + n.Addr() + " path=/bb proto=HTTP/1.0\n"; err != nil || !strings.HasSuffix(string(out), want) {
		t.Errorf("busybox ssl_client: %q (%v), want an answer ending %q:%s", out, err, want, n.Dump(m))
	}
	if _, ok := n.Wait(m, time.Second, func(e Event) bool { return e.Kind == "https" && e.Name == "busybox.test" && e.Path == "/bb" }); !ok {
		t.Errorf("the request over TLS was not recorded:%s", n.Dump(m))
	}
}
