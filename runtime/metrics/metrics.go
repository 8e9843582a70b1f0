// Package metrics exposes, in Prometheus' format, what clawrun enforces
// on the containers of a node and what their egress filters decided. It
// holds no state: every scrape reads the containers' state dirs afresh,
// the runtime's records and the counts each filter's worker writes there
// every second (filter.Stats), so that a scrape costs a few small file
// reads per container and nothing on the filters' decision paths.
package metrics

import (
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/clawrun/clawrun/egress/filter"
	"github.com/clawrun/clawrun/runtime"
)

// Observer lists the containers of the node (runtime.Runtime.Observe
// over the roots).
type Observer func() ([]runtime.Observation, error)

// The labels that name a container: its id and, under Kubernetes, its
// pod's name and namespace. Never a host name, nor anything else a
// container chooses at will: the series stay bounded.
var containerLabels = []string{"container_id", "pod", "namespace"}

func withContainer(labels ...string) []string {
	return append(append([]string{}, containerLabels...), labels...)
}

// The metrics' descriptions, one per name (see the README's Metrics).
var (
	descContainers = prometheus.NewDesc("clawrun_containers",
		"Containers under the runtime's roots, by whether a policy confines them.",
		[]string{"confined"}, nil)
	descConfined = prometheus.NewDesc("clawrun_confined_containers",
		"Confined containers by what is enforced: Landlock status and ABI, and their egress filter (off, own, shared).",
		[]string{"landlock", "landlock_abi", "egress"}, nil)
	descConfinedInfo = prometheus.NewDesc("clawrun_confined_container_info",
		"One series per confined container, with what is enforced on it.",
		withContainer("landlock", "landlock_abi", "seccomp", "egress"), nil)
	descStartup = prometheus.NewDesc("clawrun_confined_startup_seconds",
		"Start-up time of the confined containers present: from their create (or run) until they were confined and their egress filter up.",
		nil, nil)
	descDecisions = prometheus.NewDesc("clawrun_egress_decisions_total",
		"Egress decisions of a container's filter by protocol (dns, tls, http, https, tcp), decision (allow, deny, audit) and reason.",
		withContainer("protocol", "decision", "reason"), nil)
	descDNSAnswers = prometheus.NewDesc("clawrun_egress_dns_answers_total",
		"DNS queries the filter's resolver answered (allowed, or allowed in audit mode).",
		containerLabels, nil)
	descDNSDenials = prometheus.NewDesc("clawrun_egress_dns_denials_total",
		"DNS queries the filter's resolver denied.",
		containerLabels, nil)
	descBytes = prometheus.NewDesc("clawrun_egress_bytes_total",
		"Bytes the filter's proxy carried, up (to the upstream) and down (to the container), counted when each connection closes.",
		withContainer("direction"), nil)
	descOpenConns = prometheus.NewDesc("clawrun_egress_open_connections",
		"Connections open through the filter's proxy, decided or not.",
		containerLabels, nil)
	descFilterState = prometheus.NewDesc("clawrun_egress_filter_state",
		"1 for the state the filter is in (starting, running, restarting, failed, stopped, down: its supervisor is gone).",
		withContainer("state"), nil)
	descRestarts = prometheus.NewDesc("clawrun_egress_filter_restarts_total",
		"Times the filter's worker died and was restarted.",
		containerLabels, nil)
	descGeneration = prometheus.NewDesc("clawrun_egress_policy_generation",
		"The generation of network policy the filter's worker enforces (it grows with each hot reload).",
		containerLabels, nil)
	descStatsTime = prometheus.NewDesc("clawrun_egress_stats_timestamp_seconds",
		"When the filter's worker last wrote its counts (every second while it runs).",
		containerLabels, nil)
)

// stateDown is the filter_state of a filter whose supervisor is gone.
const stateDown = "down"

// filterStates are every value of the filter_state label: the filter's
// own states (egress/filter), and stateDown.
var filterStates = []string{string(filter.StateStarting), string(filter.StateRunning), string(filter.StateRestarting),
	string(filter.StateFailed), string(filter.StateStopped), stateDown}

// StartupBuckets are the start-up histogram's upper bounds, in seconds:
// a confined create takes tens of milliseconds, seconds when the egress
// filter or the node is slow.
var StartupBuckets = []float64{0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10}

// Collector is the Prometheus collector of the node's containers.
type Collector struct {
	observe Observer
}

// NewCollector collects what observe reports, at every scrape.
func NewCollector(observe Observer) *Collector { return &Collector{observe: observe} }

// Describe sends every metric's description.
func (c *Collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descContainers, descConfined, descConfinedInfo, descStartup,
		descDecisions, descDNSAnswers, descDNSDenials, descBytes, descOpenConns, descFilterState,
		descRestarts, descGeneration, descStatsTime} {
		ch <- d
	}
}

