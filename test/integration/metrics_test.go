package integration

import (
	"fmt"
	"io"
	"maps"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// metricsPolicy allows allowed.test over TLS and plain HTTP.
const metricsPolicy = `  web:
    endpoints:
      - {host: allowed.test, ports: [80, 443]}
`

// TestMetrics drives allowed and denied DNS, TLS and HTTP through a
// filtered container and scrapes `clawrun metrics serve`: every count
// moves by exactly what was sent, the bytes by what the proxy carried,
// the open connections follow a connection held open, and the counts
// survive the filter's worker being killed. `clawrun metrics --textfile`
// writes the same metrics.
func TestMetrics(t *testing.T) {
	r, fn := egressRuntime(t)
	c := fn.startPolicy(r, policyDoc(metricsPolicy),
		annotate("io.kubernetes.cri.sandbox-name", "agent-pod", "io.kubernetes.cri.sandbox-namespace", "agents"))
	srv := startMetricsServer(r)
	ctr := map[string]string{"container_id": c.id, "pod": "agent-pod", "namespace": "agents"}
	with := func(kv ...string) map[string]string {
		l := maps.Clone(ctr)
		for i := 0; i+1 < len(kv); i += 2 {
			l[kv[i]] = kv[i+1]
		}
		return l
	}
	decisions := func(protocol, decision, reason string) series {
		return series{"clawrun_egress_decisions_total", with("protocol", protocol, "decision", decision, "reason", reason)}
	}

	// The filter and what is enforced on the container.
	before := srv.waitScrape(t, "the filter's first counts", func(s scrape) bool {
		return s.has(series{"clawrun_egress_stats_timestamp_seconds", ctr})
	})
	st := r.fullState(c.id).Clawrun
	before.expect(t,
		is(series{"clawrun_egress_filter_state", with("state", "running")}, 1),
		is(series{"clawrun_egress_filter_state", with("state", "failed")}, 0),
		is(series{"clawrun_egress_policy_generation", ctr}, 1),
		is(series{"clawrun_egress_filter_restarts_total", ctr}, 0),
		is(series{"clawrun_egress_open_connections", ctr}, 0),
		is(series{"clawrun_containers", map[string]string{"confined": "true"}}, 1),
		is(series{"clawrun_confined_containers", map[string]string{"landlock": st.Landlock.Status, "landlock_abi": abiLabel(st.Landlock.ABI), "egress": "own"}}, 1),
		is(series{"clawrun_confined_container_info", with("landlock", st.Landlock.Status, "landlock_abi", abiLabel(st.Landlock.ABI), "seccomp", st.Seccomp.Profile, "egress", "own")}, 1),
		is(series{"clawrun_confined_startup_seconds_count", nil}, 1),
	)
	if v := before.value(series{"clawrun_confined_startup_seconds_sum", nil}); v <= 0 || v > 60 {
		t.Errorf("start-up time %v s, want a few seconds at most", v)
	}

	// Traffic, addressed by IP so that only the queries sent here are
	// DNS decisions.
	allowedIP := fn.ip(hAllowed)
	dnsQuery := func(name, out string) echeck {
		return echeck{name: "query " + name, args: []string{"dns", fn.ip(hDNS), name, "A"}, out: out}
	}
	tlsTo := func(sni, out string) echeck {
		return echeck{name: "TLS " + sni, args: []string{"tls", allowedIP, "443", sni}, out: out}
	}
	httpTo := func(host, out string) echeck {
		return echeck{name: "HTTP " + host, args: []string{"http", allowedIP, "80", host}, out: out}
	}
	c.checks(
		dnsQuery("allowed.test", "OK A:"+allowedIP),
		dnsQuery("allowed.test", "OK A:"+allowedIP),
		dnsQuery("denied.test", "ERR NXDOMAIN"),
		dnsQuery("other.test", "ERR NXDOMAIN"),
		dnsQuery("denied.test", "ERR NXDOMAIN"),
		tlsTo("allowed.test", "OK cn=allowed.test verify=ok"),
		tlsTo("allowed.test", "OK cn=allowed.test verify=ok"),
		tlsTo("denied.test", "ERR EOF|ERR ECONNRESET"),
		httpTo("allowed.test", "OK 200 host=allowed.test"),
		httpTo("denied.test", "OK 403 clawrun: egress to denied.test:80 denied (not_allowed)"),
		httpTo("denied.test", "OK 403 clawrun: egress to denied.test:80 denied (not_allowed)"),
	)
	after := srv.waitMoved(t, before,
		is(decisions("dns", "allow", "allowed"), 2),
		is(decisions("dns", "deny", "not_allowed"), 3),
		is(decisions("tls", "allow", "allowed"), 2),
		is(decisions("tls", "deny", "not_allowed"), 1),
		is(decisions("http", "allow", "allowed"), 1),
		is(decisions("http", "deny", "not_allowed"), 2),
		is(series{"clawrun_egress_dns_answers_total", ctr}, 2),
		is(series{"clawrun_egress_dns_denials_total", ctr}, 3),
	)
	if got := after.sum("clawrun_egress_decisions_total") - before.sum("clawrun_egress_decisions_total"); got != 11 {
		t.Errorf("all decisions moved by %v, want the 11 sent:\n%s", got, after.text)
	}

	// Bytes: one download; up by its request, down by what the filter
	// logged it carried, the body and more.
	const body = 100000
	path := "/download?bytes=" + strconv.Itoa(body)
	lm := c.logMark()
	c.check(echeck{name: "a download", args: []string{"http", allowedIP, "80", "allowed.test", "-", path}, out: "OK 200 "})
	carried := c.waitDecision(lm, connWant("http", "allowed.test", 80, "allow", "allowed"))
	request := "GET " + path + " HTTP/1.1\r\nHost: allowed.test\r\nUser-Agent: probe\r\n\r\n"
	if carried.BytesOut != int64(len(request)) || carried.BytesIn < body {
		t.Errorf("the download's decision: %d B out, %d B in; want %d out (its request), more than %d in", carried.BytesOut, carried.BytesIn, len(request), body)
	}
	up := series{"clawrun_egress_bytes_total", with("direction", "up")}
	down := series{"clawrun_egress_bytes_total", with("direction", "down")}
	srv.waitMoved(t, after,
		is(up, float64(len(request))),
		is(down, float64(carried.BytesIn)),
		is(decisions("http", "allow", "allowed"), 1))

	// A connection held open, which sends nothing: open while it is,
	// then decided (unknown_protocol) when it closes.
	conn := c.netnsDial(allowedIP, 443)
	held := srv.waitScrape(t, "the held connection counted open", func(s scrape) bool {
		return s.value(series{"clawrun_egress_open_connections", ctr}) == 1
	})
	conn.Close()
	srv.waitScrape(t, "the held connection counted closed", func(s scrape) bool {
		return s.value(series{"clawrun_egress_open_connections", ctr}) == 0
	})
	afterHeld := srv.waitMoved(t, held, is(decisions("tcp", "deny", "unknown_protocol"), 1))

	// The worker killed: the supervisor restarts it, and the counts go on
	// from where they were.
	stBefore := c.status()
	killed := float64(time.Now().UnixNano()) / 1e9
	if err := syscall.Kill(stBefore.Worker, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, "a new worker", func() bool {
		now := c.status()
		return now.State == "running" && now.Worker != stBefore.Worker && pidAlive(now.Worker)
	})
	// Once the new worker has written its own counts.
	restarted := srv.waitScrape(t, "the restart counted and the new worker's counts", func(s scrape) bool {
		return s.value(series{"clawrun_egress_filter_restarts_total", ctr}) == 1 &&
			s.value(series{"clawrun_egress_stats_timestamp_seconds", ctr}) > killed
	})
	for _, name := range []string{"clawrun_egress_decisions_total", "clawrun_egress_bytes_total"} {
		if got, want := restarted.sum(name), afterHeld.sum(name); got != want {
			t.Errorf("%s after the worker's restart: %v, want %v as before it", name, got, want)
		}
	}
	c.check(dnsQuery("denied.test", "ERR NXDOMAIN"))
	srv.waitMoved(t, restarted, is(decisions("dns", "deny", "not_allowed"), 1))

	// The textfile: the same metrics, in DIR/clawrun.prom, and no
	// temporary file left beside it.
	dir := t.TempDir()
	r.ok("metrics", "--textfile", dir)
	data, err := os.ReadFile(filepath.Join(dir, "clawrun.prom"))
	if err != nil {
		t.Fatal(err)
	}
	file := parseScrape(t, string(data))
	last := srv.scrape(t)
	for _, s := range []series{decisions("dns", "deny", "not_allowed"), up, down} {
		if file.value(s) != last.value(s) || !file.has(s) {
			t.Errorf("textfile %s = %v, the server says %v", s, file.value(s), last.value(s))
		}
	}
	if ents, _ := os.ReadDir(dir); len(ents) != 1 {
		t.Errorf("the textfile's directory holds %d files, want clawrun.prom alone", len(ents))
	}

	// No host name is ever a label.
	for _, host := range []string{"allowed.test", "denied.test", "other.test"} {
		if strings.Contains(last.text, host) {
			t.Errorf("the metrics name the host %s:\n%s", host, last.text)
		}
	}
}

func abiLabel(abi int) string {
	if abi == 0 {
		return ""
	}
	return strconv.Itoa(abi)
}

// metricsServer is a running `clawrun metrics serve`.
type metricsServer struct{ url string }

var servingLine = regexp.MustCompile(`serving (http://\S+/metrics)`)

// startMetricsServer serves the runtime's metrics on a free port of the
// loopback and returns once it says where.
func startMetricsServer(r *rtest) *metricsServer {
	r.t.Helper()
	p := r.startBG(runOpts{Timeout: 10 * time.Minute}, "metrics", "serve", "--listen", "127.0.0.1:0")
	var url string
	waitFor(r.t, 10*time.Second, "metrics serve to listen", func() bool {
		if m := servingLine.FindStringSubmatch(readFile(p.stderrPath)); m != nil {
			url = m[1]
		}
		return url != ""
	})
	return &metricsServer{url: url}
}

// series names one time series: a metric and all its labels.
type series struct {
	name   string
	labels map[string]string
}

func (s series) String() string { return fmt.Sprintf("%s%v", s.name, s.labels) }

// scrape is one response of /metrics, parsed.
type scrape struct {
	text     string
	families map[string]*dto.MetricFamily
}

func (m *metricsServer) scrape(t *testing.T) scrape {
	t.Helper()
	resp, err := http.Get(m.url)
	if err != nil {
		t.Fatalf("scrape: %v", err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("scrape: %s %v\n%s", resp.Status, err, data)
	}
	return parseScrape(t, string(data))
}

// parseScrape parses the text format with Prometheus' own parser.
func parseScrape(t *testing.T, text string) scrape {
	t.Helper()
	p := expfmt.NewTextParser(model.UTF8Validation)
	families, err := p.TextToMetricFamilies(strings.NewReader(text))
	if err != nil {
		t.Fatalf("the metrics do not parse: %v\n%s", err, text)
	}
	return scrape{text: text, families: families}
}

// find returns the sample of s; a histogram's _count and _sum are found
// in its family.
func (s scrape) find(want series) (float64, bool) {
	name, part := want.name, ""
	for _, suffix := range []string{"_count", "_sum"} {
		if base, ok := strings.CutSuffix(name, suffix); ok && s.families[base].GetType() == dto.MetricType_HISTOGRAM {
			name, part = base, suffix
		}
	}
	f := s.families[name]
	for _, m := range f.GetMetric() {
		if !labelsAre(m.GetLabel(), want.labels) {
			continue
		}
		switch {
		case part == "_count":
			return float64(m.GetHistogram().GetSampleCount()), true
		case part == "_sum":
			return m.GetHistogram().GetSampleSum(), true
		case m.Counter != nil:
			return m.GetCounter().GetValue(), true
		case m.Gauge != nil:
			return m.GetGauge().GetValue(), true
		}
	}
	return 0, false
}

func labelsAre(got []*dto.LabelPair, want map[string]string) bool {
	if len(got) != len(want) {
		return false
	}
	for _, l := range got {
		if v, ok := want[l.GetName()]; !ok || v != l.GetValue() {
			return false
		}
	}
	return true
}

func (s scrape) has(want series) bool { _, ok := s.find(want); return ok }

// value is the sample of s, 0 when there is none (a count not moved yet).
func (s scrape) value(want series) float64 { v, _ := s.find(want); return v }

// sum adds up every sample of a counter or gauge family.
func (s scrape) sum(name string) float64 {
	var total float64
	for _, m := range s.families[name].GetMetric() {
		total += m.GetCounter().GetValue() + m.GetGauge().GetValue()
	}
	return total
}

// expectation is a series' wanted value (or, for waitMoved, how much it
// moves).
type expectation struct {
	s    series
	want float64
}

func is(s series, want float64) expectation { return expectation{s, want} }

func (s scrape) expect(t *testing.T, es ...expectation) {
	t.Helper()
	for _, e := range es {
		if v, ok := s.find(e.s); !ok || v != e.want {
			t.Errorf("%s = %v (present %v), want %v", e.s, v, ok, e.want)
		}
	}
	if t.Failed() {
		t.Logf("the scrape:\n%s", s.text)
	}
}

// waitScrape scrapes until cond holds (the filter writes its counts every
// second).
func (m *metricsServer) waitScrape(t *testing.T, what string, cond func(scrape) bool) scrape {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		s := m.scrape(t)
		if cond(s) {
			return s
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within 10 s; the last scrape:\n%s", what, s.text)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// waitMoved waits until every series moved from before by exactly its
// delta, then checks that they stay there once the filter has written
// its counts again (nothing counted late, nothing twice).
func (m *metricsServer) waitMoved(t *testing.T, before scrape, deltas ...expectation) scrape {
	t.Helper()
	reached := func(s scrape) bool {
		for _, d := range deltas {
			if s.value(d.s)-before.value(d.s) != d.want {
				return false
			}
		}
		return true
	}
	var got scrape
	deadline := time.Now().Add(10 * time.Second)
	for got = m.scrape(t); !reached(got) && time.Now().Before(deadline); got = m.scrape(t) {
		time.Sleep(200 * time.Millisecond)
	}
	stamp := series{"clawrun_egress_stats_timestamp_seconds", nil}
	for _, f := range got.families["clawrun_egress_stats_timestamp_seconds"].GetMetric() {
		stamp.labels = map[string]string{}
		for _, l := range f.GetLabel() {
			stamp.labels[l.GetName()] = l.GetValue()
		}
	}
	written := got.value(stamp)
	later := m.waitScrape(t, "the counts written again", func(s scrape) bool { return s.value(stamp) > written })
	for _, d := range deltas {
		if moved := later.value(d.s) - before.value(d.s); moved != d.want {
			t.Errorf("%s moved by %v, want %v", d.s, moved, d.want)
		}
	}
	if t.Failed() {
		t.Logf("before:\n%s\nafter:\n%s", before.text, later.text)
	}
	return later
}
