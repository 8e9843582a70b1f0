package e2e

import (
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"
)

const (
	busyboxRef = "docker.io/clawrun-e2e/busybox:1"
	pauseRef   = "docker.io/clawrun-e2e/pause:1"
	// containerd's runc shim keeps runc (here clawrun) state under
	// /run/containerd/runc/<namespace> unless the runtime's options say.
	shimRuncRoot = "/run/containerd/runc"
	// clawrunShimRoot is the root contrib's and the installer's clawrun
	// handlers give containerd's runc shim (state in
	// /run/containerd/clawrun/<namespace>): apart from the node's runc.
	clawrunShimRoot = "/run/containerd/clawrun"
)

// ctrd is a private containerd.
type ctrd struct {
	dir    string
	sock   string
	config string
	env    []string // PATH (the clients run the same binaries)
	d      *daemon
	ctrBin string // the ctr of the same containerd
	// runcRoot is where the CRI handler's clawrun keeps state (per
	// namespace below it).
	runcRoot string
}

// containerdBaseV3 is the private part of a containerd 2.x config: its
// own root, state, sockets; no NRI, no imports; CRI with the test's CNI
// network, the local pause image, and restrict_oom_score_adj (root here
// lacks CAP_SYS_RESOURCE, so -998 for the pause container would fail).
func containerdBaseV3(dir string) string {
	return fmt.Sprintf(`version = 3
root = '%[1]s/root'
state = '%[1]s/state'
imports = []

[grpc]
  address = '%[1]s/containerd.sock'

[ttrpc]
  address = '%[1]s/containerd.sock.ttrpc'

[debug]
  level = 'warn'

[plugins.'io.containerd.internal.v1.opt']
  path = '%[1]s/opt'

[plugins.'io.containerd.nri.v1.nri']
  disable = true

[plugins.'io.containerd.cri.v1.images']
  snapshotter = 'overlayfs'

[plugins.'io.containerd.cri.v1.images'.pinned_images]
  sandbox = '%[2]s'

[plugins.'io.containerd.cri.v1.runtime']
  restrict_oom_score_adj = true
  netns_mounts_under_state_dir = true

[plugins.'io.containerd.cri.v1.runtime'.cni]
  bin_dirs = ['/usr/lib/cni']
  conf_dir = '%[1]s/cni'

[plugins.'io.containerd.grpc.v1.cri']
  stream_server_address = '127.0.0.1'
  stream_server_port = '0'
`, dir, pauseRef)
}

// containerdBaseV2 is the same for containerd 1.6 and 1.7 (config
// version 2, CRI settings under io.containerd.grpc.v1.cri).
func containerdBaseV2(dir string) string {
	return fmt.Sprintf(`version = 2
root = "%[1]s/root"
state = "%[1]s/state"
imports = []

[grpc]
  address = "%[1]s/containerd.sock"

[ttrpc]
  address = "%[1]s/containerd.sock.ttrpc"

[debug]
  level = "warn"

[plugins."io.containerd.internal.v1.opt"]
  path = "%[1]s/opt"

[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "%[2]s"
  restrict_oom_score_adj = true
  netns_mounts_under_state_dir = true
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"

[plugins."io.containerd.grpc.v1.cri".cni]
  bin_dir = "/usr/lib/cni"
  conf_dir = "%[1]s/cni"

[plugins."io.containerd.grpc.v1.cri".containerd]
  snapshotter = "overlayfs"
`, dir, pauseRef)
}

var (
	versionLine = regexp.MustCompile(`(?m)^version\s*=\s*\d+\s*$`)
	rootLine    = regexp.MustCompile(`(?m)^\s*Root\s*=.*\n`)
	binaryLine  = regexp.MustCompile(`(?m)^(\s*)BinaryName\s*=\s*['"]/usr/local/bin/(clawrun[a-z-]*)['"]\s*$`)
)

