package e2e

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"
)

// TestKube runs clawrun as a RuntimeClass of a real single-node cluster
// (kube_cluster_test.go): the kubelet resolves runtimeClassName through
// the API server, passes the pod's run.clawrun.* annotations to the CRI,
// runs kubectl exec and exec probes through the runtime, restarts
// containers, enforces grace periods and deletes pods. Every pod is
// contrib/kubernetes/agent-pod.yaml with the local busybox image.
func TestKube(t *testing.T) {
	start := time.Now()
	k := startKubeCluster(t)
	must(t, k.kubectl("apply", "-f", filepath.Join(theEnv.repo, "contrib/kubernetes/runtimeclass.yaml"),
		"-f", filepath.Join(theEnv.repo, "contrib/kubernetes/runtimeclass-agent.yaml")))

	// The agent: agent-default and HTTP to allowed.example only, an exec
	// liveness probe that tries a write the policy forbids.
	agent := k.agentPod(t, "agent", nil, kubeProbeScript+"\n"+loopScript)
	container(agent)["livenessProbe"] = map[string]any{
		"exec":          map[string]any{"command": []string{"sh", "-c", livenessScript}},
		"periodSeconds": 2,
	}
	k.apply(t, agent)
	k.waitReady(t, "agent")
	step(t, start, "pod agent running")

	t.Run("policy-and-egress", func(t *testing.T) { testKubePolicyAndEgress(t, k) })
	t.Run("exec-and-probe", func(t *testing.T) { testKubeExecAndProbe(t, k) })
	t.Run("restart", func(t *testing.T) { testKubeRestart(t, k) })
	t.Run("delete-grace", func(t *testing.T) { testKubeDeleteGrace(t, k) })
	t.Run("bad-policy", func(t *testing.T) { testKubeBadPolicy(t, k) })
	t.Run("inspect", func(t *testing.T) { testKubeInspect(t, k) })
	t.Run("two-pods", func(t *testing.T) { testKubeTwoPods(t, k) })
	t.Run("floor", func(t *testing.T) { testKubeFloor(t, k) })
	step(t, start, "done")
}

// kubeProbeScript is probeScript plus a write that only Landlock refuses:
// /var/log is in no list of agent-default, and the container's root
// filesystem is writable (its root user passes the file permissions).
const kubeProbeScript = probeScript + "\nw /var/log/clawrun-e2e"

// livenessScript is the agent's exec probe: it records in /sandbox what
// a write to /var/log did, and fails (the kubelet restarts the container)
// if it worked.
const livenessScript = `if err=$( (echo x > /var/log/clawrun-probe) 2>&1 ); then echo escaped >> /sandbox/probe.log; exit 1; fi
echo "denied: $err" >> /sandbox/probe.log`

// expectLandlockDenied checks that the write to /var/log was refused with
// Landlock's EACCES (not a read-only mount's EROFS).
func expectLandlockDenied(t *testing.T, what, out string) {
	t.Helper()
	for _, line := range strings.Split(out, "\n") {
		if strings.HasPrefix(line, "write /var/log/clawrun-e2e: denied") && strings.Contains(line, "Permission denied") {
			t.Logf("%s: Landlock refused a write to /var/log: %s", what, line)
			return
		}
	}
	t.Errorf("%s: a write to /var/log (outside the policy, on a writable filesystem) was not refused by Landlock:\n%s", what, out)
}

// agentPod is contrib/kubernetes/agent-pod.yaml named name, running script
// in busybox, with HTTP to allowed.example as its egress and annotations
// merged into its own (an empty value removes one).
func (k *kubeCluster) agentPod(t *testing.T, name string, annotations map[string]string, script string) map[string]any {
	t.Helper()
	var pod map[string]any
	if err := yaml.Unmarshal([]byte(readRepoFile(t, "contrib/kubernetes/agent-pod.yaml")), &pod); err != nil {
		t.Fatalf("contrib/kubernetes/agent-pod.yaml: %v", err)
	}
	meta := pod["metadata"].(map[string]any)
	meta["name"] = name
	ann := meta["annotations"].(map[string]any)
	ann["run.clawrun.egress"] = allowedHost + ":80"
	for key, v := range annotations {
		if v == "" {
			delete(ann, key)
		} else {
			ann[key] = v
		}
	}
	c := container(pod)
	c["image"] = busyboxRef
	c["imagePullPolicy"] = "Never"
	c["command"] = []string{"sh", "-c", script}
	return pod
}

