package e2e

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// metricsContainer is the installer pod's container that serves the
// node's metrics.
const metricsContainer = "clawrun-metrics"

// withMetricsPort moves a DaemonSet's metrics container, if it has one,
// to port: the node's network is the test machine's, which other tests
// share. Its --listen, its port and the scrape annotation follow.
func withMetricsPort(t *testing.T, podTemplate map[string]any, port int) {
	t.Helper()
	spec := podTemplate["spec"].(map[string]any)
	for _, c := range spec["containers"].([]any) {
		c := c.(map[string]any)
		if c["name"] != metricsContainer {
			continue
		}
		ports, _ := c["ports"].([]any)
		if len(ports) != 1 {
			t.Fatalf("container %s: ports %v, want one", metricsContainer, c["ports"])
		}
		p := ports[0].(map[string]any)
		old := fmt.Sprint(p["containerPort"])
		p["containerPort"] = port
		for i, arg := range c["command"].([]any) {
			if s, _ := arg.(string); strings.HasSuffix(s, ":"+old) {
				c["command"].([]any)[i] = strings.TrimSuffix(s, old) + strconv.Itoa(port)
			}
		}
		ann, _ := podTemplate["metadata"].(map[string]any)["annotations"].(map[string]any)
		if ann["prometheus.io/port"] != old {
			t.Fatalf("annotation prometheus.io/port %v, want the metrics port %s", ann["prometheus.io/port"], old)
		}
		ann["prometheus.io/port"] = strconv.Itoa(port)
	}
}

// nodeMetricsURL is where Prometheus would scrape the installer pod of
// the DaemonSet: its scrape annotations, its IP (the node's: host network)
// and the port named metrics of its metrics container.
func (k *kubeCluster) nodeMetricsURL(t *testing.T, daemonSet string) string {
	t.Helper()
	var pods struct {
		Items []struct {
			Metadata struct {
				Annotations map[string]string `json:"annotations"`
			} `json:"metadata"`
			Spec struct {
				Containers []struct {
					Name  string `json:"name"`
					Ports []struct {
						Name          string `json:"name"`
						ContainerPort int    `json:"containerPort"`
					} `json:"ports"`
				} `json:"containers"`
			} `json:"spec"`
			Status struct {
				PodIP string `json:"podIP"`
			} `json:"status"`
		} `json:"items"`
	}
	out := must(t, k.kubectl("-n", "kube-system", "get", "pods", "-l", "name="+daemonSet, "--field-selector=status.phase=Running", "-o", "json"))
	if err := json.Unmarshal([]byte(out), &pods); err != nil || len(pods.Items) != 1 {
		t.Fatalf("the pod of daemonset %s: %v, %d pods:\n%s", daemonSet, err, len(pods.Items), out)
	}
	pod := pods.Items[0]
	port := 0
	for _, c := range pod.Spec.Containers {
		for _, p := range c.Ports {
			if c.Name == metricsContainer && p.Name == "metrics" {
				port = p.ContainerPort
			}
		}
	}
	if port == 0 {
		t.Fatalf("daemonset %s: no container %s with a port named metrics:\n%s", daemonSet, metricsContainer, out)
	}
	ann := pod.Metadata.Annotations
	if ann["prometheus.io/scrape"] != "true" || ann["prometheus.io/port"] != strconv.Itoa(port) {
		t.Errorf("daemonset %s: scrape annotations %v, want prometheus.io/scrape true and prometheus.io/port %d", daemonSet, ann, port)
	}
	return fmt.Sprintf("http://%s:%d%s", pod.Status.PodIP, port, ann["prometheus.io/path"])
}

// nodeScrape is one scrape of a node's metrics, parsed with Prometheus'
// own parser.
type nodeScrape struct {
	text     string
	families map[string]*dto.MetricFamily
}

