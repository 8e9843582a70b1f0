package e2e

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/clawrun/clawrun/test/fakenet"
)

// The egress bypass cases of test/integration (which run in a bare
// `clawrun run` namespace), through the namespaces real front-ends make:
// a Docker user-defined network (its containers resolve through Docker's
// embedded DNS at 127.0.0.11) and a CRI pod (the sandbox runs the filter,
// a container of the pod is probed). In both, the fake internet watches
// what reaches it: its DNS server's queries, the TCP connection attempts
// to its HTTP port and the packets from any address but the host's (the
// filter dials from the host), counted by nftables, and what its UDP echo
// and its second HTTP server receive.

const (
	bypassUDPPort = 9999 // the fake internet's UDP echo
	bypassTCPPort = 8080 // the fake internet's HTTP server on a port no policy allows
	// An address of the fake internet's /24 where nothing listens: a
	// resolver a container may try.
	bypassNoResolver = 99
)

// bypassWatch is what the fake internet sees during a bypass test.
type bypassWatch struct {
	f     *fakeNet
	start int // the fake internet's events before the test
}

// watchFakeNet checks that the fake internet's UDP echo and resolver
// answer the host, and watches it from there.
func watchFakeNet(t *testing.T, f *fakeNet) *bypassWatch {
	t.Helper()
	w := &bypassWatch{f: f, start: f.Mark()}
	// The UDP echo works: a datagram from the host arrives.
	token := fmt.Sprintf("host-check-%d", time.Now().UnixNano())
	c, err := net.Dial("udp4", net.JoinHostPort(f.Addr(), strconv.Itoa(bypassUDPPort)))
	if err != nil {
		t.Fatal(err)
	}
	_, _ = c.Write([]byte(token))
	c.Close()
	if !waitFor(5*time.Second, func() bool { return w.saw(token) }) {
		t.Fatalf("the fake internet's UDP echo did not get a datagram from the host")
	}
	// And the fake internet's resolver answers the host (the filter's
	// upstream): a failure to resolve later is the filter's.
	q := new(dns.Msg)
	q.SetQuestion(dns.Fqdn(allowedHost), dns.TypeA)
	if _, _, err := (&dns.Client{Timeout: 3 * time.Second}).Exchange(q, net.JoinHostPort(f.Addr(), "53")); err != nil {
		t.Fatalf("the fake internet's resolver does not answer the host: %v", err)
	}
	return w
}

// listened is what reached the UDP echo and the HTTP server on
// bypassTCPPort since mark.
func (w *bypassWatch) listened(mark int) []fakenet.Event {
	var out []fakenet.Event
	for _, e := range w.f.Since(mark) {
		if p := e.LocalPort(); (e.Kind == "udp" && p == bypassUDPPort) || p == bypassTCPPort {
			out = append(out, e)
		}
	}
	return out
}

// saw says whether a datagram holding token reached the UDP echo.
func (w *bypassWatch) saw(token string) bool {
	for _, e := range w.listened(w.start) {
		if e.Kind == "udp" && strings.Contains(e.Data, token) {
			return true
		}
	}
	return false
}

// connectedTCP says whether a connection reached the HTTP server on
// bypassTCPPort since the watch began.
func (w *bypassWatch) connectedTCP() bool {
	for _, e := range w.listened(w.start) {
		if e.Kind == "accept" {
			return true
		}
	}
	return false
}

// counts reads the fake internet's counters.
func (w *bypassWatch) counts(t *testing.T) fakenet.Counts {
	t.Helper()
	c, err := w.f.Counts()
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// syns80 is how many TCP connection attempts reached the fake internet's
// HTTP server (port 80).
func (w *bypassWatch) syns80(t *testing.T) int {
	t.Helper()
	n, err := w.f.AttemptsTo("tcp", w.f.Addr(), 80)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// setForwarding turns IPv4 forwarding on (so that, without the filter, a
// container's packets would reach the fake internet) and puts it back at
// the end of t.
func setForwarding(t *testing.T) {
	t.Helper()
	const p = "/proc/sys/net/ipv4/ip_forward"
	before, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.WriteFile(p, before, 0o644) })
	if err := os.WriteFile(p, []byte("1"), 0o644); err != nil {
		t.Fatal(err)
	}
}