// renderRuntimeBlock makes a contrib runtime block the test's: without
// its version line (the base has one), each BinaryName /usr/local/bin/X
// the X beside binary (the clawrun under test: the fake internet's
// wrappers), and the handlers' state under the private dir (contrib's
// Root replaced).
func renderRuntimeBlock(t *testing.T, block, binary, runcRoot string, quote string) string {
	t.Helper()
	if !strings.Contains(block, "/usr/local/bin/clawrun"+quote) || !binaryLine.MatchString(block) {
		t.Fatalf("no BinaryName = '/usr/local/bin/clawrun' in:\n%s", block)
	}
	block = versionLine.ReplaceAllString(block, "")
	block = rootLine.ReplaceAllString(block, "")
	return binaryLine.ReplaceAllString(block, "${1}BinaryName = "+quote+filepath.Dir(binary)+"/${2}"+quote+"\n${1}Root = "+quote+runcRoot+quote)
}

// cniConflist is a bridge network in the test block, with its IPAM state
// under the private dir and no iptables rules (no masquerade, no
// firewall plugin): containers reach nothing but the host, where the
// egress filter runs.
func cniConflist(name, bridge, subnet, ipamDir, version, extra string) string {
	return fmt.Sprintf(`{
  "cniVersion": %q,
  "name": %q,%s
  "plugins": [
    {
      "type": "bridge",
      "bridge": %q,
      "isGateway": true,
      "ipMasq": false,
      "ipam": {
        "type": "host-local",
        "ranges": [[{"subnet": %q}]],
        "routes": [{"dst": "0.0.0.0/0"}],
        "dataDir": %q
      }
    }
  ]
}
`, version, name, extra, bridge, subnet, ipamDir)
}

// startContainerd starts containerd (bin) with a config and waits for it.
// startContribContainerd starts a containerd named name with
// contrib/containerd/config-v3.toml's runtimes. The clawrun shim runs
// "clawrun" from containerd's PATH: the wrapper with the tests' config,
// which runs the clawrun under test.
func startContribContainerd(t *testing.T, e *env, f *fakeNet, name string) *ctrd {
	t.Helper()
	dir := filepath.Join(e.work, name)
	runcRoot := filepath.Join(dir, "runc")
	block := renderRuntimeBlock(t, readRepoFile(t, "contrib/containerd/config-v3.toml"), f.wrapperBin(), runcRoot, "'")
	config := containerdBaseV3(dir) + "\n# contrib/containerd/config-v3.toml, rendered\n" + block
	path := pathEnv(f.wrapper, e.binDir, filepath.Join(e.tools, "bin"))
	c := startContainerd(t, name, toolPath("containerd"), config, path)
	c.runcRoot = runcRoot
	return c
}

func startContainerd(t *testing.T, name, bin, config, path string) *ctrd {
	t.Helper()
	dir := privateDir(t, name)
	c := &ctrd{dir: dir, sock: filepath.Join(dir, "containerd.sock"), config: filepath.Join(dir, "config.toml"), env: []string{path, "HOME=" + dir},
		ctrBin: filepath.Join(filepath.Dir(bin), "ctr")}
	writeFile(t, c.config, config, 0o644)
	c.d = startDaemon(t, name, filepath.Join(dir, "containerd.log"), c.env, bin, "--config", c.config)
	waitSocket(t, c.d, c.sock, 60*time.Second)
	return c
}

func (c *ctrd) ctr(args ...string) result {
	return runIn(cmdOpts{env: c.env, timeout: 2 * time.Minute}, c.ctrBin, append([]string{"--address", c.sock}, args...)...)
}

// stop stops containerd, then checks that no shim or filter of its
// containers still runs.
func (c *ctrd) stop(t *testing.T) {
	t.Helper()
	if err := c.d.stop(30 * time.Second); err != nil {
		t.Error(err)
	}
	waitFor(10*time.Second, func() bool { return len(leftovers(c.dir)) == 0 })
	killLeftovers(t, c.dir)
	// The egress filters of ctr's and nerdctl's containers (state under
	// the shim's default root).
	killLeftovers(t, filepath.Join(shimRuncRoot, "clawrun-e2e-"))
	unmountUnder(c.dir)
}

// TestContainerd drives containerd 2.2.9 through ctr, nerdctl and its
// CRI plugin (crictl), one private containerd for the three, configured
// with contrib/containerd/config-v3.toml.
func TestContainerd(t *testing.T) {
	e := need(t, "containerd", "ctr", "containerd-shim-runc-v2")
	start := time.Now()
	f := theFakeNet(t)
	c := startContribContainerd(t, e, f, "containerd")
	defer c.stop(t)
	step(t, start, "containerd 2.2.9 up")

	t.Run("ctr", func(t *testing.T) { testCtr(t, c, f) })
	t.Run("shim-killed", func(t *testing.T) { testShimKilled(t, c, f) })
	t.Run("nerdctl", func(t *testing.T) { testNerdctl(t, c, f) })
	t.Run("cri", func(t *testing.T) { testCRI(t, c, f) })
	step(t, start, "done")
}