func scrapeNode(url string) (nodeScrape, error) {
	resp, err := http.Get(url)
	if err != nil {
		return nodeScrape{}, err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		return nodeScrape{}, fmt.Errorf("%s: %s %v\n%s", url, resp.Status, err, data)
	}
	parser := expfmt.NewTextParser(model.UTF8Validation)
	families, err := parser.TextToMetricFamilies(strings.NewReader(string(data)))
	if err != nil {
		return nodeScrape{}, fmt.Errorf("%s: the metrics do not parse: %w\n%s", url, err, data)
	}
	return nodeScrape{text: string(data), families: families}, nil
}

// sum adds up the samples of a counter or gauge family whose labels
// include match.
func (s nodeScrape) sum(name string, match map[string]string) (total float64, found bool) {
	for _, m := range s.families[name].GetMetric() {
		labels := map[string]string{}
		for _, l := range m.GetLabel() {
			labels[l.GetName()] = l.GetValue()
		}
		if hasLabels(labels, match) {
			total += m.GetCounter().GetValue() + m.GetGauge().GetValue()
			found = true
		}
	}
	return total, found
}

func hasLabels(labels, match map[string]string) bool {
	for k, v := range match {
		if labels[k] != v {
			return false
		}
	}
	return true
}

// podMetrics is what the node's metrics must show of a confined pod: its
// containers under its name and namespace and, for each decision, that
// its filter made some; a pod with decisions, that its filter is running
// (which takes the filter's process: the host's PID namespace).
type podMetrics struct {
	name, namespace string
	decisions       []string
}

// unmet is the first of want the scrape does not show, "" if none.
func (s nodeScrape) unmet(want []podMetrics) string {
	for _, p := range want {
		pod := map[string]string{"pod": p.name, "namespace": p.namespace}
		if n, _ := s.sum("clawrun_confined_container_info", pod); n == 0 {
			return fmt.Sprintf("no confined container of pod %s/%s", p.namespace, p.name)
		}
		running := map[string]string{"pod": p.name, "namespace": p.namespace, "state": "running"}
		if n, _ := s.sum("clawrun_egress_filter_state", running); len(p.decisions) > 0 && n == 0 {
			return fmt.Sprintf("pod %s/%s's filter is not running", p.namespace, p.name)
		}
		for _, d := range p.decisions {
			if n, _ := s.sum("clawrun_egress_decisions_total", map[string]string{"pod": p.name, "namespace": p.namespace, "decision": d}); n == 0 {
				return fmt.Sprintf("no %s decision of pod %s/%s's filter", d, p.namespace, p.name)
			}
		}
	}
	return ""
}

// expectNodeMetrics scrapes url until it shows want (the filters write
// their counts every second); it fails with the last scrape.
func expectNodeMetrics(t *testing.T, url string, want ...podMetrics) nodeScrape {
	t.Helper()
	var last nodeScrape
	var why string
	deadline := time.Now().Add(30 * time.Second)
	for {
		s, err := scrapeNode(url)
		if err == nil {
			last, why = s, s.unmet(want)
		} else {
			why = err.Error()
		}
		if err == nil && why == "" {
			t.Logf("the node's metrics (%s):\n%s", url, s.podLines(want))
			return s
		}
		if time.Now().After(deadline) {
			t.Fatalf("the node's metrics (%s): %s within 30 s; the last scrape:\n%s", url, why, last.text)
		}
		time.Sleep(500 * time.Millisecond)
	}
}

// podLines are the scrape's lines of want's pods' decisions and filter
// state.
func (s nodeScrape) podLines(want []podMetrics) string {
	var lines []string
	for _, l := range strings.Split(s.text, "\n") {
		for _, p := range want {
			if strings.Contains(l, `pod="`+p.name+`"`) && (strings.HasPrefix(l, "clawrun_egress_decisions_total") || strings.HasPrefix(l, "clawrun_egress_filter_state") && strings.HasSuffix(l, " 1")) {
				lines = append(lines, l)
			}
		}
	}
	return strings.Join(lines, "\n")
}