// httpGet is a shell command: a plain HTTP request for host to addr:port
// with busybox's nc, bounded by its timeout.
func httpGet(host, addr string, port int) string {
	return fmt.Sprintf(`printf 'GET / HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n\r\n' | nc -w 5 %s %d 2>&1`, host, addr, port)
}

// udpSend is a shell command: one UDP datagram holding token to addr:port
// (busybox's tftp: its nc has no -u), bounded by timeout.
func udpSend(token, addr string, port int) string {
	return fmt.Sprintf(`cd /tmp && timeout 3 tftp -g -r %s -l /tmp/tftp.out %s %d 2>&1; echo "exit $?"`, token, addr, port)
}

func oneLine(s string) string { return strings.Join(strings.Fields(s), " ") }

// checkBypass runs the bypass cases in a container through exec (a shell
// script in it); label names the front-end, resolvers are the addresses a
// query is sent to directly.
func checkBypass(t *testing.T, w *bypassWatch, label string, resolvers []string, exec func(script string) result) {
	t.Helper()
	f := w.f
	fake := f.Addr()
	start := time.Now()
	foreign := w.counts(t).Foreign
	lm := f.Mark()

	r := exec("grep nameserver /etc/resolv.conf")
	t.Logf("%s: resolv.conf: %s", label, oneLine(r.stdout))

	// The allowed name resolves (through the container's resolver) and its
	// HTTP answers.
	r = exec("nslookup " + allowedHost)
	if !strings.Contains(r.stdout, "Address: "+fake) {
		t.Errorf("%s: %s does not resolve to %s: %v", label, allowedHost, fake, r)
	} else {
		t.Logf("%s: nslookup %s: %s", label, allowedHost, oneLine(r.stdout))
	}
	r = exec(httpGet(allowedHost, allowedHost, 80))
	if !strings.Contains(r.stdout, answered+allowedHost+" ") {
		t.Errorf("%s: HTTP to %s did not answer through the filter: %v", label, allowedHost, r)
	}

	// A denied name: NXDOMAIN, never asked upstream.
	denied := "denied-bypass-" + label + ".example"
	r = exec("nslookup " + denied)
	if !strings.Contains(r.stdout+r.stderr, "NXDOMAIN") || strings.Contains(r.stdout, "Address: "+fake) {
		t.Errorf("%s: %s: want NXDOMAIN: %v", label, denied, r)
	}
	if f.queried(denied) {
		t.Errorf("%s: the denied name %s reached the fake internet's resolver", label, denied)
	}

	// Straight to the fake internet's address, a denied Host: clawrun's 403,
	// and no connection reaches the fake internet's HTTP server.
	syn := w.syns80(t)
	deniedHost := "denied-direct-" + label + ".example"
	r = exec(httpGet(deniedHost, fake, 80))
	status := strings.SplitN(r.stdout, "\n", 2)[0]
	if !strings.Contains(status, " 403") || strings.Contains(r.stdout, answered) {
		t.Errorf("%s: HTTP to %s:80 with Host %s: want clawrun's 403: %v", label, fake, deniedHost, r)
	} else {
		t.Logf("%s: direct HTTP to %s:80, Host %s: %s", label, fake, deniedHost, strings.TrimSpace(status))
	}
	if n := w.syns80(t) - syn; n != 0 {
		t.Errorf("%s: %d connections reached the fake internet's port 80 for a denied Host", label, n)
	}
	// The same to a port no endpoint allows, with the allowed Host.
	r = exec(httpGet(allowedHost, fake, bypassTCPPort))
	if strings.Contains(r.stdout, answered) || w.connectedTCP() {
		t.Errorf("%s: HTTP to %s:%d (a port not allowed) got through: %v", label, fake, bypassTCPPort, r)
	} else {
		t.Logf("%s: direct HTTP to %s:%d, Host %s: %q", label, fake, bypassTCPPort, allowedHost, strings.SplitN(r.stdout, "\n", 2)[0])
	}

	// A query sent straight to another resolver address: the policy
	// resolver answers it (allowed answered, denied NXDOMAIN, never asked).
	for i, srv := range resolvers {
		r = exec("nslookup " + allowedHost + " " + srv)
		if !strings.Contains(r.stdout, "Address: "+fake) {
			t.Errorf("%s: nslookup %s %s: want %s: %v", label, allowedHost, srv, fake, r)
		}
		name := fmt.Sprintf("denied-at-%d-%s.example", i, label)
		r = exec("nslookup " + name + " " + srv)
		if !strings.Contains(r.stdout+r.stderr, "NXDOMAIN") || strings.Contains(r.stdout, "Address: "+fake) {
			t.Errorf("%s: nslookup %s %s: want NXDOMAIN: %v", label, name, srv, r)
		} else if f.queried(name) {
			t.Errorf("%s: nslookup %s %s: the denied name reached the fake internet's resolver", label, name, srv)
		} else {
			t.Logf("%s: resolver %s: %s answered, %s NXDOMAIN (never sent upstream)", label, srv, allowedHost, name)
		}
	}

	// UDP to the fake internet: dropped.
	token := fmt.Sprintf("bypass-udp-%s-%d", label, time.Now().UnixNano())
	r = exec(udpSend(token, fake, bypassUDPPort))
	t.Logf("%s: UDP to %s:%d: %s", label, fake, bypassUDPPort, oneLine(r.stdout+r.stderr))
	if waitFor(2*time.Second, func() bool { return w.saw(token) }) {
		t.Errorf("%s: a UDP datagram from the container reached the fake internet", label)
	}

	for _, e := range w.listened(lm) {
		t.Errorf("%s: the fake internet's UDP echo or HTTP server on port %d received: %s", label, bypassTCPPort, e)
	}
	if n := w.counts(t).Foreign - foreign; n != 0 {
		t.Errorf("%s: %d packets from an address other than the host's (the filter's) reached the fake internet", label, n)
	}
	step(t, start, "%s: bypass cases checked", label)
}