// TestContainerdDebianCRI: the CRI path again on Debian's containerd 1.6
// and its runc shim, configured with contrib/containerd/config-v2.toml
// (containerd 1.x).
func TestContainerdDebianCRI(t *testing.T) {
	e := need(t, "/usr/bin/containerd", "/usr/bin/ctr", "/usr/bin/containerd-shim-runc-v2", "crictl")
	start := time.Now()
	f := theFakeNet(t)
	dir := filepath.Join(e.work, "containerd-debian")
	runcRoot := filepath.Join(dir, "runc")
	block := renderRuntimeBlock(t, readRepoFile(t, "contrib/containerd/config-v2.toml"), f.wrapperBin(), runcRoot, `"`)
	config := containerdBaseV2(dir) + "\n# contrib/containerd/config-v2.toml, rendered\n" + block
	// Never the 2.x binaries ($E2E_TOOLS/bin) on its PATH.
	c := startContainerd(t, "containerd-debian", "/usr/bin/containerd", config, pathEnv(f.wrapper, e.binDir))
	c.runcRoot = runcRoot
	defer c.stop(t)
	step(t, start, "containerd 1.6 up")
	testCRI(t, c, f)
	step(t, start, "done")
}

// testCtr: ctr run/exec/kill with the clawrun shim by name; annotations
// through ctr's --annotation.
func testCtr(t *testing.T, c *ctrd, f *fakeNet) {
	e := &theEnv
	start := time.Now()
	const ns = "clawrun-e2e-ctr"
	root := filepath.Join(shimRuncRoot, ns)
	must(t, c.ctr("-n", ns, "images", "import", e.image("busybox-oci.tar")))
	step(t, start, "busybox imported")
	resolv := filepath.Join(c.dir, "ctr-resolv.conf")
	writeFile(t, resolv, "nameserver "+f.Addr()+"\n", 0o644)
	mountResolv := "type=bind,src=" + resolv + ",dst=/etc/resolv.conf,options=rbind:ro"

	// Foreground, exit status kept, no policy.
	r := c.ctr("-n", ns, "run", "--rm", "--runtime", "io.containerd.clawrun.v2", busyboxRef, "e2e-exit", "sh", "-c", probeScript+"; exit 7")
	if r.code != 7 {
		t.Errorf("ctr run: want exit status 7: %v", r)
	}
	expectUnconfined(t, "ctr run --runtime io.containerd.clawrun.v2", r.stdout)

	// A policy by annotation.
	r = c.ctr("-n", ns, "run", "--rm", "--runtime", "io.containerd.clawrun.v2", "--annotation", "run.clawrun.policy=agent-default",
		busyboxRef, "e2e-policy", "sh", "-c", probeScript)
	expectConfined(t, "ctr run --annotation run.clawrun.policy=agent-default", r.stdout+r.stderr)
	step(t, start, "ctr run done")

	// Detached, in a network namespace of the test's (ctr makes an empty
	// one otherwise), with an egress allow list; exec'd into, killed.
	netns := f.ctrNetns(t)
	id := "e2e-agent"
	must(t, c.ctr("-n", ns, "run", "-d", "--runtime", "io.containerd.clawrun.v2",
		"--annotation", "run.clawrun.policy=agent-default", "--annotation", "run.clawrun.egress="+allowedHost+":80",
		"--with-ns", "network:"+netns.NetnsPath(), "--mount", mountResolv,
		busyboxRef, id, "sh", "-c", loopScript))
	defer func() {
		if c.ctr("-n", ns, "containers", "info", id).code == 0 {
			_ = c.ctr("-n", ns, "task", "rm", "-f", id)
			_ = c.ctr("-n", ns, "containers", "rm", id)
		}
	}()
	// A bare io.containerd.clawrun.v2 ran clawrun: it lists the container
	// and reports the confinement it applied.
	if ids := listIDs(t, root); !contains(ids, id) {
		t.Fatalf("clawrun --root %s list: %v, want %s: the shim did not run clawrun", root, ids, id)
	}
	expectStateConfined(t, stateOf(t, root, id), "agent-default", true)
	logNetns(t, root, id)
	r = c.ctr("-n", ns, "task", "exec", "--exec-id", "probe", id, "sh", "-c", probeScript)
	expectConfined(t, "ctr task exec", r.stdout+r.stderr)
	denied := "denied-ctr.example"
	r = c.ctr("-n", ns, "task", "exec", "--exec-id", "egress", id, "sh", "-c", egressScript(denied, f.Addr()))
	expectEgress(t, f, "ctr task exec", denied, r.stdout+r.stderr)
	step(t, start, "detached container checked")
	must(t, c.ctr("-n", ns, "task", "kill", "-s", "SIGTERM", id))
	if !waitFor(20*time.Second, func() bool { return strings.Contains(c.ctr("-n", ns, "task", "ls").stdout, "STOPPED") }) {
		t.Errorf("the task did not stop on SIGTERM: %v", c.ctr("-n", ns, "task", "ls"))
	}
	must(t, c.ctr("-n", ns, "task", "rm", "-f", id))
	must(t, c.ctr("-n", ns, "containers", "rm", id))
	if ids := listIDs(t, root); len(ids) > 0 {
		t.Errorf("clawrun still lists %v after ctr task rm", ids)
	}
	step(t, start, "killed and removed")

	// A malformed inline policy: clawrun's message in ctr's error.
	r = c.ctr("-n", ns, "run", "--rm", "--runtime", "io.containerd.clawrun.v2", "--annotation", "run.clawrun.policy.inline=version: 7",
		busyboxRef, "e2e-bad", "true")
	if r.code == 0 || !strings.Contains(r.stderr, "version 7 is not supported") {
		t.Errorf("a malformed inline policy: want clawrun's refusal: %v", r)
	} else {
		t.Logf("bad inline policy reported: %s", strings.TrimSpace(r.stderr))
	}
	_ = c.ctr("-n", ns, "containers", "rm", "e2e-bad")
	_ = c.ctr("-n", ns, "images", "rm", busyboxRef)
	_ = os.Remove(root)
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// crictl runs crictl against a containerd's CRI plugin.
func (c *ctrd) crictl(args ...string) result {
	cfg := filepath.Join(c.dir, "crictl.yaml")
	if !exists(cfg) {
		_ = os.WriteFile(cfg, []byte(fmt.Sprintf("runtime-endpoint: unix://%[1]s\nimage-endpoint: unix://%[1]s\ntimeout: 60\n", c.sock)), 0o644)
	}
	return runIn(cmdOpts{env: c.env, timeout: 2 * time.Minute}, toolPath("crictl"), append([]string{"--config", cfg}, args...)...)
}

// testCRI: the Kubernetes path. A pod sandbox on the runtime handler
// "clawrun" (a RuntimeClass's handler) whose annotations carry the policy
// and the egress allow list; containers with their own file policies share
// the sandbox's network namespace and egress filter.
func testCRI(t *testing.T, c *ctrd, f *fakeNet) {
	need(t, "crictl")
	start := time.Now()
	defer c.criReady(t, f, "clawrun-e2e-cri", "cle2ek")()
	step(t, start, "pause and busybox imported into k8s.io")

	var info struct {
		Config struct {
			Containerd struct {
				Runtimes map[string]struct {
					Type           string   `json:"runtimeType"`
					PodAnnotations []string `json:"PodAnnotations"`
				} `json:"runtimes"`
			} `json:"containerd"`
		} `json:"config"`
	}
	out := must(t, c.crictl("info"))
	if err := json.Unmarshal([]byte(out), &info); err == nil {
		rt, ok := info.Config.Containerd.Runtimes["clawrun"]
		if !ok {
			t.Fatalf("crictl info: no runtime handler clawrun")
		}
		t.Logf("CRI runtime handler clawrun: %s, pod annotations %v", rt.Type, rt.PodAnnotations)
	}

	podID, podFile, removePod := c.runAgentPod(t, f, "agent")
	defer removePod()
	root := filepath.Join(c.runcRoot, "k8s.io")
	sb := stateOf(t, root, podID)
	if sb.Clawrun == nil || !strings.HasPrefix(sb.Clawrun.Egress, "filtering") {
		t.Errorf("the pod sandbox runs no egress filter: %+v", sb.Clawrun)
	} else {
		t.Logf("sandbox %s: egress %s", shortID(podID), sb.Clawrun.Egress)
	}
	logNetns(t, root, podID)
	checkPodResolvConf(t, sb.Bundle, f.Addr())
	step(t, start, "pod sandbox running")

	container := func(name string, annotations map[string]string, script ...string) string {
		if len(script) == 0 {
			script = []string{loopScript}
		}
		return criContainerConfig(t, filepath.Dir(podFile), name, annotations, script[0])
	}
	// "agent": the pod's policy (agent-default); "reader": its own.
	agent := strings.TrimSpace(must(t, c.crictl("create", "--no-pull", podID, container("agent", nil), podFile)))
	must(t, c.crictl("start", agent))
	reader := strings.TrimSpace(must(t, c.crictl("create", "--no-pull", podID,
		container("reader", map[string]string{"run.clawrun.policy": "sandbox-only"}), podFile)))
	must(t, c.crictl("start", reader))
	step(t, start, "two containers running")

	expectStateConfined(t, stateOf(t, root, agent), "agent-default", true)
	expectStateConfined(t, stateOf(t, root, reader), "sandbox-only", true)
	r := c.crictl("exec", "-i", agent, "sh", "-c", probeScript)
	expectConfined(t, "crictl exec (agent, pod policy agent-default)", r.stdout+r.stderr)
	r = c.crictl("exec", "-i", reader, "sh", "-c", probeScript)
	expectSandboxOnly(t, "crictl exec (reader, container policy sandbox-only)", r.stdout+r.stderr)
	// One network namespace: the same interface in both containers.
	mac1 := strings.TrimSpace(c.crictl("exec", "-i", agent, "cat", "/sys/class/net/eth0/address").stdout)
	mac2 := strings.TrimSpace(c.crictl("exec", "-i", reader, "cat", "/sys/class/net/eth0/address").stdout)
	if mac1 == "" || mac1 != mac2 {
		t.Errorf("the pod's containers do not share a network namespace: eth0 %q vs %q", mac1, mac2)
	}
	for _, ctr := range []struct{ name, id string }{{"agent", agent}, {"reader", reader}} {
		denied := "denied-cri-" + ctr.name + ".example"
		r = c.crictl("exec", "-i", ctr.id, "sh", "-c", egressScript(denied, f.Addr()))
		expectEgress(t, f, "crictl exec ("+ctr.name+", the pod's filter)", denied, r.stdout+r.stderr)
	}
	step(t, start, "containers checked")

	// A container that runs to completion: its exit status is kept.
	job := strings.TrimSpace(must(t, c.crictl("create", "--no-pull", podID, container("job", nil, probeScript+"; exit 7"), podFile)))
	must(t, c.crictl("start", job))
	var status struct {
		Status struct {
			State    string `json:"state"`
			ExitCode int    `json:"exitCode"`
			LogPath  string `json:"logPath"`
		} `json:"status"`
	}
	if !waitFor(30*time.Second, func() bool {
		_ = json.Unmarshal([]byte(c.crictl("inspect", job).stdout), &status)
		return status.Status.State == "CONTAINER_EXITED"
	}) {
		t.Errorf("the job container did not exit: %+v", status)
	} else if status.Status.ExitCode != 7 {
		t.Errorf("the job container exited with %d, want 7", status.Status.ExitCode)
	}
	logs := c.crictl("logs", job)
	expectConfined(t, "crictl start (job, exit status 7)", logs.stdout+logs.stderr)
	must(t, c.crictl("rm", job))

	// A container whose egress differs from its pod's: refused when the
	// runtime creates it (at crictl start; crictl create only records it).
	rogue := strings.TrimSpace(must(t, c.crictl("create", "--no-pull", podID,
		container("rogue", map[string]string{"run.clawrun.egress": "other.example:80"}), podFile)))
	r = c.crictl("start", rogue)
	switch {
	case r.code == 0:
		t.Errorf("a container with an egress policy of its own started in a filtered pod: %v", r)
	case !strings.Contains(r.stderr, "differs from its pod's"):
		t.Errorf("the rogue container was refused, but not with clawrun's reason: %v", r)
	default:
		t.Logf("rogue container refused: %s", strings.TrimSpace(r.stderr[strings.LastIndex(r.stderr, "OCI runtime create failed"):]))
	}
	must(t, c.crictl("rm", "-f", rogue))

	for _, ctr := range []string{agent, reader} {
		must(t, c.crictl("stop", "-t", "10", ctr))
		must(t, c.crictl("rm", ctr))
	}
	must(t, c.crictl("stopp", podID))
	must(t, c.crictl("rmp", podID))
	if ids := listIDs(t, root); len(ids) > 0 {
		t.Errorf("clawrun still lists %v after the pod was removed", ids)
	}
	step(t, start, "containers and pod stopped and removed")
}

func writeJSON(t *testing.T, path string, v any) {
	t.Helper()
	data, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, path, string(data), 0o644)
}