// container is the first container of a pod manifest.
func container(pod map[string]any) map[string]any {
	return pod["spec"].(map[string]any)["containers"].([]any)[0].(map[string]any)
}

// kubePod is the part of a Pod the tests read.
type kubePod struct {
	Metadata struct {
		UID string `json:"uid"`
	} `json:"metadata"`
	Status struct {
		Phase             string `json:"phase"`
		ContainerStatuses []struct {
			Name         string         `json:"name"`
			ContainerID  string         `json:"containerID"`
			RestartCount int            `json:"restartCount"`
			State        containerState `json:"state"`
			LastState    containerState `json:"lastState"`
		} `json:"containerStatuses"`
	} `json:"status"`
}

type containerState struct {
	Running *struct{} `json:"running"`
	Waiting *struct {
		Reason string `json:"reason"`
	} `json:"waiting"`
	Terminated *struct {
		ExitCode    int    `json:"exitCode"`
		ContainerID string `json:"containerID"`
	} `json:"terminated"`
}

func (k *kubeCluster) pod(t *testing.T, name string) kubePod {
	t.Helper()
	var p kubePod
	out := must(t, k.kubectl("get", "pod", name, "-o", "json"))
	if err := json.Unmarshal([]byte(out), &p); err != nil {
		t.Fatalf("pod %s: %v", name, err)
	}
	return p
}

// containerID is the CRI id of the pod's first container ("" before it
// has one).
func (p kubePod) containerID() string {
	if len(p.Status.ContainerStatuses) == 0 {
		return ""
	}
	_, id, _ := strings.Cut(p.Status.ContainerStatuses[0].ContainerID, "://")
	return id
}

// waitReady waits until the pod is Ready.
func (k *kubeCluster) waitReady(t *testing.T, name string) {
	t.Helper()
	if r := k.kubectl("wait", "--for=condition=Ready", "pod/"+name, "--timeout=3m"); r.code != 0 {
		t.Fatalf("pod %s is not Ready: %v\n%s\n%s", name, r, k.kubectl("describe", "pod", name).stdout, k.logTails(15))
	}
}

// sandboxOf is the pod sandbox of a container (containerd's annotation).
func sandboxOf(t *testing.T, st clawrunState) string {
	t.Helper()
	id := st.Annotations["io.kubernetes.cri.sandbox-id"]
	if id == "" {
		t.Fatalf("container %s: no io.kubernetes.cri.sandbox-id annotation: %v", st.ID, st.Annotations)
	}
	return id
}

