package e2e

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

const (
	dockerImage = "clawrun-e2e/busybox:1"
	// A container that runs until it is stopped, and stops at once.
	loopScript = "trap 'exit 0' TERM; while :; do sleep 1; done"
)

// dockerd is a private Docker daemon and the client that drives it.
type dockerd struct {
	dir    string
	client string
	env    []string
	d      *daemon
}

// renderDaemonJSON turns a daemon.json of contrib/docker into the test
// daemon's: the runtimes' clawrun path becomes the binary under test and
// runtimeArgs get prefix first; settings and extra runtimes are added.
func renderDaemonJSON(t *testing.T, contrib string, prefix []string, settings map[string]any, extra map[string]any) string {
	t.Helper()
	var cfg map[string]any
	if err := json.Unmarshal([]byte(readRepoFile(t, contrib)), &cfg); err != nil {
		t.Fatalf("%s: %v", contrib, err)
	}
	runtimes, _ := cfg["runtimes"].(map[string]any)
	if len(runtimes) == 0 {
		t.Fatalf("%s: no runtimes", contrib)
	}
	for name, v := range runtimes {
		rt := v.(map[string]any)
		if p, ok := rt["path"]; ok {
			if p != "/usr/local/bin/clawrun" {
				t.Fatalf("%s: runtime %s: path %v, want /usr/local/bin/clawrun", contrib, name, p)
			}
			rt["path"] = theEnv.clawrun
			args, _ := rt["runtimeArgs"].([]any)
			var all []any
			for _, a := range prefix {
				all = append(all, a)
			}
			rt["runtimeArgs"] = append(all, args...)
		}
	}
	for k, v := range extra {
		runtimes[k] = v
	}
	for k, v := range settings {
		cfg[k] = v
	}
	data, err := json.MarshalIndent(cfg, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	return string(data)
}

// startDockerd starts a private dockerd with the daemon.json given and
// waits for its API.
func startDockerd(t *testing.T, name, bin, client, config string, path string) *dockerd {
	t.Helper()
	dir := privateDir(t, name)
	cfgFile := filepath.Join(dir, "daemon.json")
	writeFile(t, cfgFile, config, 0o644)
	sock := filepath.Join(dir, "docker.sock")
	envv := []string{path, "HOME=" + dir, "DOCKER_HOST=unix://" + sock, "DOCKER_CONFIG=" + filepath.Join(dir, "client")}
	d := &dockerd{dir: dir, client: client, env: envv}
	d.d = startDaemon(t, name, filepath.Join(dir, "dockerd.log"), envv, bin, "--config-file", cfgFile)
	waitSocket(t, d.d, sock, 60*time.Second)
	if !waitFor(30*time.Second, func() bool { return d.docker("version").code == 0 }) {
		t.Fatalf("%s does not answer:\n%v\n%s", name, d.docker("version"), d.d.logTail(30))
	}
	return d
}

func (d *dockerd) docker(args ...string) result {
	return runIn(cmdOpts{env: d.env, timeout: 2 * time.Minute}, d.client, args...)
}

// settings every private dockerd gets: its own dirs and socket, cgroupfs,
// a bridge and address pools in the test block, no iptables or sysctl
// changes on the host, the fake internet as DNS.
func dockerSettings(dir string, f *fakeNet, bridgeNet, poolNet int) map[string]any {
	return map[string]any{
		"data-root":             filepath.Join(dir, "data"),
		"exec-root":             filepath.Join(dir, "exec"),
		"pidfile":               filepath.Join(dir, "docker.pid"),
		"hosts":                 []string{"unix://" + filepath.Join(dir, "docker.sock")},
		"exec-opts":             []string{"native.cgroupdriver=cgroupfs"},
		"bip":                   f.IP(bridgeNet, 1) + "/24",
		"default-address-pools": []map[string]any{{"base": f.Prefix(poolNet), "size": 24}},
		"iptables":              false,
		"ip6tables":             false,
		"ip-forward":            false,
		"ip-masq":               false,
		"userland-proxy":        false,
		"dns":                   []string{f.Addr()},
		"log-level":             "warn",
	}
}

// stopDockerd stops the daemon (and the containerd it started), then
// checks that nothing it started still runs and removes its bridge.
func (d *dockerd) stop(t *testing.T, createdBridge bool) {
	t.Helper()
	if err := d.d.stop(45 * time.Second); err != nil {
		t.Error(err)
	}
	// Its containerd exits after it; shims after their containers.
	waitFor(15*time.Second, func() bool { return len(leftovers(d.dir)) == 0 })
	killLeftovers(t, d.dir)
	unmountUnder(d.dir)
	if createdBridge {
		deleteLink("docker0")
	}
}

// findRoot finds the clawrun --root under which container id lives: a
// directory holding id/state.json, below one of bases.
func findRoot(id string, bases ...string) string {
	for _, base := range bases {
		var found string
		_ = filepath.WalkDir(base, func(p string, e os.DirEntry, err error) error {
			if err != nil || found != "" {
				return filepath.SkipDir
			}
			if e.IsDir() && strings.Count(strings.TrimPrefix(p, base), "/") > 5 {
				return filepath.SkipDir
			}
			if e.IsDir() && e.Name() == id && exists(filepath.Join(p, "state.json")) {
				found = filepath.Dir(p)
				return filepath.SkipAll
			}
			return nil
		})
		if found != "" {
			return found
		}
	}
	return ""
}

// TestDockerDebian: Debian's dockerd 20.10 (API 1.41, no --annotation)
// with contrib/docker/daemon.json: runtimes by path, a floor policy
// through runtimeArgs, the default bridge network.
func TestDockerDebian(t *testing.T) {
	e := need(t, "/usr/sbin/dockerd", "/usr/bin/docker", "/usr/bin/containerd", "/usr/bin/containerd-shim-runc-v2")
	noOtherDockerd(t)
	start := time.Now()
	f := theFakeNet(t)
	w := watchFakeNet(t, f)
	setForwarding(t) // so that a leak from the default bridge would get through
	dir := filepath.Join(e.work, "docker-debian")
	cfg := renderDaemonJSON(t, "contrib/docker/daemon.json", []string{"--config", f.config},
		dockerSettings(dir, f, netDocker, netDockerPool),
		map[string]any{
			// Egress for a front-end without annotations: a floor policy
			// with network_policies.
			"clawrun-egress": map[string]any{"path": e.clawrun, "runtimeArgs": []string{"--config", f.config, "--policy", f.egressFloor()}},
			"clawrun-bad":    map[string]any{"path": e.clawrun, "runtimeArgs": []string{"--policy", f.badFloor()}},
		})
	// Debian's containerd 1.6 and its runc shim: never the 2.x ones.
	d := startDockerd(t, "docker-debian", "/usr/sbin/dockerd", "/usr/bin/docker", cfg, pathEnv(e.binDir))
	defer d.stop(t, true)
	step(t, start, "dockerd 20.10 up")
	must(t, d.docker("import", "--change", `CMD ["sh"]`, e.image("busybox-rootfs.tar"), dockerImage))
	step(t, start, "busybox imported")

	// Runs to completion, exit status kept; no policy: as runc.
	r := d.docker("run", "--rm", "--runtime=clawrun", dockerImage, "sh", "-c", probeScript+"; exit 7")
	if r.code != 7 {
		t.Errorf("want exit status 7: %v", r)
	}
	expectUnconfined(t, "docker run --runtime=clawrun", r.stdout)

	// The floor policy of contrib's clawrun-agent runtime.
	r = d.docker("run", "--rm", "--runtime=clawrun-agent", dockerImage, "sh", "-c", probeScript)
	expectConfined(t, "docker run --runtime=clawrun-agent", r.stdout+r.stderr)
	step(t, start, "run --rm done")

	// Detached, egress through the floor, exec'd into, stopped, removed.
	id := strings.TrimSpace(must(t, d.docker("run", "-d", "--name", "agent", "--runtime=clawrun-egress", dockerImage, "sh", "-c", loopScript)))
	root := findRoot(id, d.dir)
	if root == "" {
		t.Fatalf("no clawrun state for %s under %s", id, d.dir)
	}
	expectStateConfined(t, stateOf(t, root, id), "egress-floor", true)
	logNetns(t, root, id)
	r = d.docker("exec", "agent", "sh", "-c", probeScript)
	expectConfined(t, "docker exec (clawrun-egress)", r.stdout+r.stderr)
	r = d.docker("exec", "agent", "sh", "-c", egressScript("denied-docker.example", f.Addr()))
	expectEgress(t, f, "docker exec (clawrun-egress)", "denied-docker.example", r.stdout+r.stderr)
	step(t, start, "detached container checked")
	// Every bypass case on the default bridge, whose namespace Docker 20.10
	// wires from a prestart hook.
	checkBypass(t, w, "docker2010", []string{f.Addr(), f.IP(netFake, bypassNoResolver), "127.0.0.11"},
		func(script string) result { return d.docker("exec", "agent", "sh", "-c", script) })
	// The control: without a policy, the same bridge's UDP gets out.
	token := fmt.Sprintf("bypass-udp-control-2010-%d", time.Now().UnixNano())
	r = d.docker("run", "--rm", "--runtime=clawrun", dockerImage, "sh", "-c", udpSend(token, f.Addr(), bypassUDPPort))
	if !waitFor(5*time.Second, func() bool { return w.saw(token) }) {
		t.Errorf("control: without a policy, the UDP datagram did not reach the fake internet (no route?): %v", r)
	}
	must(t, d.docker("stop", "-t", "10", "agent"))
	must(t, d.docker("rm", "agent"))
	if ids := listIDs(t, root); len(ids) > 0 {
		t.Errorf("clawrun still lists %v after docker rm", ids)
	}
	step(t, start, "stopped and removed")

	// A bad policy: clawrun's message in docker's error.
	r = d.docker("run", "--rm", "--runtime=clawrun-bad", dockerImage, "true")
	if r.code == 0 || !strings.Contains(r.stderr, "OCI runtime create failed") || !strings.Contains(r.stderr, `unknown key "filesystem"`) {
		t.Errorf("a bad floor policy: want docker's OCI runtime create failed with clawrun's message: %v", r)
	} else {
		t.Logf("bad policy reported: %s", strings.TrimSpace(r.stderr))
	}
	step(t, start, "done")
}

// noOtherDockerd fails t if another dockerd runs on this host: its
// docker0 would be the tests' dockerd's.
func noOtherDockerd(t *testing.T) {
	t.Helper()
	if linkExists("docker0") {
		t.Fatal("docker0 exists: another dockerd runs on this host; stop it (the tests start their own)")
	}
}

// needMoby is need for a test of moby v2's dockerd, and noOtherDockerd;
// it returns the docker CLI that drives it: setup.sh's pinned one, never
// the host's.
func needMoby(t *testing.T) string {
	t.Helper()
	need(t, "dockerd", "containerd", "containerd-shim-runc-v2", "docker")
	noOtherDockerd(t)
	return toolPath("docker")
}

// TestDockerMoby: a current dockerd (moby v2) with
// contrib/docker/daemon-shim.json: the clawrun shim by name (registered
// and not), annotations, and a runtime by path.
func TestDockerMoby(t *testing.T) {
	client := needMoby(t)
	start := time.Now()
	f := theFakeNet(t)
	d := startMoby(t, "docker-moby", client, f)
	defer d.stop(t, true)
	step(t, start, "dockerd (moby v2) up, busybox imported")

	// The shim by name, unregistered: exit status kept, no policy.
	r := d.docker("run", "--rm", "--runtime", "io.containerd.clawrun.v2", dockerImage, "sh", "-c", probeScript+"; exit 7")
	if r.code != 7 {
		t.Errorf("want exit status 7: %v", r)
	}
	expectUnconfined(t, "docker run --runtime io.containerd.clawrun.v2", r.stdout)

	// The shim by name with a policy and an egress allow list.
	denied := "denied-moby.example"
	r = d.docker("run", "--rm", "--runtime", "io.containerd.clawrun.v2",
		"--annotation", "run.clawrun.policy=agent-default", "--annotation", "run.clawrun.egress="+allowedHost+":80",
		dockerImage, "sh", "-c", probeScript+"\n"+egressScript(denied, f.Addr()))
	expectConfined(t, "docker run --runtime io.containerd.clawrun.v2 --annotation", r.stdout+r.stderr)
	expectEgress(t, f, "docker run --runtime io.containerd.clawrun.v2 --annotation", denied, r.stdout+r.stderr)

	// The registered shim runtime of daemon-shim.json.
	r = d.docker("run", "--rm", "--runtime", "clawrun", "--annotation", "run.clawrun.policy=agent-default", dockerImage, "sh", "-c", probeScript)
	expectConfined(t, "docker run --runtime clawrun (runtimeType) --annotation", r.stdout+r.stderr)
	step(t, start, "run --rm done")

	// The runtime by path (the floor agent-coding), detached, without an
	// annotation: the floor alone confines it; exec, stop, rm.
	id := strings.TrimSpace(must(t, d.docker("run", "-d", "--name", "agent", "--runtime", "clawrun-agent", dockerImage, "sh", "-c", loopScript)))
	root := findRoot(id, d.dir, "/run/containerd/runc")
	if root == "" {
		t.Fatalf("no clawrun state for %s", id)
	}
	checkFloorAgent(t, f, "docker", root, id, d.docker)
	step(t, start, "detached container under the floor checked, stopped, removed")

	// An annotation naming a host the floor does not list widens nothing.
	const widen = "widen-moby.example"
	r = d.docker("run", "--rm", "--runtime", "clawrun-agent", "--annotation", "run.clawrun.egress="+widen,
		dockerImage, "sh", "-c", tlsGetFunc+"\necho \"widen: $(tls "+widen+")\"")
	if strings.Contains(r.stdout, "widen: "+answered) || f.queried(widen) {
		t.Errorf("run.clawrun.egress=%s under the floor agent-coding reached the fake internet: %v", widen, r)
	} else {
		t.Logf("run.clawrun.egress=%s under the floor: never left: %q", widen, strings.Split(strings.TrimSpace(r.stdout), "\n"))
	}

	// A typo in an annotation: refused, with clawrun's message.
	r = d.docker("run", "--rm", "--runtime", "io.containerd.clawrun.v2", "--annotation", "run.clawrun.polcy=agent-default", dockerImage, "true")
	if r.code == 0 || !strings.Contains(r.stderr, `"run.clawrun.polcy": unknown`) {
		t.Errorf("an unknown run.clawrun.* annotation: want clawrun's refusal: %v", r)
	} else {
		t.Logf("unknown annotation reported: %s", strings.TrimSpace(r.stderr))
	}
	step(t, start, "done")
}

// logNetns logs how a container's network namespace is given in its spec
// (a path it joins, or a new one): where the egress filter attaches.
func logNetns(t *testing.T, root, id string) {
	t.Helper()
	st := stateOf(t, root, id)
	data, err := os.ReadFile(filepath.Join(bundleOf(t, root, id), "config.json"))
	if err != nil {
		return
	}
	var spec struct {
		Hooks map[string][]struct {
			Path string `json:"path"`
		} `json:"hooks"`
		Linux struct {
			Namespaces []struct {
				Type string `json:"type"`
				Path string `json:"path"`
			} `json:"namespaces"`
		} `json:"linux"`
	}
	if json.Unmarshal(data, &spec) != nil {
		return
	}
	ns := "none (the host's)"
	for _, n := range spec.Linux.Namespaces {
		if n.Type == "network" {
			ns = "new"
			if n.Path != "" {
				ns = "joined by path " + n.Path
			}
		}
	}
	var hooks []string
	for kind, hs := range spec.Hooks {
		for _, h := range hs {
			hooks = append(hooks, fmt.Sprintf("%s:%s", kind, filepath.Base(h.Path)))
		}
	}
	egress := "off (no policy)"
	if st.Clawrun != nil {
		egress = st.Clawrun.Egress
	}
	t.Logf("container %s: network namespace %s; hooks %v; egress %s", shortID(id), ns, hooks, egress)
}

// bundleOf is a container's bundle directory, from clawrun's state.
func bundleOf(t *testing.T, root, id string) string {
	t.Helper()
	out := must(t, run(theEnv.clawrun, "--root", root, "state", id))
	var st struct {
		Bundle string `json:"bundle"`
	}
	_ = json.Unmarshal([]byte(out), &st)
	return st.Bundle
}

// startMoby starts the moby v2 dockerd configured with
// contrib/docker/daemon-shim.json and the tests' clawrun config, and
// imports the busybox image.
func startMoby(t *testing.T, name, client string, f *fakeNet) *dockerd {
	t.Helper()
	e := &theEnv
	cfg := renderDaemonJSON(t, "contrib/docker/daemon-shim.json", []string{"--config", f.config},
		dockerSettings(filepath.Join(e.work, name), f, netMoby, netMobyPool), nil)
	// Its containerd is 2.2.9's (from $E2E_TOOLS); the clawrun shim runs
	// "clawrun" from PATH: the wrapper with the tests' config.
	d := startDockerd(t, name, toolPath("dockerd"), client, cfg,
		pathEnv(f.wrapper, e.binDir, filepath.Join(e.tools, "bin")))
	if r := d.docker("import", "--change", `CMD ["sh"]`, e.image("busybox-rootfs.tar"), dockerImage); r.code != 0 {
		d.stop(t, true)
		t.Fatalf("importing busybox: %v", r)
	}
	return d
}

// learnDockerPolicy is what an operator runs an agent under through Docker
// to learn its network policy: agent-default's files, and plain HTTP to
// any name under learn.example audited (no rule allows a request: audit
// lets each through and logs it).
const learnDockerPolicy = `version: 1
filesystem_policy:
  read_only: [/bin, /sbin, /lib, /usr, /etc, /proc, /sys, /dev/urandom]
  read_write: [/sandbox, /tmp, /dev/null]
landlock:
  compatibility: best_effort
network_policies:
  learn:
    endpoints:
      - {host: "*.learn.example", port: 80, protocol: rest, enforcement: audit}
`

// TestDockerPolicySuggest: the audit -> suggest -> enforce loop through
// Docker (moby v2, the clawrun shim): a container learning under
// learnDockerPolicy reaches a few names; `clawrun policy suggest` of its
// full container ID writes a policy that policy check accepts; the same
// agent run under it (run.clawrun.policy.inline) reaches every name again,
// and a name it never used is denied and never reaches the fake internet.
func TestDockerPolicySuggest(t *testing.T) {
	client := needMoby(t)
	start := time.Now()
	f := theFakeNet(t)
	d := startMoby(t, "docker-suggest", client, f)
	defer d.stop(t, true)
	step(t, start, "dockerd (moby v2) up, busybox imported")

	hosts := []string{"one.learn.example", "two.learn.example", "three.learn.example"}
	const never = "never.learn.example"
	agent := httpGetFunc
	for _, h := range hosts {
		agent += fmt.Sprintf("\necho \"%s: $(get %s)\"", h, h)
	}
	// runAgent runs the agent in a new detached container under policy and
	// checks that every host answered it; it returns the container's ID.
	runAgent := func(name, policy string) string {
		t.Helper()
		id := strings.TrimSpace(must(t, d.docker("run", "-d", "--name", name, "--runtime", "clawrun",
			"--annotation", "run.clawrun.policy.inline="+policy, dockerImage, "sh", "-c", loopScript)))
		mark := f.Mark()
		out := must(t, d.docker("exec", name, "sh", "-c", agent))
		for _, h := range hosts {
			if !strings.Contains(out, h+": "+answered+h+" ") {
				t.Errorf("%s: %s did not answer through the egress filter:\n%s", name, h, out)
			}
			if !sawHTTPHost(f, mark, h) {
				t.Errorf("%s: no request for %s reached the fake internet", name, h)
			}
		}
		return id
	}

	learning := runAgent("learning", learnDockerPolicy)
	step(t, start, "learning run done")
	root := findRoot(learning, d.dir, "/run/containerd/runc")
	if root == "" {
		t.Fatalf("no clawrun state for %s", learning)
	}
	learned := filepath.Join(d.dir, "learned.yaml")
	must(t, run(f.wrapperBin(), "--root", root, "policy", "suggest", "-o", learned, learning))
	must(t, run(f.wrapperBin(), "policy", "check", learned))
	suggested := readFile(t, learned)
	for _, want := range append(hostLines(hosts), "enforcement: enforce") {
		if !strings.Contains(suggested, want) {
			t.Errorf("the suggestion lacks %q:\n%s", want, suggested)
		}
	}
	for _, unwanted := range []string{"*.learn.example", "enforcement: audit", never} {
		if strings.Contains(suggested, unwanted) {
			t.Errorf("the suggestion has %q, which the run never needed:\n%s", unwanted, suggested)
		}
	}
	step(t, start, "policy suggested and checked:\n%s", suggested)

	runAgent("enforced", suggested) // positive control: everything the run did
	mark := f.Mark()
	r := d.docker("exec", "enforced", "sh", "-c", httpGetFunc+"\necho \"never: $(get "+never+")\"")
	if strings.Contains(r.stdout, answered) {
		t.Errorf("a name the learning run never used answered under the suggested policy:\n%v", r)
	}
	if f.queried(never) || sawHTTPHost(f, mark, never) {
		t.Errorf("a name the learning run never used reached the fake internet (%v)", f.Since(mark))
	}
	step(t, start, "enforced run checked")
	must(t, d.docker("rm", "-f", "learning", "enforced"))
	if ids := listIDs(t, root); len(ids) > 0 {
		t.Errorf("clawrun still lists %v after docker rm", ids)
	}
}

// sawHTTPHost says whether an HTTP request for host reached the fake
// internet since mark.
func sawHTTPHost(f *fakeNet, mark int, host string) bool {
	for _, e := range f.Since(mark) {
		if e.Kind == "http" && e.Name == host {
			return true
		}
	}
	return false
}

// hostLines are the "host: NAME" lines a policy lists names with.
func hostLines(hosts []string) []string {
	var out []string
	for _, h := range hosts {
		out = append(out, "host: "+h)
	}
	return out
}

// readFile reads a file or fails the test.
func readFile(t *testing.T, path string) string {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(data)
}
