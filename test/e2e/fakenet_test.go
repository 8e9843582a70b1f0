package e2e

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/clawrun/clawrun/test/fakenet"
)

// The fake internet (test/fakenet): a network namespace linked to the host
// by a veth, whose DNS server resolves every name to the namespace's own
// address and whose HTTP server answers "host=HOST ...", both recording
// what they receive. clawrun's egress filter dials from the host's
// namespace, so it is the filter's upstream; the containers never reach it
// directly.
//
// The front-ends' networks are /24s of the fake internet's block of
// 198.18.0.0/15, reserved on the host with it.
const blockSize = 9 // /24s in the block

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
	netKubeServices // the Kubernetes cluster's Services (nothing routes them)
)

// allowedHost is what every egress policy of the tests allows (port 80).
const allowedHost = "allowed.example"

// answered is how the fake internet's HTTP server's answer begins.
const answered = "host="

type fakeNet struct {
	*fakenet.Net
	// config is clawrun's --config (egress upstream, log dir, policy dir);
	// wrapper is a directory whose "clawrun" runs clawrun with it.
	config  string
	wrapper string
	logDir  string
	polDir  string
}

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
			atExit(func() { _ = fakeInst.Close() })
		}
	})
	if fakeErr != nil {
		t.Fatalf("fake internet: %v", fakeErr)
	}
	return fakeInst
}

func startFakeNet(t *testing.T) (_ *fakeNet, err error) {
	n, err := fakenet.Start(fakenet.Options{Blocks: blockSize})
	if err != nil {
		return nil, err
	}
	dir := filepath.Join(theEnv.work, "fakenet")
	f := &fakeNet{
		Net:     n,
		config:  filepath.Join(dir, "config.yaml"),
		wrapper: filepath.Join(dir, "bin"),
		logDir:  filepath.Join(dir, "egress-log"),
		polDir:  filepath.Join(dir, "policies"),
	}
	defer func() {
		if err != nil {
			_ = n.Close()
		}
	}()
	for _, d := range []string{dir, f.wrapper, f.logDir, f.polDir} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return nil, err
		}
	}
	for _, serve := range []func() error{
		func() error { return n.ServeDNS(53, fakenet.AnyName(n.Addr())) },
		func() error { return n.ServeHTTP(80) },
		// HTTPS hosts of the presets (api.github.com...): HTTP inside
		// TLS, answered "host=HOST ..." as on port 80.
		func() error { return n.ServeTLS(443, fakenet.TLSOptions{HTTP: true}) },
		func() error { return n.ServeHTTP(bypassTCPPort) },
		func() error { return n.ServeUDPEcho(bypassUDPPort) },
		func() error { return n.ServeTLS(inspectPort, fakenet.TLSOptions{HTTP: true}) },
	} {
		if err := serve(); err != nil {
			return nil, err
		}
	}

	// Inspected upstreams (the fake internet's HTTPS server) are verified
	// against the fake internet's CA.
	upstreamCA := filepath.Join(dir, "upstream-ca.pem")
	config := fmt.Sprintf(`# clawrun's config for the end-to-end tests
policy_dir: %s
egress:
  upstream_dns: ["%s:53"]
  allowed_upstream_ranges: ["%s"]
  log_dir: %s
  upstream_ca_file: %s
`, f.polDir, f.Addr(), f.Prefix(netFake), f.logDir, upstreamCA)
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
	// contrib's clawrun-agent (clawrun with a floor), running the wrapper.
	agent := strings.Replace(readRepoFile(t, "contrib/containerd/clawrun-agent"), "exec /usr/local/bin/clawrun ", "exec "+f.wrapperBin()+" ", 1)
	if !strings.Contains(agent, f.wrapperBin()) {
		return nil, fmt.Errorf("contrib/containerd/clawrun-agent does not exec /usr/local/bin/clawrun")
	}
	for name, content := range map[string]string{
		f.config:   config,
		upstreamCA: string(n.CAPEM()),
		filepath.Join(f.polDir, inspectPolicy+".yaml"): inspectDoc,
		filepath.Join(f.wrapper, "clawrun"):            wrapper,
		filepath.Join(f.wrapper, "clawrun-agent"):      agent,
		filepath.Join(f.polDir, "sandbox-only.yaml"):   sandboxOnly,
		filepath.Join(dir, "egress-floor.yaml"):        egressFloor,
		// A malformed policy: clawrun must say what is wrong with it.
		filepath.Join(dir, "bad-floor.yaml"): "version: 1\nfilesystem:\n  read_only: [/]\n",
	} {
		if err := os.WriteFile(name, []byte(content), 0o755); err != nil {
			return nil, err
		}
	}
	t.Logf("fake internet: %s in netns %s (block %s and the %d /24s after it)", f.Addr(), f.NS, f.Prefix(0), blockSize-1)
	return f, nil
}

func (f *fakeNet) egressFloor() string {
	return filepath.Join(filepath.Dir(f.config), "egress-floor.yaml")
}
func (f *fakeNet) badFloor() string { return filepath.Join(filepath.Dir(f.config), "bad-floor.yaml") }

// wrapperBin is the clawrun wrapper with the tests' --config.
func (f *fakeNet) wrapperBin() string { return filepath.Join(f.wrapper, "clawrun") }

// queried says whether the fake internet's DNS server was asked for name.
func (f *fakeNet) queried(name string) bool {
	for _, e := range f.Since(0) {
		if fakenet.Query(name)(e) {
			return true
		}
	}
	return false
}

// ctrNetns is the network namespace ctr's containers join, in netCtr and
// routed by the host, until the end of t.
func (f *fakeNet) ctrNetns(t *testing.T) *fakenet.Client {
	t.Helper()
	c, err := f.AddClient(fakenet.ClientOptions{Name: "ctr", Block: netCtr, ViaHost: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := c.Close(); err != nil {
			t.Errorf("removing %s: %v", c.NS, err)
		}
	})
	return c
}