// nerdctl runs nerdctl with the test's nerdctl.toml.
func (c *ctrd) nerdctl(args ...string) result {
	envv := append([]string{"NERDCTL_TOML=" + filepath.Join(c.dir, "nerdctl.toml")}, c.env...)
	return runIn(cmdOpts{env: envv, timeout: 2 * time.Minute}, toolPath("nerdctl"), args...)
}

// testNerdctl: nerdctl run/exec/stop/rm with the clawrun shim by name and
// clawrun by path, annotations through --annotation, and its CNI network
// (set up by nerdctl's OCI hooks, which clawrun runs).
func testNerdctl(t *testing.T, c *ctrd, f *fakeNet) {
	need(t, "nerdctl")
	e := &theEnv
	start := time.Now()
	const ns = "clawrun-e2e-nerdctl"
	root := filepath.Join(shimRuncRoot, ns)
	id := os.Getpid() % 100000
	bridge := fmt.Sprintf("cle2en%d", id)
	defer deleteLink(bridge)
	writeFile(t, filepath.Join(c.dir, "nerdctl.toml"), fmt.Sprintf(`address = %q
namespace = %q
data_root = %q
cni_path = "/usr/lib/cni"
cni_netconfpath = %q
cgroup_manager = "cgroupfs"
snapshotter = "overlayfs"
hosts_dir = [%q]
`, c.sock, ns, filepath.Join(c.dir, "nerdctl"), filepath.Join(c.dir, "nerdctl-cni"), filepath.Join(c.dir, "certs.d")), 0o644)
	// nerdctl's default network ("bridge"), written by the test so that it
	// lives in the test block and adds no iptables rules to the host.
	writeFile(t, filepath.Join(c.dir, "nerdctl-cni", "nerdctl-bridge.conflist"),
		cniConflist("bridge", bridge, f.Prefix(netNerdctl), filepath.Join(c.dir, "nerdctl-ipam"), "1.0.0",
			fmt.Sprintf("\n  \"nerdctlID\": \"%x\",\n  \"nerdctlLabels\": {\"nerdctl/default-network\": \"true\"},", sha256.Sum256([]byte("bridge")))), 0o644)
	must(t, c.nerdctl("load", "-i", e.image("busybox-oci.tar")))
	step(t, start, "busybox loaded")
	dns := "--dns=" + f.Addr()

	// The shim by name: exit status kept, no policy.
	r := c.nerdctl("run", "--rm", "--runtime", "io.containerd.clawrun.v2", dns, busyboxRef, "sh", "-c", probeScript+"; exit 7")
	if r.code != 7 {
		t.Errorf("nerdctl run: want exit status 7: %v", r)
	}
	expectUnconfined(t, "nerdctl run --runtime io.containerd.clawrun.v2", r.stdout)

	// clawrun by path (containerd's runc shim with BinaryName).
	r = c.nerdctl("run", "--rm", "--runtime", e.clawrun, "--annotation", "run.clawrun.policy=agent-default", dns, busyboxRef, "sh", "-c", probeScript)
	expectConfined(t, "nerdctl run --runtime "+e.clawrun+" --annotation", r.stdout+r.stderr)

	// The shim by name with a policy and egress, on nerdctl's network.
	denied := "denied-nerdctl.example"
	r = c.nerdctl("run", "--rm", "--runtime", "io.containerd.clawrun.v2",
		"--annotation", "run.clawrun.policy=agent-default", "--annotation", "run.clawrun.egress="+allowedHost+":80", dns,
		busyboxRef, "sh", "-c", probeScript+"\n"+egressScript(denied, f.Addr()))
	expectConfined(t, "nerdctl run --runtime io.containerd.clawrun.v2 --annotation", r.stdout+r.stderr)
	expectEgress(t, f, "nerdctl run --runtime io.containerd.clawrun.v2 --annotation", denied, r.stdout+r.stderr)
	step(t, start, "nerdctl run done")

	// Detached, exec'd into, stopped, removed.
	cid := strings.TrimSpace(must(t, c.nerdctl("run", "-d", "--name", "agent", "--runtime", "io.containerd.clawrun.v2",
		"--annotation", "run.clawrun.policy=agent-default", "--annotation", "run.clawrun.egress="+allowedHost+":80", dns,
		busyboxRef, "sh", "-c", loopScript)))
	defer func() { _ = c.nerdctl("rm", "-f", "agent") }()
	checkDetachedAgent(t, f, "nerdctl", root, cid, c.nerdctl)
	step(t, start, "detached container checked, stopped, removed")
	_ = os.Remove(root)
}

