package e2e

import (
	"errors"
	"fmt"
	"io"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"
)

// TestKubeDeploy installs clawrun with contrib/kubernetes/deploy on a
// cluster whose containerd has no clawrun in its config nor on its PATH (a
// second cluster: TestKube's containerd starts with clawrun configured):
// the image built by build-image.sh from bin/ and imported with ctr, the
// installer DaemonSet, a confined pod through the installed RuntimeClasses,
// the node's metrics served by the installer's pod (the pods' decisions
// counted under their names), the cleanup DaemonSet; then the node is as
// it was before.
//
// What is the test's, not the product's: the node's paths (containerd's
// config, the binaries' dir, the drop-in, the installer's state) are
// private dirs, not /etc and /usr/local/bin of a machine other tests
// share; clawrun gets the fake internet's config (CLAWRUN_CONFIG); the
// restart command asks the test to restart its containerd (there is no
// systemd here); and the pods reach the API server at 127.0.0.1, not
// through the kubernetes Service (nothing routes it without kube-proxy);
// the metrics are served on a free port of the node (the test machine's).
func TestKubeDeploy(t *testing.T) {
	start := time.Now()
	k := startKubeClusterWith(t, kubeOptions{name: "kube-deploy"})
	dir := privateDir(t, "kube-deploy-node")
	n := &deployNode{
		dest:    filepath.Join(dir, "bin"),
		dropIn:  filepath.Join(dir, "containerd", "conf.d", "clawrun.toml"),
		state:   filepath.Join(dir, "state"),
		restart: filepath.Join(dir, "restart-requested"),
		metrics: freePorts(t, 1)[0],
	}
	if err := os.MkdirAll(n.dest, 0o755); err != nil {
		t.Fatal(err)
	}
	before := n.snapshot(t, k, dir)

	image := filepath.Join(dir, "clawrun-deploy.tar")
	ref := deployImage(t)
	must(t, runIn(cmdOpts{timeout: 3 * time.Minute}, "bash", filepath.Join(theEnv.repo, "contrib/kubernetes/deploy/build-image.sh"), theEnv.binDir, image, ref))
	must(t, k.c.ctr("-n", "k8s.io", "images", "import", image))
	step(t, start, "image %s built from %s and imported", ref, theEnv.binDir)

	// Before the install, a pod of the RuntimeClass is not scheduled:
	// no node has the label.
	must(t, k.kubectl("apply", "-f", filepath.Join(theEnv.repo, "contrib/kubernetes/deploy/runtimeclasses.yaml")))
	k.apply(t, k.agentPod(t, "installed-agent", nil, kubeProbeScript+"\n"+loopScript))
	floor := k.agentPod(t, "installed-floor", map[string]string{"run.clawrun.policy": "", "run.clawrun.egress": ""}, kubeProbeScript+"\n"+loopScript)
	floor["spec"].(map[string]any)["runtimeClassName"] = "clawrun-agent"
	k.apply(t, floor)
	defer k.kubectl("delete", "pod", "installed-agent", "installed-floor", "--wait=false")
	k.waitUnschedulable(t, "installed-agent")

	n.apply(t, k, "contrib/kubernetes/deploy/clawrun-deploy.yaml")
	restarts := n.awaitDaemonSet(t, k, "clawrun-deploy")
	if restarts != 1 {
		t.Errorf("the install restarted containerd %d times, want once (its config changed)", restarts)
	}
	if got := k.nodeLabel(t, "clawrun.dev/runtime"); got != "installed" {
		t.Errorf("node label clawrun.dev/runtime=%q after the install, want installed", got)
	}
	step(t, start, "installed: %s", strings.Join(n.listDest(t), ", "))
	// The installer again (its pod replaced, as after an upgrade): the
	// config is already what it wants, so containerd is left alone.
	first := strings.TrimSpace(must(t, k.kubectl("-n", "kube-system", "get", "pods", "-l", "name=clawrun-deploy", "-o", "jsonpath={.items[0].metadata.name}")))
	must(t, k.kubectl("-n", "kube-system", "delete", "pod", first, "--wait", "--timeout=2m"))
	if restarts := n.awaitDaemonSetPod(t, k, "clawrun-deploy", first); restarts != 0 {
		t.Errorf("the installer's second run restarted containerd %d times: its config had not changed", restarts)
	}
	t.Logf("containerd's config after the install:\n%s", readFileOr(k.c.config))

	// The pods scheduled once the node is labelled, run by the handlers
	// the installer configured.
	k.waitReady(t, "installed-agent")
	k.waitReady(t, "installed-floor")
	cid := k.pod(t, "installed-agent").containerID()
	expectStateConfined(t, stateOf(t, k.root(), cid), "agent-default", true)
	logs := k.kubectl("logs", "installed-agent")
	expectConfined(t, "installed clawrun (kubectl logs)", logs.stdout+logs.stderr)
	expectLandlockDenied(t, "installed clawrun (kubectl logs)", logs.stdout)
	denied := "denied-deploy.example"
	r := k.kubectl("exec", "installed-agent", "--", "sh", "-c", egressScript(denied, k.f.Addr()))
	expectEgress(t, k.f, "installed clawrun (kubectl exec)", denied, r.stdout+r.stderr)
	expectStateConfined(t, stateOf(t, k.root(), k.pod(t, "installed-floor").containerID()), "agent-coding", true)
	logs = k.kubectl("logs", "installed-floor")
	expectConfined(t, "installed clawrun-agent (kubectl logs)", logs.stdout+logs.stderr)
	metricsURL := k.nodeMetricsURL(t, "clawrun-deploy")
	expectNodeMetrics(t, metricsURL,
		podMetrics{name: "installed-agent", namespace: "default", decisions: []string{"allow", "deny"}},
		podMetrics{name: "installed-floor", namespace: "default"})
	step(t, start, "the node's metrics (%s) show both pods and installed-agent's allowed and denied connections", metricsURL)
	must(t, k.kubectl("delete", "pod", "installed-agent", "installed-floor", "--wait", "--timeout=2m"))
	step(t, start, "pods of both RuntimeClasses ran confined, and are deleted")

	must(t, k.kubectl("-n", "kube-system", "delete", "daemonset", "clawrun-deploy", "--wait", "--timeout=2m"))
	if !waitFor(time.Minute, func() bool { _, err := scrapeNode(metricsURL); return err != nil }) {
		t.Errorf("the node's metrics are still served at %s a minute after the installer's DaemonSet was deleted", metricsURL)
	}
	n.apply(t, k, "contrib/kubernetes/deploy/clawrun-cleanup.yaml")
	restarts = n.awaitDaemonSet(t, k, "clawrun-cleanup")
	if restarts != 1 {
		t.Errorf("the uninstall restarted containerd %d times, want once (its config changed)", restarts)
	}
	must(t, k.kubectl("-n", "kube-system", "delete", "daemonset", "clawrun-cleanup", "--wait", "--timeout=2m"))
	step(t, start, "uninstalled")

	after := n.snapshot(t, k, dir)
	for what, v := range before {
		if after[what] != v {
			t.Errorf("after the uninstall, %s differs:\n%s\n--- before:\n%s", what, after[what], v)
		}
	}
	for what := range after {
		if _, ok := before[what]; !ok {
			t.Errorf("after the uninstall, %s is left: %s", what, after[what])
		}
	}
	// And the RuntimeClasses schedule nothing any more.
	k.apply(t, k.agentPod(t, "after-uninstall", nil, loopScript))
	defer k.kubectl("delete", "pod", "after-uninstall", "--wait=false")
	k.waitUnschedulable(t, "after-uninstall")
	step(t, start, "the node is as before: containerd's config byte for byte, no binary, drop-in, state or label")
}