// TestEgressBypassDocker: a container on a Docker user-defined network
// (moby v2's dockerd, the clawrun shim, policy and egress by annotation).
// Its resolver is Docker's embedded DNS, 127.0.0.11, which the egress
// filter must take over like any other.
func TestEgressBypassDocker(t *testing.T) {
	client := needMoby(t)
	start := time.Now()
	f := theFakeNet(t)
	w := watchFakeNet(t, f)
	setForwarding(t)
	d := startMoby(t, "docker-bypass", client, f)
	defer d.stop(t, true)
	step(t, start, "dockerd (moby v2) up, busybox imported")

	const network = "cle2e-bypass"
	netID := strings.TrimSpace(must(t, d.docker("network", "create", "--driver", "bridge",
		"--subnet", f.Prefix(netMobyPool), "--gateway", f.IP(netMobyPool, 1), network)))
	defer func() {
		_ = d.docker("network", "rm", network)
		deleteLink("br-" + shortID(netID))
	}()
	step(t, start, "network %s (%s) created", network, f.Prefix(netMobyPool))

	id := strings.TrimSpace(must(t, d.docker("run", "-d", "--name", "bypass", "--network", network,
		"--runtime", "io.containerd.clawrun.v2",
		"--annotation", "run.clawrun.policy=agent-default", "--annotation", "run.clawrun.egress="+allowedHost+":80",
		dockerImage, "sh", "-c", loopScript)))
	defer func() { _ = d.docker("rm", "-f", "bypass") }()
	if root := findRoot(id, d.dir, shimRuncRoot); root == "" {
		t.Errorf("no clawrun state for %s", id)
	} else {
		expectStateConfined(t, stateOf(t, root, id), "agent-default", true)
		logNetns(t, root, id)
	}
	step(t, start, "container on %s running", network)
	// Docker's own rules for its embedded DNS in the container's namespace
	// (a DNAT of 127.0.0.11:53), next to clawrun's: logged.
	if pid := strings.TrimSpace(d.docker("inspect", "-f", "{{.State.Pid}}", id).stdout); pid != "" {
		nft := run("nsenter", "-t", pid, "-n", "nft", "list", "ruleset")
		ipt := run("nsenter", "-t", pid, "-n", "iptables-save")
		t.Logf("container's namespace: nft tables %q; iptables rules for 127.0.0.11: %q",
			regexp.MustCompile(`(?m)^table .*$`).FindAllString(nft.stdout, -1), grepLines(ipt.stdout, "127.0.0.11"))
	}

	checkBypass(t, w, "docker", []string{"127.0.0.11", f.Addr(), f.IP(netFake, bypassNoResolver)},
		func(script string) result { return d.docker("exec", "bypass", "sh", "-c", script) })

	// The control: the same network without a policy (clawrun as runc):
	// the UDP datagram arrives, so the route is there and only the filter
	// stops it.
	token := fmt.Sprintf("bypass-udp-control-%d", time.Now().UnixNano())
	r := d.docker("run", "--rm", "--network", network, "--runtime", "io.containerd.clawrun.v2", dockerImage,
		"sh", "-c", udpSend(token, f.Addr(), bypassUDPPort))
	if !waitFor(5*time.Second, func() bool { return w.saw(token) }) {
		t.Errorf("control: without a policy, the UDP datagram did not reach the fake internet (no route?): %v", r)
	} else {
		t.Logf("control: without a policy the UDP datagram arrives")
	}

	must(t, d.docker("rm", "-f", "bypass"))
	must(t, d.docker("network", "rm", network))
	step(t, start, "done")
}