// checkPodResolvConf: containerd bind-mounts the pod's resolv.conf (its
// dns_config) into the sandbox, where clawrun finds the pod's resolver
// when its config names no upstream_dns.
func checkPodResolvConf(t *testing.T, bundle, server string) {
	t.Helper()
	var spec struct {
		Mounts []struct {
			Destination string   `json:"destination"`
			Source      string   `json:"source"`
			Type        string   `json:"type"`
			Options     []string `json:"options"`
		} `json:"mounts"`
	}
	data, err := os.ReadFile(filepath.Join(bundle, "config.json"))
	if err == nil {
		err = json.Unmarshal(data, &spec)
	}
	if err != nil {
		t.Fatalf("the sandbox's spec: %v", err)
	}
	for _, m := range spec.Mounts {
		if m.Destination != "/etc/resolv.conf" {
			continue
		}
		content, err := os.ReadFile(m.Source)
		if err != nil || !strings.Contains(string(content), "nameserver "+server) || (m.Type != "bind" && !slices.Contains(m.Options, "rbind")) {
			t.Errorf("the sandbox's /etc/resolv.conf mount %+v: %q (%v), want a bind mount naming nameserver %s", m, content, err, server)
		}
		t.Logf("sandbox /etc/resolv.conf: bind mount of %s (the pod's resolver %s)", m.Source, server)
		return
	}
	t.Errorf("containerd gave the sandbox no /etc/resolv.conf mount: clawrun would fall back to the host's resolvers for the pod")
}

