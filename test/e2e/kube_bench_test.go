//go:build kubebench

package e2e

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/clawrun/clawrun/test/bench/stats"
)

// TestKubeStartBench is `make bench`'s pod phase (build tag kubebench: a
// benchmark, not a test of `make e2e`): on one single-node cluster, the
// time from a pod's creation (the API server's answer to its POST is
// not waited for) to its phase Running, polled every 20 ms, for the same
// busybox pod (contrib/kubernetes/agent-pod.yaml) under runc 1.5.2, the
// node's runc, clawrun without a policy and clawrun with agent-default and
// an egress filter. Rounds interleave the rows in a shuffled order, each
// pod deleted (and gone) before the next starts. clawrun's median must be
// at most 1.1 x runc-1.5.2's, judged on the ratio's confidence interval.
//
//	KUBE_BENCH_RUNS    measured pods per row (default 20)
//	KUBE_BENCH_WARMUP  warm-up pods per row (default 2)
//	KUBE_BENCH_OUT     the markdown table's file (default: the test log only)
//	RUNC_152           runc 1.5.2's binary (make bin/runc-1.5.2)
func TestKubeStartBench(t *testing.T) {
	runs, warmup := envInt(t, "KUBE_BENCH_RUNS", 20), envInt(t, "KUBE_BENCH_WARMUP", 2)
	runc := os.Getenv("RUNC_152")
	if !isExecutable(runc) {
		t.Fatalf("RUNC_152=%q: runc 1.5.2's binary is needed (make bin/runc-1.5.2)", runc)
	}
	e := need(t)
	dir := filepath.Join(e.work, "kube-bench-containerd")
	extra := fmt.Sprintf(`
# runc 1.5.2 (the libcontainer clawrun is built on), the baseline.
[plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc152]
  runtime_type = 'io.containerd.runc.v2'

[plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc152.options]
  BinaryName = '%s'
  Root = '%s/runc152'
`, runc, dir)
	k := startKubeClusterWith(t, kubeOptions{name: "kube-bench", clawrun: true, extra: extra})
	must(t, k.kubectl("apply", "-f", filepath.Join(theEnv.repo, "contrib/kubernetes/runtimeclass.yaml")))
	k.apply(t, map[string]any{"apiVersion": "node.k8s.io/v1", "kind": "RuntimeClass", "metadata": map[string]any{"name": "runc152"}, "handler": "runc152"})

	const base, target = "runc-1.5.2", 1.1
	noPolicy := map[string]string{"run.clawrun.policy": "", "run.clawrun.egress": ""}
	rows := []podRow{
		{name: base, class: "runc152", annotations: noPolicy},
		{name: "runc-1.1.5 (Debian, the node's default handler)", annotations: noPolicy},
		{name: "clawrun", class: "clawrun", annotations: noPolicy, target: target},
		{name: "clawrun + agent-default, egress filter", class: "clawrun"},
	}
	b := &podBench{k: k, client: &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{TLSClientConfig: k.admin}}}
	seed := uint64(time.Now().UnixNano())
	rng := rand.New(rand.NewPCG(seed, 1))
	samples := make([][]time.Duration, len(rows))
	start := time.Now()
	for round := range warmup + runs {
		for _, i := range rng.Perm(len(rows)) {
			name := fmt.Sprintf("bench-%d-%d", round, i)
			pod := k.agentPod(t, name, rows[i].annotations, loopScript)
			spec := pod["spec"].(map[string]any)
			spec["terminationGracePeriodSeconds"] = 2
			if rows[i].class == "" {
				delete(spec, "runtimeClassName")
			} else {
				spec["runtimeClassName"] = rows[i].class
			}
			d := b.startPod(t, pod)
			b.deletePod(t, name)
			if round >= warmup {
				samples[i] = append(samples[i], d)
			}
		}
	}
	step(t, start, "%d rounds of %d pods", warmup+runs, len(rows))
	table := podTable(rows, samples, base, runs, warmup, seed, rng)
	t.Logf("\n%s", table)
	if out := os.Getenv("KUBE_BENCH_OUT"); out != "" {
		writeFile(t, out, table, 0o644)
	}
}

type podRow struct {
	name        string
	class       string            // runtimeClassName ("": the default handler)
	annotations map[string]string // merged into agent-pod.yaml's ("" removes)
	target      float64           // the ratio to the baseline it must not exceed (0: none)
}

type podBench struct {
	k      *kubeCluster
	client *http.Client
}

