package e2e

import (
	"errors"
	"fmt"
	"log"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/clawrun/clawrun/test/netblock"
)

// The fake internet: a network namespace linked to the host by a veth, in
// which this test binary, re-executed, serves DNS (every name resolves to
// the namespace's own address; each query is logged) and HTTP ("hello
// from HOST"). clawrun's egress filter dials from the host's namespace, so
// it is the filter's upstream; the containers never reach it directly.
//
// All test networks are /24s of one block of 198.19.0.0/16 (benchmarking
// range) that the host does not use: the integration tests and the demo
// use 198.18.0.0/16, the egress benchmark 198.19.100+.
const (
	fakeNetEnv = "CLAWRUN_E2E_FAKENET"
	blockSize  = 8 // /24s in a block
)

// Offsets of the /24s in the block.
const (
	netFake    = iota // host .1, fake internet .2
	netDocker         // Debian dockerd's bridge (--bip)
	netMoby           // moby v2's bridge
	netNerdctl        // nerdctl's CNI bridge
	netCRI            // the CRI plugin's CNI bridge
	netCtr            // the netns ctr joins
	netDockerPool
	netMobyPool
)

// allowedHost is what every egress policy of the tests allows (port 80).
const allowedHost = "allowed.example"

type fakeNet struct {
	base     int // 198.19.base.0/24 is the block's first /24
	ns       string
	hostIf   string
	queryLog string
	// config is clawrun's --config (egress upstream, log dir, policy dir);
	// wrapper is a directory whose "clawrun" runs clawrun with it.
	config  string
	wrapper string
	logDir  string
	polDir  string
	server  *daemon
}

func (f *fakeNet) prefix(off int) string { return fmt.Sprintf("198.19.%d.0/24", f.base+off) }
func (f *fakeNet) addr(off, host int) string {
	return fmt.Sprintf("198.19.%d.%d", f.base+off, host)
}

// dnsAddr is the fake internet's resolver (and every name's address).
func (f *fakeNet) dnsAddr() string { return f.addr(netFake, 2) }

var (
	fakeOnce sync.Once
	fakeInst *fakeNet
	fakeErr  error
)

// theFakeNet starts the fake internet once per run.
func theFakeNet(t *testing.T) *fakeNet {
	t.Helper()
	fakeOnce.Do(func() {
		fakeInst, fakeErr = startFakeNet(t)
		if fakeInst != nil {
			atExit(fakeInst.stop)
		}
	})
	if fakeErr != nil {
		t.Fatalf("fake internet: %v", fakeErr)
	}
	return fakeInst
}

func startFakeNet(t *testing.T) (*fakeNet, error) {
	// A block of 198.19.0.0-198.19.99.255 that no address or route of the
	// host overlaps, held until the fake internet's link has its address.
	unlock, err := netblock.Lock()
	if err != nil {
		return nil, err
	}
	defer unlock()
	base, err := netblock.Pick("198.19", 0, 10, blockSize, 100)
	if err != nil {
		return nil, err
	}
	id := os.Getpid() % 100000
	dir := filepath.Join(theEnv.work, "fakenet")
	f := &fakeNet{
		base:     base,
		ns:       fmt.Sprintf("cle2e-net-%d", id),
		hostIf:   fmt.Sprintf("cle2e%dh", id),
		queryLog: filepath.Join(dir, "queries.log"),
		config:   filepath.Join(dir, "config.yaml"),
		wrapper:  filepath.Join(dir, "bin"),
		logDir:   filepath.Join(dir, "egress-log"),
		polDir:   filepath.Join(dir, "policies"),
	}
	for _, d := range []string{dir, f.wrapper, f.logDir, f.polDir} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return nil, err
		}
	}
	nsIf := fmt.Sprintf("cle2e%dn", id)
	for _, args := range [][]string{
		{"netns", "add", f.ns},
		{"link", "add", f.hostIf, "type", "veth", "peer", "name", nsIf},
		{"link", "set", nsIf, "netns", f.ns},
		{"addr", "add", f.addr(netFake, 1) + "/24", "dev", f.hostIf},
		{"link", "set", f.hostIf, "up"},
		{"-n", f.ns, "addr", "add", f.addr(netFake, 2) + "/24", "dev", nsIf},
		{"-n", f.ns, "link", "set", nsIf, "up"},
		{"-n", f.ns, "link", "set", "lo", "up"},
	} {
		if r := run("ip", args...); r.code != 0 {
			f.stop()
			return nil, errors.New(r.String())
		}
	}
	self, err := os.Executable()
	if err != nil {
		f.stop()
		return nil, err
	}
	envv := []string{fakeNetEnv + "=1", "FAKENET_ADDR=" + f.dnsAddr(), "FAKENET_QUERY_LOG=" + f.queryLog, pathEnv()}
	f.server = startDaemon(t, "fake internet", filepath.Join(dir, "server.log"), envv, "/usr/sbin/ip", "netns", "exec", f.ns, self)
	ok := waitFor(10*time.Second, func() bool {
		c, err := net.DialTimeout("tcp", f.dnsAddr()+":80", 200*time.Millisecond)
		if err == nil {
			c.Close()
			return true
		}
		return false
	})
	if !ok {
		tail := f.server.logTail(20)
		f.stop()
		return nil, fmt.Errorf("its servers did not start:\n%s", tail)
	}

	config := fmt.Sprintf(`# clawrun's config for the end-to-end tests
policy_dir: %s
egress:
  upstream_dns: ["%s:53"]
  allowed_upstream_ranges: ["%s"]
  log_dir: %s
`, f.polDir, f.dnsAddr(), f.prefix(netFake), f.logDir)
	wrapper := fmt.Sprintf("#!/bin/sh\n# clawrun with the tests' config (the fake internet as upstream)\nexec %s --config %s \"$@\"\n", theEnv.clawrun, f.config)
	// A policy of its own for a container of a pod: only /sandbox is
	// writable (agent-default also lets it write /tmp).
	sandboxOnly := `version: 1
filesystem_policy:
  read_only: [/bin, /sbin, /lib, /usr, /etc, /proc, /sys, /dev/urandom]
  read_write: [/sandbox, /dev/null]
landlock:
  compatibility: best_effort
`
	// A floor for front-ends without annotations (Docker 20.10): files as
	// agent-default, and HTTP to allowed.example only.
	egressFloor := `version: 1
filesystem_policy:
  read_only: [/bin, /sbin, /lib, /usr, /etc, /proc, /sys, /dev/urandom]
  read_write: [/sandbox, /tmp, /dev/null]
landlock:
  compatibility: best_effort
network_policies:
  web:
    endpoints:
      - host: ` + allowedHost + `
        port: 80
`
	for name, content := range map[string]string{
		f.config:                            config,
		filepath.Join(f.wrapper, "clawrun"): wrapper,
		filepath.Join(f.polDir, "sandbox-only.yaml"): sandboxOnly,
		filepath.Join(dir, "egress-floor.yaml"):      egressFloor,
		// A malformed policy: clawrun must say what is wrong with it.
		filepath.Join(dir, "bad-floor.yaml"): "version: 1\nfilesystem:\n  read_only: [/]\n",
	} {
		if err := os.WriteFile(name, []byte(content), 0o755); err != nil {
			f.stop()
			return nil, err
		}
	}
	t.Logf("fake internet: %s in netns %s (block 198.19.%d.0-198.19.%d.255)", f.dnsAddr(), f.ns, base, base+blockSize-1)
	return f, nil
}