// testKubePolicyAndEgress: the pod runs under clawrun (its state is in
// the clawrun handler's root) with the pod's policy and egress filter; its
// main process is confined; from it the allowed name answers, a denied
// name and an IP literal do not; clawrun audit shows those decisions.
func testKubePolicyAndEgress(t *testing.T, k *kubeCluster) {
	start := time.Now()
	cid := k.pod(t, "agent").containerID()
	st := stateOf(t, k.root(), cid)
	expectStateConfined(t, st, "agent-default", true)
	sandbox := sandboxOf(t, st)
	sb := stateOf(t, k.root(), sandbox)
	if sb.Clawrun == nil || !strings.HasPrefix(sb.Clawrun.Egress, "filtering") {
		t.Errorf("the pod sandbox runs no egress filter: %+v", sb.Clawrun)
	}
	logNetns(t, k.root(), sandbox)
	checkPodResolvConf(t, sb.Bundle, k.f.Addr())

	logs := k.kubectl("logs", "agent")
	expectConfined(t, "the pod's main process (kubectl logs)", logs.stdout+logs.stderr)
	expectLandlockDenied(t, "the pod's main process (kubectl logs)", logs.stdout)

	denied := "denied-kube.example"
	r := k.kubectl("exec", "agent", "--", "sh", "-c", egressScript(denied, k.f.Addr()))
	expectEgress(t, k.f, "kubectl exec (the pod's filter)", denied, r.stdout+r.stderr)
	step(t, start, "confinement and egress checked")

	// The decisions, by the container's id: clawrun finds its pod's log.
	audit := runIn(cmdOpts{}, k.f.wrapperBin(), "--root", k.root(), "audit", "--json", cid)
	if audit.code != 0 {
		t.Fatalf("clawrun audit %s: %v", cid, audit)
	}
	saw := map[string]bool{}
	sc := bufio.NewScanner(strings.NewReader(audit.stdout))
	for sc.Scan() {
		var rec struct {
			Protocol, Host, Destination, Decision string
			Reason                                string
		}
		if json.Unmarshal(sc.Bytes(), &rec) != nil {
			continue
		}
		switch {
		case rec.Host == allowedHost && rec.Decision == "allow" && rec.Protocol != "dns":
			saw["allowed connection"] = true
		case rec.Host == denied && rec.Decision == "deny":
			saw["denied name"] = true
		case strings.HasPrefix(rec.Destination, k.f.Addr()+":") && rec.Decision == "deny":
			saw["IP literal"] = true
		}
	}
	for _, what := range []string{"allowed connection", "denied name", "IP literal"} {
		if !saw[what] {
			t.Errorf("clawrun audit %s: no decision for the %s:\n%s\n%s", shortID(cid), what, audit.stdout, audit.stderr)
		}
	}
	if !t.Failed() {
		t.Logf("clawrun audit %s: %s; the allowed connection, the denied name and the IP literal are there", shortID(cid), strings.TrimSpace(audit.stderr))
	}
}

// testKubeExecAndProbe: a process started by kubectl exec, and the exec
// liveness probe the kubelet runs, are confined by the pod's policy.
func testKubeExecAndProbe(t *testing.T, k *kubeCluster) {
	r := k.kubectl("exec", "agent", "--", "sh", "-c", kubeProbeScript)
	expectConfined(t, "kubectl exec", r.stdout+r.stderr)
	expectLandlockDenied(t, "kubectl exec", r.stdout)

	// The probe runs every 2 s; it has run twice within a minute.
	var log string
	if !waitFor(time.Minute, func() bool {
		log = k.kubectl("exec", "agent", "--", "cat", "/sandbox/probe.log").stdout
		return strings.Count(log, "\n") >= 2
	}) {
		t.Fatalf("the liveness probe did not record two runs in /sandbox/probe.log within a minute: %q", log)
	}
	if strings.Contains(log, "escaped") || !strings.Contains(log, "denied: ") || !strings.Contains(log, "Permission denied") {
		t.Errorf("the exec liveness probe could write /var/log, or was refused otherwise than by Landlock:\n%s", log)
	} else {
		t.Logf("exec liveness probe: confined on every run (it wrote /sandbox, /var/log refused): %q", strings.Split(strings.TrimSpace(log), "\n")[0])
	}
	if n := k.pod(t, "agent").Status.ContainerStatuses[0].RestartCount; n != 0 {
		t.Errorf("the agent was restarted %d times: its liveness probe failed", n)
	}
}

