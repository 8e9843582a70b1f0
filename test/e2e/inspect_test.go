package e2e

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/clawrun/clawrun/test/fakenet"
)

// HTTPS inspection through the front-ends: a container whose policy has
// an L7 rule trusts its filter's CA through the files and variables the
// runtime adds, gets the requests the rule allows answered by the fake
// internet's HTTPS server and 403 for the others, and cannot find the
// CA's key anywhere in its filesystem.

const (
	// inspectPort is the fake internet's HTTPS server (HTTP/1.1 and h2
	// inside TLS, a certificate of the fake internet's CA for every name).
	inspectPort = 8443
	// inspectedHost is the endpoint the inspect policy reads only.
	inspectedHost = "inspected.example"
	// inspectPolicy is the name of the policy file in the tests' policy
	// directory (run.clawrun.policy=inspect).
	inspectPolicy = "inspect"
	// probeMount is where the probe's directory is bind-mounted.
	probeMount = "/clawrun-probe"
)

// inspectDoc reads the whole filesystem (so that a search from inside
// covers everything the container has) and writes /tmp; its one endpoint
// is inspected: GET and HEAD only.
var inspectDoc = fmt.Sprintf(`version: 1
filesystem_policy:
  include_workdir: false
  read_only: [/]
  read_write: [/tmp, /dev/null]
landlock:
  compatibility: best_effort
network_policies:
  api:
    endpoints:
      - host: %s
        port: %d
        protocol: rest
        access: read-only
`, inspectedHost, inspectPort)

// trustVars are the variables the runtime sets for an inspected
// container, and where they point.
var trustVars = map[string]string{
	"SSL_CERT_FILE":       "/etc/clawrun/ca-bundle.pem",
	"REQUESTS_CA_BUNDLE":  "/etc/clawrun/ca-bundle.pem",
	"CURL_CA_BUNDLE":      "/etc/clawrun/ca-bundle.pem",
	"GIT_SSL_CAINFO":      "/etc/clawrun/ca-bundle.pem",
	"NODE_EXTRA_CA_CERTS": "/etc/clawrun/ca.pem",
}

var probeBuild struct {
	once sync.Once
	dir  string
	err  error
}

// probeDir builds test/probe (static) once per run into a directory of
// its own, which containers get bind-mounted read-only at probeMount: a
// TLS client that trusts what SSL_CERT_FILE names (busybox's wget checks
// no certificate).
func probeDir(t *testing.T) string {
	t.Helper()
	probeBuild.once.Do(func() {
		dir := filepath.Join(theEnv.work, "probe")
		if err := os.MkdirAll(dir, 0o755); err != nil {
			probeBuild.err = err
			return
		}
		goBin, err := exec.LookPath("go") // go test puts $GOROOT/bin on PATH
		if err != nil {
			probeBuild.err = err
			return
		}
		r := runIn(cmdOpts{env: append(os.Environ(), "CGO_ENABLED=0"), timeout: 3 * time.Minute},
			goBin, "-C", theEnv.repo, "build", "-trimpath", "-ldflags=-s -w", "-o", filepath.Join(dir, "probe"), "./test/probe")
		if r.code != 0 {
			probeBuild.err = fmt.Errorf("%v", r)
		}
		probeBuild.dir = dir
	})
	if probeBuild.err != nil {
		t.Fatalf("building test/probe: %v", probeBuild.err)
	}
	return probeBuild.dir
}

// pemBody is the longest base64 line of a PEM file on the host: what a
// search for the file's content inside a container looks for.
func pemBody(t *testing.T, path string) string {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	best := ""
	for _, l := range strings.Split(string(data), "\n") {
		if !strings.HasPrefix(l, "-----") && len(l) > len(best) {
			best = l
		}
	}
	if len(best) < 40 {
		t.Fatalf("%s: no PEM body in %q", path, data)
	}
	return best
}

// findContent is a shell command: the files (but /proc, /sys and /dev)
// that hold s, one per line.
func findContent(s string) string {
	return fmt.Sprintf(`find / \( -path /proc -o -path /sys -o -path /dev \) -prune -o -type f -print0 2>/dev/null | xargs -0 grep -lF -e '%s' 2>/dev/null; echo "uid=$(id -u) search done"`, s)
}

// probeHTTPS is a shell command: the probe's GET (allowed) and POST
// (refused by the rule) to the inspected endpoint on one connection.
func probeHTTPS(label string) string {
	return fmt.Sprintf("%s/probe https %s %d %s h1 %s GET:/%s-get POST:/%s-post",
		probeMount, inspectedHost, inspectPort, inspectedHost, inspectedHost, label, label)
}