func (f *fakeNet) egressFloor() string {
	return filepath.Join(filepath.Dir(f.config), "egress-floor.yaml")
}
func (f *fakeNet) badFloor() string { return filepath.Join(filepath.Dir(f.config), "bad-floor.yaml") }

// wrapperBin is the clawrun wrapper with the tests' --config.
func (f *fakeNet) wrapperBin() string { return filepath.Join(f.wrapper, "clawrun") }

func (f *fakeNet) stop() {
	if f.server != nil {
		_ = f.server.stop(5 * time.Second)
	}
	_ = run("ip", "netns", "del", f.ns)
	deleteLink(f.hostIf)
}

// queried says whether the fake internet's DNS server was asked for name.
func (f *fakeNet) queried(name string) bool {
	data, _ := os.ReadFile(f.queryLog)
	for _, line := range strings.Split(string(data), "\n") {
		if q, _, _ := strings.Cut(line, " "); strings.EqualFold(q, name) {
			return true
		}
	}
	return false
}

// serveFakeNet is the re-executed test binary inside the namespace. It
// stops by itself after 30 minutes at most.
func serveFakeNet() {
	ip := net.ParseIP(os.Getenv("FAKENET_ADDR")).To4()
	if ip == nil {
		log.Fatal("FAKENET_ADDR: not an IPv4 address")
	}
	qlog, err := os.OpenFile(os.Getenv("FAKENET_QUERY_LOG"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		log.Fatal(err)
	}
	var mu sync.Mutex
	dns.HandleFunc(".", func(w dns.ResponseWriter, req *dns.Msg) {
		m := new(dns.Msg)
		m.SetReply(req)
		m.Authoritative = true
		for _, q := range req.Question {
			mu.Lock()
			fmt.Fprintf(qlog, "%s %s\n", strings.TrimSuffix(q.Name, "."), dns.TypeToString[q.Qtype])
			mu.Unlock()
			if q.Qtype == dns.TypeA {
				m.Answer = append(m.Answer, &dns.A{Hdr: dns.RR_Header{Name: q.Name, Rrtype: dns.TypeA, Class: dns.ClassINET, Ttl: 30}, A: ip})
			}
		}
		_ = w.WriteMsg(m)
	})
	for _, proto := range []string{"udp", "tcp"} {
		srv := &dns.Server{Addr: ip.String() + ":53", Net: proto}
		go func() { log.Fatal(srv.ListenAndServe()) }()
	}
	go func() {
		time.Sleep(30 * time.Minute)
		log.Fatal("fake internet: 30 minutes are up")
	}()
	mux := http.NewServeMux()
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "hello from %s\n", r.Host)
	})
	srv := &http.Server{Addr: ip.String() + ":80", Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	log.Fatal(srv.ListenAndServe())
}