// criReady gives c's CRI plugin a CNI bridge network (named network, its
// bridge bridgePrefix plus our pid) and the pause and busybox images in
// namespace k8s.io; it returns what removes the bridge.
func (c *ctrd) criReady(t *testing.T, f *fakeNet, network, bridgePrefix string) (cleanup func()) {
	t.Helper()
	bridge := fmt.Sprintf("%s%d", bridgePrefix, os.Getpid()%100000)
	cleanup = func() { deleteLink(bridge) }
	writeFile(t, filepath.Join(c.dir, "cni", "10-clawrun-e2e.conflist"),
		cniConflist(network, bridge, f.Prefix(netCRI), filepath.Join(c.dir, "cni-ipam"), "1.0.0", ""), 0o644)
	must(t, c.ctr("-n", "k8s.io", "images", "import", theEnv.image("pause-oci.tar")))
	must(t, c.ctr("-n", "k8s.io", "images", "import", theEnv.image("busybox-oci.tar")))
	if !waitFor(30*time.Second, func() bool { return c.crictl("inspecti", pauseRef).code == 0 }) {
		cleanup()
		t.Fatalf("the CRI plugin does not see the imported pause image: %v", c.crictl("images"))
	}
	return cleanup
}

// checkDetachedAgent checks the running container "agent" (id under
// clawrun's root) started by a front-end (cli: docker or nerdctl) with
// agent-default and an egress allow list: its state, an exec'd process's
// confinement and egress; then stops and removes it through the front-end
// and checks that clawrun no longer lists it.
func checkDetachedAgent(t *testing.T, f *fakeNet, label, root, id string, cli func(args ...string) result) {
	t.Helper()
	expectStateConfined(t, stateOf(t, root, id), "agent-default", true)
	logNetns(t, root, id)
	r := cli("exec", "agent", "sh", "-c", probeScript)
	expectConfined(t, label+" exec", r.stdout+r.stderr)
	denied := "denied-" + label + "-exec.example"
	r = cli("exec", "agent", "sh", "-c", egressScript(denied, f.Addr()))
	expectEgress(t, f, label+" exec", denied, r.stdout+r.stderr)
	removeAgent(t, label, root, cli)
}