// deployNode is where the installer works on the test's node: host paths
// of the test's private dir.
type deployNode struct {
	dest, dropIn, state string
	// restart is the file the restart command creates, and waits for the
	// test to remove once containerd is restarted.
	restart string
	// metrics is the port the installer's pod serves metrics on.
	metrics int
}

// deployImage is the image the manifests name (build-image.sh's default
// for this VERSION).
func deployImage(t *testing.T) string {
	t.Helper()
	return "docker.io/clawrun/clawrun-deploy:" + strings.TrimSpace(readRepoFile(t, "VERSION"))
}

// snapshot is what the uninstall must leave as it was: containerd's
// config, every file and dir of the node's private dir (mode, content),
// the node's labels.
func (n *deployNode) snapshot(t *testing.T, k *kubeCluster, dir string) map[string]string {
	t.Helper()
	s := map[string]string{"containerd's config.toml": readFileOr(k.c.config)}
	err := filepath.Walk(dir, func(p string, info os.FileInfo, err error) error {
		if err != nil || p == dir || strings.HasSuffix(p, ".tar") {
			return err
		}
		v := info.Mode().String()
		if info.Mode().IsRegular() {
			data, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			v += " " + string(data)
		}
		s[p] = v
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	s["node labels"] = must(t, k.kubectl("get", "node", kubeNode, "-o", "jsonpath={.metadata.labels}"))
	return s
}

func readFileOr(path string) string {
	data, err := os.ReadFile(path)
	if err != nil {
		return err.Error()
	}
	return string(data)
}

func (n *deployNode) listDest(t *testing.T) []string {
	t.Helper()
	entries, err := os.ReadDir(n.dest)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	return names
}

// apply applies a manifest of contrib/kubernetes/deploy with the test
// node's settings in its DaemonSet's environment.
func (n *deployNode) apply(t *testing.T, k *kubeCluster, rel string) {
	t.Helper()
	api, err := url.Parse(k.apiURL)
	if err != nil {
		t.Fatal(err)
	}
	settings := map[string]string{
		"CLAWRUN_DEST":         n.dest,
		"CLAWRUN_CONFIG":       k.f.config,
		"CLAWRUN_RUNTIME":      "containerd",
		"CONTAINERD_CONFIG":    k.c.config,
		"CONTAINERD_DROPIN":    n.dropIn,
		"CLAWRUN_DEPLOY_STATE": n.state,
		// The image's busybox: ask the test, and wait for it.
		"CLAWRUN_RESTART":         fmt.Sprintf("touch /host%[1]s && while [ -e /host%[1]s ]; do sleep 0.2; done", n.restart),
		"KUBERNETES_SERVICE_HOST": api.Hostname(),
		"KUBERNETES_SERVICE_PORT": api.Port(),
	}
	dec := yaml.NewDecoder(strings.NewReader(readRepoFile(t, rel)))
	var items []any
	sawDaemonSet := false
	for {
		var obj map[string]any
		if err := dec.Decode(&obj); errors.Is(err, io.EOF) {
			break
		} else if err != nil {
			t.Fatalf("%s: %v", rel, err)
		}
		if obj["kind"] == "DaemonSet" {
			sawDaemonSet = true
			template := obj["spec"].(map[string]any)["template"].(map[string]any)
			containers := template["spec"].(map[string]any)["containers"].([]any)
			for _, c := range containers {
				if image := c.(map[string]any)["image"]; image != deployImage(t) {
					t.Errorf("%s: image %v, want %s (build-image.sh's for this VERSION)", rel, image, deployImage(t))
				}
			}
			c := containers[0].(map[string]any)
			c["env"] = withEnv(c["env"], settings)
			withMetricsPort(t, template, n.metrics)
		}
		items = append(items, obj)
	}
	if !sawDaemonSet {
		t.Fatalf("%s: no DaemonSet", rel)
	}
	k.apply(t, map[string]any{"apiVersion": "v1", "kind": "List", "items": items})
}

// withEnv is a container's env with settings set (replaced or added).
func withEnv(env any, settings map[string]string) []any {
	var out []any
	seen := map[string]bool{}
	list, _ := env.([]any)
	for _, e := range list {
		m := e.(map[string]any)
		name, _ := m["name"].(string)
		if v, ok := settings[name]; ok {
			m = map[string]any{"name": name, "value": v}
			seen[name] = true
		}
		out = append(out, m)
	}
	for name, v := range settings {
		if !seen[name] {
			out = append(out, map[string]any{"name": name, "value": v})
		}
	}
	return out
}

// awaitDaemonSet waits until the DaemonSet's pod is Ready on the node,
// restarting containerd whenever its restart command asks; it returns the
// number of restarts.
func (n *deployNode) awaitDaemonSet(t *testing.T, k *kubeCluster, name string) int {
	t.Helper()
	return n.awaitDaemonSetPod(t, k, name, "")
}

// awaitDaemonSetPod is awaitDaemonSet for a pod other than notPod.
func (n *deployNode) awaitDaemonSetPod(t *testing.T, k *kubeCluster, name, notPod string) int {
	t.Helper()
	restarts := 0
	deadline := time.Now().Add(3 * time.Minute)
	for {
		if exists(n.restart) {
			k.restartContainerd(t)
			restarts++
			if err := os.Remove(n.restart); err != nil {
				t.Fatal(err)
			}
		}
		st := k.kubectl("-n", "kube-system", "get", "pods", "-l", "name="+name, "-o",
			`jsonpath={range .items[*]}{.metadata.name} {.status.conditions[?(@.type=="Ready")].status}{"\n"}{end}`)
		if slices.ContainsFunc(strings.Split(st.stdout, "\n"), func(l string) bool {
			f := strings.Fields(l)
			return len(f) == 2 && f[0] != notPod && f[1] == "True"
		}) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("daemonset %s not ready within 3 minutes (%v):\n%s\n%s", name, st,
				k.kubectl("-n", "kube-system", "describe", "pods", "-l", "name="+name).stdout,
				k.kubectl("-n", "kube-system", "logs", "-l", "name="+name, "--tail=30").stdout)
		}
		time.Sleep(200 * time.Millisecond)
	}
	logs := k.kubectl("-n", "kube-system", "logs", "-l", "name="+name, "--tail=30")
	t.Logf("%s's log:\n%s", name, strings.TrimSpace(logs.stdout))
	return restarts
}

// nodeLabel is a label of the node ("" if it has none).
func (k *kubeCluster) nodeLabel(t *testing.T, key string) string {
	t.Helper()
	return must(t, k.kubectl("get", "node", kubeNode, "-o", "jsonpath={.metadata.labels."+strings.ReplaceAll(key, ".", `\.`)+"}"))
}

// waitUnschedulable waits until the scheduler has found no node for the
// pod.
func (k *kubeCluster) waitUnschedulable(t *testing.T, name string) {
	t.Helper()
	var last result
	if !waitFor(time.Minute, func() bool {
		last = k.kubectl("get", "pod", name, "-o", `jsonpath={.status.conditions[?(@.type=="PodScheduled")].reason}`)
		return strings.TrimSpace(last.stdout) == "Unschedulable"
	}) {
		t.Fatalf("pod %s: not Unschedulable within a minute (%v):\n%s", name, last, k.kubectl("describe", "pod", name).stdout)
	}
	t.Logf("pod %s is not scheduled: no node has clawrun.dev/runtime=installed", name)
}