// testKubeRestart: a container that exits is restarted by the kubelet,
// confined again; kubectl logs shows both runs.
func testKubeRestart(t *testing.T, k *kubeCluster) {
	start := time.Now()
	// /sandbox is an emptyDir: it outlives the first container.
	script := kubeProbeScript + `
if [ -e /sandbox/ran ]; then echo "second run"; ` + loopScript + `; fi
touch /sandbox/ran; echo "first run"; exit 3`
	pod := k.agentPod(t, "restarter", nil, script)
	pod["spec"].(map[string]any)["restartPolicy"] = "Always"
	k.apply(t, pod)
	defer k.kubectl("delete", "pod", "restarter", "--wait=false")
	var p kubePod
	if !waitFor(3*time.Minute, func() bool {
		p = k.pod(t, "restarter")
		s := p.Status.ContainerStatuses
		return len(s) == 1 && s[0].RestartCount >= 1 && s[0].State.Running != nil
	}) {
		t.Fatalf("the container was not restarted and running within 3 minutes: %+v\n%s", p.Status, k.kubectl("describe", "pod", "restarter").stdout)
	}
	step(t, start, "restarted by the kubelet")
	s := p.Status.ContainerStatuses[0]
	if s.LastState.Terminated == nil || s.LastState.Terminated.ExitCode != 3 {
		t.Errorf("the first run's end: %+v, want exit status 3", s.LastState.Terminated)
	}
	first := k.kubectl("logs", "restarter", "--previous")
	if !strings.Contains(first.stdout, "first run") {
		t.Errorf("kubectl logs --previous: not the first run's output: %v", first)
	}
	expectConfined(t, "the first run (kubectl logs --previous)", first.stdout)
	second := k.kubectl("logs", "restarter")
	if !strings.Contains(second.stdout, "second run") {
		t.Errorf("kubectl logs: not the second run's output: %v", second)
	}
	expectConfined(t, "the restarted container (kubectl logs)", second.stdout)
	expectLandlockDenied(t, "the restarted container (kubectl logs)", second.stdout)
	cid := p.containerID()
	if s.LastState.Terminated != nil && strings.HasSuffix(s.LastState.Terminated.ContainerID, cid) {
		t.Errorf("the restarted container has the first one's id %s", cid)
	}
	expectStateConfined(t, stateOf(t, k.root(), cid), "agent-default", true)
}

// testKubeDeleteGrace: a pod whose process ignores SIGTERM, deleted with
// a grace period: the kubelet waits for it, then kills; nothing of the pod
// is left (processes, network namespace and its nft table, egress filter,
// cgroups, clawrun state, the kubelet's pod directory).
func testKubeDeleteGrace(t *testing.T, k *kubeCluster) {
	start := time.Now()
	const grace = 4
	pod := k.agentPod(t, "doomed", nil, kubeProbeScript+"\ntrap 'echo TERM ignored' TERM; while :; do sleep 1; done")
	k.apply(t, pod)
	defer k.kubectl("delete", "pod", "doomed", "--grace-period=0", "--wait=false")
	k.waitReady(t, "doomed")
	p := k.pod(t, "doomed")
	cid := p.containerID()
	st := stateOf(t, k.root(), cid)
	sandbox := sandboxOf(t, st)
	sb := stateOf(t, k.root(), sandbox)
	netns := netnsOf(t, sb.Bundle)
	supervisor := egressSupervisor(t, k.root(), sandbox)
	if out := run("nsenter", "--net="+netns, "nft", "list", "tables"); !strings.Contains(out.stdout, "clawrun") {
		t.Fatalf("no clawrun nft table in the pod's network namespace %s: %v", netns, out)
	}
	cgroups := podCgroups(p.Metadata.UID)
	if len(cgroups) == 0 {
		t.Fatalf("no cgroup of pod %s under kubepods", p.Metadata.UID)
	}
	podDir := filepath.Join(k.dir, "kubelet", "pods", p.Metadata.UID)
	step(t, start, "pod doomed running: container %s (pid %d), sandbox %s (pid %d), filter %d, netns %s, %d cgroups",
		shortID(cid), st.Pid, shortID(sandbox), sb.Pid, supervisor, netns, len(cgroups))

	t0 := time.Now()
	must(t, k.kubectl("delete", "pod", "doomed", fmt.Sprintf("--grace-period=%d", grace), "--wait", "--timeout=2m"))
	took := time.Since(t0)
	if took < grace*time.Second {
		t.Errorf("kubectl delete --grace-period=%d returned after %v: the container that ignores SIGTERM was not given its grace period", grace, took)
	}
	step(t, start, "deleted in %.1fs (grace period %ds)", took.Seconds(), grace)

	left := func() []string {
		var out []string
		for what, pid := range map[string]int{"container": st.Pid, "sandbox": sb.Pid, "egress filter": supervisor} {
			if pidRuns(pid) {
				out = append(out, fmt.Sprintf("%s process %d", what, pid))
			}
		}
		for _, path := range append([]string{netns, filepath.Join(k.root(), cid), filepath.Join(k.root(), sandbox), podDir}, cgroups...) {
			if exists(path) {
				out = append(out, path)
			}
		}
		ids := listIDs(t, k.root())
		for _, id := range []string{cid, sandbox} {
			if contains(ids, id) {
				out = append(out, "clawrun lists "+shortID(id))
			}
		}
		return out
	}
	// The kubelet stops the sandbox and removes the pod's cgroup and
	// directory just after the API object is gone.
	if !waitFor(time.Minute, func() bool { return len(left()) == 0 }) {
		t.Errorf("a minute after the pod was deleted, still there: %v", left())
	} else {
		step(t, start, "nothing of the pod is left (processes, netns and its nft table, filter, cgroups, clawrun state, pod dir)")
	}
}