// Collect reads the containers and sends their metrics. When they
// cannot be listed, the scrape fails with the error (an invalid metric)
// rather than report none.
func (c *Collector) Collect(ch chan<- prometheus.Metric) {
	obs, err := c.observe()
	if err != nil {
		ch <- prometheus.NewInvalidMetric(descContainers, err)
		return
	}
	collectNode(ch, obs)
	for _, o := range obs {
		if o.Confinement != nil {
			collectConfined(ch, o)
		}
		if o.Filter != nil {
			collectFilter(ch, o)
		}
	}
}

// collectNode sends the node's totals: containers, confined containers
// by enforcement, start-up times.
func collectNode(ch chan<- prometheus.Metric, obs []runtime.Observation) {
	confined, unconfined := 0, 0
	type enforcement struct{ landlock, abi, egress string }
	byEnforcement := map[enforcement]int{}
	startup := newHistogram(StartupBuckets)
	for _, o := range obs {
		if o.Confinement == nil {
			unconfined++
			continue
		}
		confined++
		byEnforcement[enforcement{landlockStatus(o), landlockABI(o), egressMode(o)}]++
		if o.Startup > 0 {
			startup.observe(o.Startup.Seconds())
		}
	}
	ch <- prometheus.MustNewConstMetric(descContainers, prometheus.GaugeValue, float64(confined), "true")
	ch <- prometheus.MustNewConstMetric(descContainers, prometheus.GaugeValue, float64(unconfined), "false")
	for e, n := range byEnforcement {
		ch <- prometheus.MustNewConstMetric(descConfined, prometheus.GaugeValue, float64(n), e.landlock, e.abi, e.egress)
	}
	ch <- prometheus.MustNewConstHistogram(descStartup, startup.count, startup.sum, startup.buckets)
}

// collectConfined sends what is enforced on one confined container.
func collectConfined(ch chan<- prometheus.Metric, o runtime.Observation) {
	ch <- prometheus.MustNewConstMetric(descConfinedInfo, prometheus.GaugeValue, 1,
		o.ID, o.Pod, o.Namespace, landlockStatus(o), landlockABI(o), o.Confinement.Seccomp.Profile, egressMode(o))
}

// collectFilter sends the status and the counts of a container's filter.
func collectFilter(ch chan<- prometheus.Metric, o runtime.Observation) {
	id := []string{o.ID, o.Pod, o.Namespace}
	counter := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, v, append(id, labels...)...)
	}
	gauge := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, append(id, labels...)...)
	}
	if st := o.Filter.Status; st != nil {
		state := string(st.State)
		if o.Filter.Down {
			state = stateDown
		}
		for _, s := range filterStates {
			gauge(descFilterState, boolValue(s == state), s)
		}
		counter(descRestarts, float64(st.Restarts))
		gauge(descGeneration, float64(st.Generation))
	}
	s := o.Filter.Stats
	if s == nil {
		return
	}
	var answers, denials int64
	for _, d := range s.Decisions {
		counter(descDecisions, float64(d.Count), d.Protocol, d.Decision, d.Reason)
		if d.Protocol == "dns" {
			if d.Decision == "deny" {
				denials += d.Count
			} else {
				answers += d.Count
			}
		}
	}
	counter(descDNSAnswers, float64(answers))
	counter(descDNSDenials, float64(denials))
	counter(descBytes, float64(s.BytesOut), "up")
	counter(descBytes, float64(s.BytesIn), "down")
	gauge(descOpenConns, float64(s.OpenConns))
	gauge(descStatsTime, float64(s.Time.UnixNano())/float64(time.Second))
}

func landlockStatus(o runtime.Observation) string { return string(o.Confinement.Landlock.Status) }

// landlockABI is the ABI the launcher found, "" before it reported.
func landlockABI(o runtime.Observation) string {
	if o.Confinement.Landlock.ABI == 0 {
		return ""
	}
	return strconv.Itoa(o.Confinement.Landlock.ABI)
}

// egressMode says whose filter decides a confined container's traffic:
// none (off), its own, or another container's (its pod's sandbox's).
func egressMode(o runtime.Observation) string {
	switch {
	case o.Filter != nil:
		return "own"
	case o.Confinement.Egress == "off":
		return "off"
	}
	return "shared"
}

func boolValue(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

// histogram is a constant histogram's counts, cumulative as Prometheus
// has them.
type histogram struct {
	count   uint64
	sum     float64
	buckets map[float64]uint64
}

func newHistogram(bounds []float64) *histogram {
	h := &histogram{buckets: map[float64]uint64{}}
	for _, b := range bounds {
		h.buckets[b] = 0
	}
	return h
}

func (h *histogram) observe(v float64) {
	h.count++
	h.sum += v
	for b := range h.buckets {
		if v <= b {
			h.buckets[b]++
		}
	}
}