// checkInspected checks, through exec (a shell script in the container),
// a running container under the inspect policy whose filter's CA is
// caCert with key caKey (host paths, in the state dir of the container
// or of its pod's sandbox).
func checkInspected(t *testing.T, f *fakeNet, label, caCert, caKey string, exec func(script string) result) {
	t.Helper()
	start := time.Now()
	if st, err := os.Stat(caKey); err != nil || st.Mode().Perm() != 0o600 {
		t.Errorf("%s: the CA key %s: %v, want mode 0600", label, caKey, err)
	}

	// The variables, each where the runtime's files are.
	r := exec("env")
	for name, want := range trustVars {
		if !strings.Contains("\n"+r.stdout, "\n"+name+"="+want+"\n") {
			t.Errorf("%s: %s is not %s in the container's environment: %v", label, name, want, r)
		}
	}

	// The allowed GET is answered by the upstream through a certificate
	// of the container's CA, trusted through SSL_CERT_FILE only (the
	// image has no CAs and no /etc/test-ca.pem); the POST gets the
	// filter's 403 and never reaches the upstream.
	mark := f.Mark()
	r = exec("test ! -e /etc/test-ca.pem && " + probeHTTPS(label))
	if !strings.Contains(r.stdout, `OK issuer="clawrun egress CA `) ||
		!strings.Contains(r.stdout, "200 GET /"+label+"-get conn=1 | 403 POST /"+label+"-post conn=1") {
		t.Errorf("%s: want the GET answered (200) and the POST refused (403) through the container's CA: %v", label, r)
	} else {
		t.Logf("%s: %s", label, strings.TrimSpace(r.stdout))
	}
	if _, ok := f.Wait(mark, 5*time.Second, httpsRequest("GET", "/"+label+"-get")); !ok {
		t.Errorf("%s: the allowed GET never reached the fake internet:\n%s", label, f.Dump(mark))
	}
	for _, e := range f.Since(mark) {
		if httpsRequest("POST", "")(e) {
			t.Errorf("%s: the refused POST reached the fake internet: %s", label, e)
		}
	}

	// Without the variable the probe trusts nothing that signs the
	// filter's certificates: the trust comes from SSL_CERT_FILE.
	r = exec("unset SSL_CERT_FILE; " + probeHTTPS(label+"-untrusted"))
	if r.code == 0 || !strings.Contains(r.stdout, "certificate") {
		t.Errorf("%s: without SSL_CERT_FILE, want a certificate error: %v", label, r)
	} else {
		t.Logf("%s: without SSL_CERT_FILE: %s", label, strings.TrimSpace(r.stdout))
	}

	// Root in the container searches its whole filesystem: the CA key's
	// content is nowhere; the same search finds the CA certificate's (the
	// control: the search reads the mounted files).
	// Nor is it at its host path.
	if r = exec("cat " + caKey); r.code == 0 || strings.Contains(r.stdout, "PRIVATE KEY") {
		t.Errorf("%s: the CA key's host path is readable in the container: %v", label, r)
	}
	r = exec(findContent(pemBody(t, caKey)))
	if !strings.Contains(r.stdout, "uid=0 search done") || strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(r.stdout), "uid=0 search done")) != "" {
		t.Errorf("%s: root's search of the container's filesystem for the CA key: %v", label, r)
	}
	r = exec(findContent(pemBody(t, caCert)))
	for _, want := range []string{"/etc/clawrun/ca.pem", "/etc/clawrun/ca-bundle.pem", "uid=0 search done"} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("%s: the search for the CA certificate did not find %s: %v", label, want, r)
		}
	}
	step(t, start, "%s: inspected HTTPS, trust variables and CA key checked", label)
}

// httpsRequest matches a request the fake internet's HTTPS server
// received for inspectedHost (any path when path is "").
func httpsRequest(method, path string) func(fakenet.Event) bool {
	return func(e fakenet.Event) bool {
		return e.Kind == "https" && e.Data == method && strings.HasPrefix(e.Name, inspectedHost) && (path == "" || e.Path == path)
	}
}

// TestInspectDocker: moby v2's dockerd, the clawrun shim by name, the
// inspect policy by annotation.
func TestInspectDocker(t *testing.T) {
	client := needMoby(t)
	start := time.Now()
	f := theFakeNet(t)
	probe := probeDir(t)
	d := startMoby(t, "docker-inspect", client, f)
	defer d.stop(t, true)
	step(t, start, "dockerd (moby v2) up, busybox imported")

	id := strings.TrimSpace(must(t, d.docker("run", "-d", "--name", "inspect", "--runtime", "io.containerd.clawrun.v2",
		"--annotation", "run.clawrun.policy="+inspectPolicy, "-v", probe+":"+probeMount+":ro",
		dockerImage, "sh", "-c", loopScript)))
	defer func() { _ = d.docker("rm", "-f", "inspect") }()
	root := findRoot(id, d.dir, shimRuncRoot)
	if root == "" {
		t.Fatalf("no clawrun state for %s", id)
	}
	expectStateConfined(t, stateOf(t, root, id), inspectPolicy, true)
	checkInspected(t, f, "docker", filepath.Join(root, id, "egress-ca.pem"), filepath.Join(root, id, "egress-ca.key"),
		func(script string) result { return d.docker("exec", "inspect", "sh", "-c", script) })
	must(t, d.docker("rm", "-f", "inspect"))
	step(t, start, "done")
}