// netnsOf is the network namespace a bundle's spec joins.
func netnsOf(t *testing.T, bundle string) string {
	t.Helper()
	var spec struct {
		Linux struct {
			Namespaces []struct {
				Type string `json:"type"`
				Path string `json:"path"`
			} `json:"namespaces"`
		} `json:"linux"`
	}
	data, err := os.ReadFile(filepath.Join(bundle, "config.json"))
	if err == nil {
		err = json.Unmarshal(data, &spec)
	}
	if err != nil {
		t.Fatalf("the spec of %s: %v", bundle, err)
	}
	for _, n := range spec.Linux.Namespaces {
		if n.Type == "network" && n.Path != "" {
			return n.Path
		}
	}
	t.Fatalf("the sandbox %s joins no network namespace by path", bundle)
	return ""
}

// podCgroups lists a pod's cgroups (kubepods/<qos>/pod<uid>, or
// kubepods/pod<uid> for a Guaranteed pod) in every hierarchy.
func podCgroups(uid string) []string {
	var out []string
	for _, pattern := range []string{"/sys/fs/cgroup/*/kubepods/*/pod" + uid, "/sys/fs/cgroup/*/kubepods/pod" + uid} {
		m, _ := filepath.Glob(pattern)
		out = append(out, m...)
	}
	return out
}

// testKubeBadPolicy: a pod whose inline policy is malformed never runs a
// container; clawrun's reason is in the pod's events.
func testKubeBadPolicy(t *testing.T, k *kubeCluster) {
	before := listIDs(t, k.root())
	pod := k.agentPod(t, "misconfigured", map[string]string{"run.clawrun.policy": "", "run.clawrun.policy.inline": "version: 7"}, loopScript)
	k.apply(t, pod)
	defer k.kubectl("delete", "pod", "misconfigured", "--wait=false")
	const reason = "version 7 is not supported"
	var describe string
	if !waitFor(2*time.Minute, func() bool {
		describe = k.kubectl("describe", "pod", "misconfigured").stdout
		return strings.Contains(describe, reason)
	}) {
		t.Fatalf("kubectl describe pod misconfigured: no %q within 2 minutes:\n%s", reason, describe)
	}
	for _, line := range strings.Split(describe, "\n") {
		if strings.Contains(line, reason) {
			t.Logf("kubectl describe: %s", strings.TrimSpace(line))
			break
		}
	}
	p := k.pod(t, "misconfigured")
	if p.Status.Phase != "Pending" {
		t.Errorf("pod misconfigured is %s, want Pending", p.Status.Phase)
	}
	if id := p.containerID(); id != "" {
		t.Errorf("pod misconfigured has a container %s", id)
	}
	if ctrs := strings.Fields(k.c.crictl("ps", "-a", "-q", "--label", "io.kubernetes.pod.uid="+p.Metadata.UID).stdout); len(ctrs) > 0 {
		t.Errorf("containerd has containers of pod misconfigured: %v", ctrs)
	}
	for _, id := range listIDs(t, k.root()) {
		if !contains(before, id) {
			t.Errorf("clawrun runs %s, new since pod misconfigured was created", id)
		}
	}
	must(t, k.kubectl("delete", "pod", "misconfigured", "--wait", "--timeout=1m"))
}

