package main

// The counters' cost: what the filter's counting of every decision (the
// counts `clawrun metrics` serves) adds, measured as an A/B in the same
// run: the filtered container, whose filter counts, against the
// uncounted one, the same bundle and policy in a namespace of its own,
// created with uncountedEnv so that its filter keeps no counters.

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
)

// uncountedEnv=1 in the runtime's environment starts a filter without its
// counters (runtime/egress.go): a knob of this benchmark only.
const uncountedEnv = "CLAWRUN_BENCH_UNCOUNTED"

// countingAB runs the counting and the uncounted filter's containers in a
// shuffled order every round: TLS connect + handshake + 1 request, then
// bulk transfers both ways; then it checks that the knob did what it
// says.
func (dr *driver) countingAB(m *measurements, check func(*ctr, string, result)) {
	o := dr.o
	on, off := dr.filter, dr.uncounted
	for round := range o.rounds {
		for _, c := range dr.pair(on, off) {
			r := dr.client(c, dr.tlsArgs("latency")(c, o.block, 2)...)
			check(c, "TLS connections (counters A/B)", r)
			m.countLatency[c.label] = append(m.countLatency[c.label], r.Samples)
			for _, s := range r.Samples {
				dr.rawf("count-tls", c.label, round, s)
			}
		}
	}
	size := int64(o.bulkMiB) << 20
	for _, dir := range []string{"down", "up"} {
		for round := range o.bulkRuns {
			for _, c := range dr.pair(on, off) {
				r, mibs := dr.bulkRun(c, dir, size)
				check(c, "bulk "+dir+" (counters A/B)", r)
				if mibs == 0 {
					continue
				}
				if m.countBulk[c.label] == nil {
					m.countBulk[c.label] = map[string][]float64{}
				}
				m.countBulk[c.label][dir] = append(m.countBulk[c.label][dir], mibs)
				dr.rawf("count-bulk-"+dir+"-mibs", c.label, round, int64(mibs))
			}
		}
	}
	var err error
	if m.countCheck, err = dr.countersState(); err != nil {
		m.errors = append(m.errors, "the counters' A/B measured nothing: "+err.Error())
	}
}

// countersState checks that the filtered container's filter counts (its
// stats file has its TLS connections) and the uncounted one's does not
// (no stats file), and says what it found.
func (dr *driver) countersState() (string, error) {
	var counted struct {
		Decisions []struct {
			Protocol, Decision string
			Count              int64
		} `json:"decisions"`
	}
	data, err := os.ReadFile(filepath.Join(dr.o.root, dr.filter.id, "egress-stats.json"))
	if err != nil {
		return "", fmt.Errorf("the %s container's filter wrote no counts: %v", dr.filter.label, err)
	}
	if err := json.Unmarshal(data, &counted); err != nil {
		return "", fmt.Errorf("the %s container's counts: %v", dr.filter.label, err)
	}
	var tls int64
	for _, d := range counted.Decisions {
		if d.Protocol == "tls" && d.Decision == "allow" {
			tls += d.Count
		}
	}
	if want := int64(dr.o.rounds * (dr.o.block + 2)); tls < want {
		return "", fmt.Errorf("the %s container's filter counted %d allowed TLS connections, want at least %d", dr.filter.label, tls, want)
	}
	uncounted := filepath.Join(dr.o.root, dr.uncounted.id, "egress-stats.json")
	if _, err := os.Stat(uncounted); err == nil {
		return "", fmt.Errorf("the %s container's filter counts (%s exists)", dr.uncounted.label, uncounted)
	}
	return fmt.Sprintf("the counting filter's stats file holds %d allowed TLS connections; the uncounted filter has none", tls), nil
}

// renderCounting writes the counters' table and what it measured.
func (dr *driver) renderCounting(sb *strings.Builder, m *measurements, rng *rand.Rand) {
	o := dr.o
	off, on := o.uncountedName, o.filterName
	var rows []row
	latencyRows(&rows, "TLS connect + handshake + 1 request", m.countLatency[off], m.countLatency[on], o.countLatencyTarget, rng)
	for _, dir := range []string{"up", "down"} {
		name := map[string]string{"up": "upload", "down": "download"}[dir]
		rows = append(rows, ratioRow(fmt.Sprintf("Bulk %s, %d MiB, one stream (median of %d)", name, o.bulkMiB, o.bulkRuns),
			m.countBulk[off][dir], m.countBulk[on][dir], o.countThroughputTarget, rng))
	}
	w := func(format string, a ...any) { fmt.Fprintf(sb, format, a...) }
	w("\n| the counters' cost (`clawrun metrics`) | filter without counters | filter counting (as shipped) | ratio / added | target | result |\n")
	w("| --- | --: | --: | --: | --- | --- |\n")
	for _, r := range rows {
		w("| %s | %s | %s | %s | %s | %s |\n", r.metric, r.direct, r.filtered, r.delta, r.target, r.result)
	}
	w("\nThe counters' cost, an A/B in the same run: the filtered container (its filter counts every decision and writes\n")
	w("the counts each second, as every filter does) against a fourth container, the same bundle and policy in a network\n")
	w("namespace of its own, created with `%s=1`, a knob of this benchmark only that starts its filter without counters.\n", uncountedEnv)
	w("The two alternate in a shuffled order every round, after the phases above: %d rounds of %d TLS connections, then %d\n", o.rounds, o.block, o.bulkRuns)
	w("transfers per direction. Added = p50(counting) − p50(without); ratio = median(counting) / median(without).\n")
	if m.countCheck != "" {
		w("Checked after the runs: %s.\n", m.countCheck)
	}
}