// TestEgressBypassCRI: a container of a CRI pod whose sandbox runs the
// egress filter (containerd 2.2.9, handler clawrun, the egress annotation
// on the pod).
func TestEgressBypassCRI(t *testing.T) {
	e := need(t, "containerd", "ctr", "containerd-shim-runc-v2", "crictl")
	start := time.Now()
	f := theFakeNet(t)
	w := watchFakeNet(t, f)
	setForwarding(t)
	c := startContribContainerd(t, e, f, "containerd-bypass")
	defer c.stop(t)
	step(t, start, "containerd 2.2.9 up")

	defer c.criReady(t, f, "clawrun-e2e-bypass", "cle2eb")()
	step(t, start, "images imported")

	podID, podFile, removePod := c.runAgentPod(t, f, "bypass")
	defer removePod()
	root := filepath.Join(c.runcRoot, "k8s.io")
	if sb := stateOf(t, root, podID); sb.Clawrun == nil || !strings.HasPrefix(sb.Clawrun.Egress, "filtering") {
		t.Fatalf("the pod sandbox runs no egress filter: %+v", sb.Clawrun)
	}
	ctrFile := criContainerConfig(t, filepath.Dir(podFile), "agent", nil, loopScript)
	agent := strings.TrimSpace(must(t, c.crictl("create", "--no-pull", podID, ctrFile, podFile)))
	must(t, c.crictl("start", agent))
	expectStateConfined(t, stateOf(t, root, agent), "agent-default", true)
	step(t, start, "pod and container running")

	checkBypass(t, w, "cri", []string{f.Addr(), f.IP(netFake, bypassNoResolver), "127.0.0.11", "127.0.0.53"},
		func(script string) result { return c.crictl("exec", "-i", agent, "sh", "-c", script) })

	must(t, c.crictl("stop", "-t", "10", agent))
	must(t, c.crictl("rm", agent))
	must(t, c.crictl("stopp", podID))
	must(t, c.crictl("rmp", podID))
	if ids := listIDs(t, root); len(ids) > 0 {
		t.Errorf("clawrun still lists %v after the pod was removed", ids)
	}

	// The control: a pod of the same network without a policy (clawrun as
	// runc): its UDP datagram arrives, so the route is there and only the
	// filter stopped the agent's.
	plainID, plainFile, removePlain := c.runPod(t, f, "bypass-plain", map[string]string{})
	defer removePlain()
	if sb := stateOf(t, root, plainID); sb.Clawrun != nil {
		t.Errorf("a pod without a policy is confined: %+v", sb.Clawrun)
	}
	token := fmt.Sprintf("bypass-udp-control-cri-%d", time.Now().UnixNano())
	plain := strings.TrimSpace(must(t, c.crictl("create", "--no-pull", plainID,
		criContainerConfig(t, filepath.Dir(plainFile), "plain", nil, loopScript), plainFile)))
	must(t, c.crictl("start", plain))
	r := c.crictl("exec", "-i", plain, "sh", "-c", udpSend(token, f.Addr(), bypassUDPPort))
	if !waitFor(5*time.Second, func() bool { return w.saw(token) }) {
		t.Errorf("control: without a policy, the pod's UDP datagram did not reach the fake internet (no route?): %v", r)
	} else {
		t.Logf("control: without a policy the pod's UDP datagram arrives")
	}
	must(t, c.crictl("stop", "-t", "10", plain))
	must(t, c.crictl("rm", plain))
	must(t, c.crictl("stopp", plainID))
	must(t, c.crictl("rmp", plainID))
	step(t, start, "done")
}

// grepLines are the lines of s that contain sub.
func grepLines(s, sub string) []string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, sub) {
			out = append(out, l)
		}
	}
	return out
}