// testKubeTwoPods: two pods on the node, each with an egress filter of its
// own: pod A allows a.test, pod B b.test. Neither reaches the other's
// name (not even its DNS query leaves), each reaches its own.
func testKubeTwoPods(t *testing.T, k *kubeCluster) {
	start := time.Now()
	pods := []struct{ name, own, other string }{
		{"pod-a", "a.test", "b.test"},
		{"pod-b", "b.test", "a.test"},
	}
	for _, p := range pods {
		pod := k.agentPod(t, p.name, map[string]string{"run.clawrun.egress": p.own + ":80"}, loopScript)
		k.apply(t, pod)
		defer k.kubectl("delete", "pod", p.name, "--wait=false")
	}
	for _, p := range pods {
		k.waitReady(t, p.name)
	}
	step(t, start, "pods %s and %s running", pods[0].name, pods[1].name)
	for _, p := range pods {
		// The other pod's name first: nothing of this pod's may have
		// reached the fake internet for it before.
		mark := k.f.Mark()
		r := k.kubectl("exec", p.name, "--", "sh", "-c", twoNamesScript(p.other, p.own))
		out := r.stdout + r.stderr
		if !strings.Contains(out, "own: "+answered+p.own+" ") {
			t.Errorf("%s: its own allowed name %s did not answer through its filter:\n%s", p.name, p.own, out)
		}
		if strings.Contains(out, "other: "+answered) {
			t.Errorf("%s: the other pod's name %s answered:\n%s", p.name, p.other, out)
		}
		var leaked []string
		for _, e := range k.f.Since(mark) {
			if strings.EqualFold(strings.TrimSuffix(e.Name, "."), p.other) {
				leaked = append(leaked, e.String())
			}
		}
		if len(leaked) > 0 {
			t.Errorf("%s: the other pod's name %s reached the fake internet: %v", p.name, p.other, leaked)
		}
		if !t.Failed() {
			t.Logf("%s: %s answers, %s (the other pod's) never left: %q", p.name, p.own, p.other, strings.Split(strings.TrimSpace(out), "\n"))
		}
	}
}

// twoNamesScript fetches, over plain HTTP, the other name then the own
// one, a line each.
func twoNamesScript(other, own string) string {
	return httpGetFunc + fmt.Sprintf(`
echo "other: $(get %s)"
echo "own: $(get %s)"`, other, own)
}

// testKubeFloor: a pod of the RuntimeClass clawrun-agent
// (contrib/kubernetes/runtimeclass-agent.yaml, the handler's BinaryName
// contrib/containerd/clawrun-agent) without any run.clawrun.* annotation
// is confined by the handler's floor, agent-coding: agent-default's files
// and seccomp profile, an HTTPS request to api.github.com is answered by
// the fake internet, a name the floor does not list never leaves, and
// plain HTTP to any name is refused (expectFloorEgress).
func testKubeFloor(t *testing.T, k *kubeCluster) {
	start := time.Now()
	pod := k.agentPod(t, "floored", map[string]string{"run.clawrun.policy": "", "run.clawrun.egress": ""}, kubeProbeScript+"\n"+loopScript)
	pod["spec"].(map[string]any)["runtimeClassName"] = "clawrun-agent"
	k.apply(t, pod)
	defer k.kubectl("delete", "pod", "floored", "--wait=false")
	k.waitReady(t, "floored")
	step(t, start, "pod floored running (RuntimeClass clawrun-agent, no annotations)")

	cid := k.pod(t, "floored").containerID()
	st := stateOf(t, k.root(), cid)
	if len(st.Annotations) > 0 {
		for key := range st.Annotations {
			if strings.HasPrefix(key, "run.clawrun.") {
				t.Errorf("the pod has a policy annotation %s: the floor alone must confine it", key)
			}
		}
	}
	expectStateConfined(t, st, "agent-coding", true)
	logs := k.kubectl("logs", "floored")
	expectConfined(t, "the floor (kubectl logs)", logs.stdout+logs.stderr)
	expectLandlockDenied(t, "the floor (kubectl logs)", logs.stdout)

	expectFloorEgress(t, k.f, "kubectl exec (the floor)", "denied-floor.example", func(script string) result {
		return k.kubectl("exec", "floored", "--", "sh", "-c", script)
	})
}