// startPod creates the pod and returns the time until it is Running.
func (b *podBench) startPod(t *testing.T, pod map[string]any) time.Duration {
	t.Helper()
	body, err := json.Marshal(pod)
	if err != nil {
		t.Fatal(err)
	}
	name := pod["metadata"].(map[string]any)["name"].(string)
	t0 := time.Now()
	if code, out := b.do(t, http.MethodPost, "", body); code != http.StatusCreated {
		t.Fatalf("creating pod %s: %d %s", name, code, out)
	}
	for {
		code, out := b.do(t, http.MethodGet, name, nil)
		var p kubePod
		if code == http.StatusOK && json.Unmarshal(out, &p) == nil {
			switch p.Status.Phase {
			case "Running":
				return time.Since(t0)
			case "Failed", "Succeeded":
				t.Fatalf("pod %s: %s", name, out)
			}
		}
		if time.Since(t0) > 2*time.Minute {
			t.Fatalf("pod %s not Running within 2 minutes: %s\n%s", name, out, b.k.kubectl("describe", "pod", name).stdout)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// deletePod deletes the pod and waits until it is gone (the kubelet has
// stopped its containers).
func (b *podBench) deletePod(t *testing.T, name string) {
	t.Helper()
	if code, out := b.do(t, http.MethodDelete, name, nil); code != http.StatusOK {
		t.Fatalf("deleting pod %s: %d %s", name, code, out)
	}
	if !waitFor(2*time.Minute, func() bool { code, _ := b.do(t, http.MethodGet, name, nil); return code == http.StatusNotFound }) {
		t.Fatalf("pod %s not gone within 2 minutes", name)
	}
}

func (b *podBench) do(t *testing.T, method, name string, body []byte) (int, []byte) {
	t.Helper()
	u := b.k.apiURL + "/api/v1/namespaces/default/pods"
	if name != "" {
		u += "/" + name
	}
	req, err := http.NewRequest(method, u, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := b.client.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, u, err)
	}
	defer resp.Body.Close()
	out, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, out
}

// podTable is the markdown table of the rows' samples.
func podTable(rows []podRow, samples [][]time.Duration, base string, runs, warmup int, seed uint64, rng *rand.Rand) string {
	baseline := samples[slices.IndexFunc(rows, func(r podRow) bool { return r.name == base })]
	ms := func(d time.Duration) string { return strconv.FormatFloat(float64(d)/1e6, 'f', 0, 64) }
	var b strings.Builder
	fmt.Fprintf(&b, "### Pod start-up on Kubernetes (`make bench`: TestKubeStartBench)\n\n")
	fmt.Fprintf(&b, "From the pod's creation to its phase Running (polled every 20 ms), busybox in contrib/kubernetes/agent-pod.yaml "+
		"on a single-node Kubernetes %s cluster (containerd 2.2's CRI), %d pods per row after %d warm-up, rounds interleaved "+
		"in a shuffled order (seed %d). %s, kernel %s, load %s.\n\n", kubeVersion, runs, warmup, seed, stats.CPUModel(), stats.Kernel(), stats.LoadAvg())
	fmt.Fprintf(&b, "| runtime | median ms | p10 ms | p90 ms | ratio to %s (95%% CI) | verdict |\n|---|---|---|---|---|---|\n", base)
	for i, r := range rows {
		s := slices.Clone(samples[i])
		slices.Sort(s)
		ratio, verdict := "1", "baseline"
		if r.name != base {
			// Paired by round: the samples in the order they ran.
			lo, hi := stats.RatioCI(samples[i], baseline, 2000, rng)
			m := float64(stats.Median(s)) / float64(stats.Median(baseline))
			ratio = fmt.Sprintf("%.2f (%.2f … %.2f)", m, lo, hi)
			verdict = "—"
			if r.target > 0 {
				verdict = fmt.Sprintf("%s (target ≤ %.2f)", stats.Verdict(lo, hi, r.target, true), r.target)
			}
		}
		fmt.Fprintf(&b, "| %s | %s | %s | %s | %s | %s |\n", r.name, ms(stats.Quantile(s, 0.5)), ms(stats.Quantile(s, 0.1)), ms(stats.Quantile(s, 0.9)), ratio, verdict)
	}
	return b.String()
}

func envInt(t *testing.T, name string, def int) int {
	t.Helper()
	v := os.Getenv(name)
	if v == "" {
		return def
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 1 {
		t.Fatalf("%s=%q: want a positive number", name, v)
	}
	return n
}