// TestInspectCRI: a CRI pod (containerd 2.2.9, handler clawrun) whose
// annotation names the inspect policy: its container shares the
// sandbox's filter and trusts the sandbox's CA.
func TestInspectCRI(t *testing.T) {
	e := need(t, "containerd", "ctr", "containerd-shim-runc-v2", "crictl")
	start := time.Now()
	f := theFakeNet(t)
	probe := probeDir(t)
	c := startContribContainerd(t, e, f, "containerd-inspect")
	defer c.stop(t)
	step(t, start, "containerd 2.2.9 up")
	defer c.criReady(t, f, "clawrun-e2e-inspect", "cle2ei")()

	podID, podFile, removePod := c.runPod(t, f, "inspect", map[string]string{"run.clawrun.policy": inspectPolicy})
	defer removePod()
	root := filepath.Join(c.runcRoot, "k8s.io")
	if sb := stateOf(t, root, podID); sb.Clawrun == nil || !strings.HasPrefix(sb.Clawrun.Egress, "filtering") {
		t.Fatalf("the pod sandbox runs no egress filter: %+v", sb.Clawrun)
	}
	ctrFile := criContainerConfig(t, filepath.Dir(podFile), "agent", nil, loopScript)
	addCRIMount(t, ctrFile, probe, probeMount)
	agent := strings.TrimSpace(must(t, c.crictl("create", "--no-pull", podID, ctrFile, podFile)))
	must(t, c.crictl("start", agent))
	expectStateConfined(t, stateOf(t, root, agent), inspectPolicy, true)
	step(t, start, "pod and container running")

	checkInspected(t, f, "cri", filepath.Join(root, podID, "egress-ca.pem"), filepath.Join(root, podID, "egress-ca.key"),
		func(script string) result { return c.crictl("exec", "-i", agent, "sh", "-c", script) })

	must(t, c.crictl("stop", "-t", "10", agent))
	must(t, c.crictl("rm", agent))
	must(t, c.crictl("stopp", podID))
	must(t, c.crictl("rmp", podID))
	if ids := listIDs(t, root); len(ids) > 0 {
		t.Errorf("clawrun still lists %v after the pod was removed", ids)
	}
	step(t, start, "done")
}

// addCRIMount adds a read-only bind mount of hostPath at containerPath to
// a CRI container config written by criContainerConfig.
func addCRIMount(t *testing.T, file, hostPath, containerPath string) {
	t.Helper()
	var cfg map[string]any
	data, err := os.ReadFile(file)
	if err == nil {
		err = json.Unmarshal(data, &cfg)
	}
	if err != nil {
		t.Fatal(err)
	}
	cfg["mounts"] = []map[string]any{{"container_path": containerPath, "host_path": hostPath, "readonly": true}}
	writeJSON(t, file, cfg)
}

// testKubeInspect: a pod of the cluster (the kubelet, its RuntimeClass)
// whose annotation names the inspect policy, the probe mounted from a
// hostPath volume: its container trusts its sandbox's CA.
func testKubeInspect(t *testing.T, k *kubeCluster) {
	start := time.Now()
	pod := k.agentPod(t, "inspect", map[string]string{"run.clawrun.policy": inspectPolicy, "run.clawrun.egress": ""}, loopScript)
	spec := pod["spec"].(map[string]any)
	spec["volumes"] = append(spec["volumes"].([]any),
		map[string]any{"name": "probe", "hostPath": map[string]any{"path": probeDir(t), "type": "Directory"}})
	c := container(pod)
	c["volumeMounts"] = append(c["volumeMounts"].([]any),
		map[string]any{"name": "probe", "mountPath": probeMount, "readOnly": true})
	k.apply(t, pod)
	defer k.kubectl("delete", "pod", "inspect", "--wait=false")
	k.waitReady(t, "inspect")
	st := stateOf(t, k.root(), k.pod(t, "inspect").containerID())
	expectStateConfined(t, st, inspectPolicy, true)
	sandbox := sandboxOf(t, st)
	step(t, start, "pod inspect running")

	checkInspected(t, k.f, "kube", filepath.Join(k.root(), sandbox, "egress-ca.pem"), filepath.Join(k.root(), sandbox, "egress-ca.key"),
		func(script string) result { return k.kubectl("exec", "inspect", "--", "sh", "-c", script) })
	must(t, k.kubectl("delete", "pod", "inspect", "--wait", "--timeout=1m"))
	step(t, start, "done")
}