// checkFloorAgent is checkDetachedAgent for a container confined by the
// floor agent-coding alone (the clawrun-agent runtime, no annotation).
func checkFloorAgent(t *testing.T, f *fakeNet, label, root, id string, cli func(args ...string) result) {
	t.Helper()
	expectStateConfined(t, stateOf(t, root, id), "agent-coding", true)
	logNetns(t, root, id)
	r := cli("exec", "agent", "sh", "-c", probeScript)
	expectConfined(t, label+" exec (the floor)", r.stdout+r.stderr)
	expectFloorEgress(t, f, label+" exec (the floor)", "denied-"+label+"-floor.example", func(script string) result {
		return cli("exec", "agent", "sh", "-c", script)
	})
	removeAgent(t, label, root, cli)
}

// removeAgent stops and removes the container "agent"; clawrun lists
// nothing after.
func removeAgent(t *testing.T, label, root string, cli func(args ...string) result) {
	t.Helper()
	must(t, cli("stop", "-t", "10", "agent"))
	must(t, cli("rm", "agent"))
	if ids := listIDs(t, root); len(ids) > 0 {
		t.Errorf("clawrun still lists %v after %s rm", ids, label)
	}
}

// runAgentPod runs, with the clawrun handler, a pod named name whose
// resolver is the fake internet's and whose annotations give it
// agent-default and HTTP to allowedHost; it returns the pod's id, its
// config file (beside which its containers' configs go) and what removes
// the pod.
func (c *ctrd) runAgentPod(t *testing.T, f *fakeNet, name string) (podID, podFile string, remove func()) {
	t.Helper()
	return c.runPod(t, f, name, map[string]string{
		"run.clawrun.policy": "agent-default",
		"run.clawrun.egress": allowedHost + ":80",
	})
}

// runPod runs, with the clawrun handler, a pod named name with annotations
// whose resolver is the fake internet's, as runAgentPod does.
func (c *ctrd) runPod(t *testing.T, f *fakeNet, name string, annotations map[string]string) (podID, podFile string, remove func()) {
	t.Helper()
	podDir := filepath.Join(c.dir, "pods")
	podFile = filepath.Join(podDir, name+"-pod.json")
	writeJSON(t, podFile, map[string]any{
		"metadata":      map[string]any{"name": name, "namespace": "e2e", "uid": fmt.Sprintf("e2e-%s-%d", name, os.Getpid()%100000), "attempt": 0},
		"hostname":      name,
		"log_directory": filepath.Join(podDir, "logs"),
		"dns_config":    map[string]any{"servers": []string{f.Addr()}},
		"annotations":   annotations,
		"linux":         map[string]any{},
	})
	podID = strings.TrimSpace(must(t, c.crictl("runp", "--runtime", "clawrun", podFile)))
	return podID, podFile, func() {
		_ = c.crictl("stopp", podID)
		_ = c.crictl("rmp", "-f", podID)
	}
}

// criContainerConfig writes the config of a busybox container of a pod,
// running script, into dir and returns its path.
func criContainerConfig(t *testing.T, dir, name string, annotations map[string]string, script string) string {
	t.Helper()
	cfg := map[string]any{
		"metadata": map[string]any{"name": name},
		"image":    map[string]any{"image": busyboxRef},
		"command":  []string{"sh", "-c", script},
		"log_path": name + ".log",
		"linux":    map[string]any{},
	}
	if annotations != nil {
		cfg["annotations"] = annotations
	}
	file := filepath.Join(dir, name+".json")
	writeJSON(t, file, cfg)
	return file
}
