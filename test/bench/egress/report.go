package main

import (
	"fmt"
	"math/rand/v2"
	goruntime "runtime"
	"slices"
	"strings"
	"time"

	"github.com/clawrun/clawrun/test/bench/stats"
)

// row is one line of the table.
type row struct{ metric, direct, filtered, delta, target, result string }

func (dr *driver) render(m *measurements) string {
	o := dr.o
	d, f := o.directName, o.filterName
	rng := rand.New(rand.NewPCG(o.seed, 1))
	var rows []row

	// 1. TLS: connect + handshake + request/response.
	latencyRows(&rows, "TLS connect + handshake + 1 request", m.latency[d], m.latency[f], o.latencyTarget, rng)
	rows = append(rows, row{"TLS, the filter's first connection (cold: its first proxied flow; n=1)",
		ms(m.tlsFirst[d]), ms(m.tlsFirst[f]), plusMS(m.tlsFirst[f] - m.tlsFirst[d]), "—", "—"})
	rows = append(rows, cpuPerConnRow("The filter's CPU per TLS connection (supervisor + worker)", m, "tls", o.connCPUTarget))
	latencyRows(&rows, "TLS: 1 request on an open connection (keep-alive; passed through, not inspected)", m.keepAliveTLS[d], m.keepAliveTLS[f], 0, rng)

	// 2. Bulk.
	bulkRows(&rows, o, m.bulk, d, f, "", o.bulkMiB, rng)
	if len(m.shaped) > 0 {
		bulkRows(&rows, o, m.shaped, d, f, shapedLink(o), o.shapedMiB, rng)
	}

	// 2b. HTTPS inspected by the filter (its own container), against
	// direct HTTPS.
	i := o.inspectName
	latencyRows(&rows, "HTTPS inspected: TLS connect + handshake + 1 request", m.inspectLatency[d], m.inspectLatency[i], o.inspectLatencyTarget, rng)
	rows = append(rows, row{"HTTPS inspected, the filter's first connection (cold: its first leaf certificate and upstream connection; n=1)",
		ms(m.inspectFirst[d]), ms(m.inspectFirst[i]), plusMS(m.inspectFirst[i] - m.inspectFirst[d]), "—", "—"})
	rows = append(rows, cpuPerConnRow("HTTPS inspected: the filter's CPU per connection and its first request", m, "tls-inspected", 0))
	latencyRows(&rows, "HTTPS inspected: 1 request on an open connection (keep-alive)", m.keepAlive[d], m.keepAlive[i], o.keepAliveTarget, rng)
	if len(m.inspectShaped) > 0 {
		rows = append(rows, ratioRow(fmt.Sprintf("HTTPS inspected: download%s, %d MiB, one stream (median of %d)", shapedLink(o), o.shapedMiB, o.bulkRuns),
			m.inspectShaped[d], m.inspectShaped[i], o.inspectBulkTarget, rng))
	}

	// 3. Many connections at once.
	worst := func(rs []result) (est, echo int) {
		est, echo = -1, -1
		for _, r := range rs {
			if est < 0 || r.Established < est {
				est = r.Established
			}
			if echo < 0 || r.Echoed < echo {
				echo = r.Echoed
			}
		}
		return
	}
	de, dec := worst(m.conns[d])
	fe, fec := worst(m.conns[f])
	verdict := stats.Pass
	if fe != o.conns || fec != o.conns {
		verdict = stats.Fail
	}
	rows = append(rows, row{
		fmt.Sprintf("%s concurrent connections: established / echoed (worst of %d)", thousands(o.conns), o.connRuns),
		fmt.Sprintf("%d / %d", de, dec), fmt.Sprintf("%d / %d", fe, fec), "—",
		fmt.Sprintf("all %s", thousands(o.conns)), verdict})
	connTime := func(rs []result, est bool) time.Duration {
		var v []time.Duration
		for _, r := range rs {
			if est {
				v = append(v, time.Duration(r.EstablishNS))
			} else {
				v = append(v, time.Duration(r.EchoNS))
			}
		}
		return stats.Median(v)
	}
	for _, est := range []bool{true, false} {
		what := "time until all established (dial, upgrade request, 101 back)"
		if !est {
			what = "then one byte echoed on each"
		}
		dt, ft := connTime(m.conns[d], est), connTime(m.conns[f], est)
		target, verdict := "—", "—"
		if est && dt > 0 {
			target = fmt.Sprintf("≤ %.2f×", o.concurrentTarget)
			verdict = stats.Pass
			if float64(ft)/float64(dt) > o.concurrentTarget {
				verdict = stats.Fail
			}
		}
		rows = append(rows, row{fmt.Sprintf("%s concurrent: %s, median", thousands(o.conns), what),
			ms(dt), ms(ft), ratioOrDash(float64(ft), float64(dt)), target, verdict})
	}

	// 4. DNS.
	rows = append(rows, row{"DNS A " + o.name + ", the filter's first query (n=1)",
		ms(m.dnsFirst[d]), ms(m.dnsFirst[f]), plusMS(m.dnsFirst[f] - m.dnsFirst[d]), "—", "—"})
	dd, fd := flatten(m.dns[d]), flatten(m.dns[f])
	if len(dd) > 0 && len(fd) > 0 {
		lo, hi := diffCI(m.dns[f], m.dns[d], 0.5, rng)
		rows = append(rows,
			row{fmt.Sprintf("DNS A %s, repeated, p50 (n=%d each; the filter answers from its cache)", o.name, len(fd)),
				ms(stats.Quantile(dd, 0.5)), ms(stats.Quantile(fd, 0.5)),
				fmt.Sprintf("%s (95%% CI %s … %s)", plusMS(stats.Quantile(fd, 0.5)-stats.Quantile(dd, 0.5)), plusMS(lo), plusMS(hi)), "—", "—"},
			row{"DNS A " + o.name + ", repeated, p99",
				ms(stats.Quantile(dd, 0.99)), ms(stats.Quantile(fd, 0.99)), plusMS(stats.Quantile(fd, 0.99) - stats.Quantile(dd, 0.99)), "—", "—"})
	}

	// 5. Memory.
	// The target is the idle filter's: what every container pays. Under
	// load the filter's memory is bounded by its cgroup, not a target.
	rssRow := func(metric string, v int64, detail string) row {
		return row{metric, "—", mib(v) + detail, "—", "—", "—"}
	}
	idleRow := func(metric string, v int64, detail string) row {
		verdict := stats.Verdict(float64(v), float64(v), float64(o.rssTarget), true)
		return row{metric, "—", mib(v) + detail, "—", "≤ " + mib(o.rssTarget), verdict}
	}
	split := func(p procMem) string {
		return fmt.Sprintf(" (%s + %s; anonymous %s)", mib(p.sup), mib(p.worker), mib(p.anon))
	}
	rows = append(rows,
		idleRow("Filter RSS (supervisor + worker), idle after start", m.rssIdle.total(), split(m.rssIdle)),
		rssRow(fmt.Sprintf("Filter RSS, peak while %s connections are open (sampled every 20 ms)", thousands(o.conns)), m.rssPeak.total(),
			fmt.Sprintf(" (anonymous %s)", mib(m.rssPeak.anon))),
		rssRow(fmt.Sprintf("Filter RSS, %s after the last %s closed", o.after, thousands(o.conns)), m.rssAfter.total(), split(m.rssAfter)))

	var sb strings.Builder
	w := func(format string, a ...any) { fmt.Fprintf(&sb, format, a...) }
	w("| metric | %s | %s | ratio / added | target | result |\n", d, f)
	w("| --- | --: | --: | --: | --- | --- |\n")
	for _, r := range rows {
		w("| %s | %s | %s | %s | %s | %s |\n", r.metric, r.direct, r.filtered, r.delta, r.target, r.result)
	}
	w("\nThe same static client, run by `clawrun exec` in two containers of one busybox bundle, each in a network namespace\n")
	w("with a veth route to the fake internet (DNS, TLS and HTTP servers in a third namespace, self-signed CA). The filtered one\n")
	w("differs only by the policy `run.clawrun.egress=%s:443,%s:8080`: its TCP goes through the filter's transparent proxy\n", o.name, o.name)
	w("(which dials from the host's namespace), its DNS through the filter's resolver, and the policy also puts its processes\n")
	w("under clawrun's agent seccomp profile and no_new_privs. Times are taken inside the client with the monotonic clock.\n")
	w("Direct and filtered runs alternate in a shuffled order every round (seed %d): %d rounds of %d TLS connections\n", o.seed, o.rounds, o.block)
	w("(TLS 1.3, ECDSA P-256, full handshakes, 2 more unmeasured per round), of one TLS connection with %d requests on it (HTTP/1.1\n", o.block)
	w("keep-alive, 2 more unmeasured first, the handshake not timed) and of %d DNS queries (2 more unmeasured); %d transfers\n", o.dnsN, o.bulkRuns)
	w("per direction (plain HTTP on :8080, one connection each); %d runs of the concurrent connections (HTTP upgrade on :8080,\n", o.connRuns)
	w("then an echoed byte). Added = p50(filtered) − p50(direct); ratio = median(filtered) / median(direct); the CIs are\n")
	w("bootstraps over rounds. RSS: VmRSS of the filter's supervisor and worker, from /proc. A target is judged on the CI\n")
	w("where there is one: %s when all of it meets the target, %s when all of it misses, %s when it straddles the target.\n",
		stats.Pass, stats.Fail, stats.WithinNoise)
	if len(m.shaped) > 0 {
		w("The second bulk phase puts a token bucket (tc tbf, %s) on both paths' links, as an internet connection of\n", o.shapeRate)
		w("that speed would: the first measures what the filter itself can move, the second whether it is what limits a stream.\n")
	}
	w("The HTTPS inspected rows come from a third container, in a network namespace of its own, whose policy makes the\n")
	w("endpoint %s:443 inspected (`protocol: rest`, `access: read-only`): the filter terminates its TLS with a certificate of the\n", o.name)
	w("container's own CA, decides each request, and sends it upstream over TLS of its own, verified against the fake internet's\n")
	w("CA (`egress.upstream_ca_file`); its client trusts the bundle the runtime mounted (`SSL_CERT_FILE`). They run with the direct\n")
	w("container, alternating as above: %d rounds of %d connections (each with its first request) and %d rounds of one connection\n", o.rounds, o.block, o.rounds)
	w("with %d requests on it (HTTP/1.1 keep-alive, 2 more unmeasured first, the handshake not timed), both sides HTTPS to :443;\n", o.block)
	if len(m.inspectShaped) > 0 {
		w("then %d HTTPS downloads each over the shaped link (the handshake not timed).\n", o.bulkRuns)
	}
	w("\n")
	w("Machine: %s, %d CPUs, kernel %s, %s; load average %s before, %s after; CPU used by other processes\n",
		stats.CPUModel(), goruntime.NumCPU(), stats.Kernel(), time.Now().UTC().Format("2006-01-02 15:04 MST"), m.loadBefore, m.loadAfter)
	w("during the bench: %.2f of %d CPUs, CPU left idle: %.0f%% (the filtered path keeps three processes busy, the direct\n",
		m.others, goruntime.NumCPU(), 100*m.idle)
	w("one two: other load costs it more). The bench took %s.\n\n", m.elapsed.Round(time.Second))
	w("- clawrun: `%s` (%s); the filter runs `%s`\n", o.clawrun, m.version, m.filterExe)
	// Bulk throughput is bounded by CPU once the machine is saturated:
	// what each path costs per byte says how far it can go.
	for _, dir := range []string{"down", "up"} {
		perGiB := func(label string) (time.Duration, float64) {
			bc := m.bulkCost[label][dir]
			if bc == nil || bc.bytes == 0 || bc.wall == 0 {
				return 0, 0
			}
			share := bc.busy.Seconds() / (bc.wall.Seconds() * float64(goruntime.NumCPU()))
			return time.Duration(float64(bc.busy) * float64(1<<30) / float64(bc.bytes)), share
		}
		dc, ds := perGiB(d)
		fc, fs := perGiB(f)
		if dc > 0 && fc > 0 {
			w("- Bulk %s, machine CPU per GiB moved (every process and the kernel, /proc/stat, during the transfers): %s %.2f s, %s %.2f s (%.2f×); machine busy %.0f%% / %.0f%%.\n",
				map[string]string{"up": "upload", "down": "download"}[dir], d, dc.Seconds(), f, fc.Seconds(), fc.Seconds()/dc.Seconds(), 100*ds, 100*fs)
		}
	}
	cpuNote := func(what string, phases ...string) {
		w("- %s (supervisor + worker, from /proc, 10 ms ticks):", what)
		for i, ph := range phases {
			sep := ";"
			if i == 0 {
				sep = ""
			}
			w("%s %s %d ms for %s", sep, ph, m.cpu[ph].Milliseconds(), m.phaseOps[ph])
		}
		w(".\n")
	}
	cpuNote("Filter CPU time", "dns", "tls", "keepalive-tls", "bulk-down", "bulk-up", "conns")
	inspectPhases := []string{"tls-inspected", "keepalive"}
	if len(m.inspectShaped) > 0 {
		inspectPhases = append(inspectPhases, "shaped-inspected-down")
	}
	cpuNote("The inspecting filter's CPU time", inspectPhases...)
	w("- Filter memory high-water mark (VmHWM, supervisor + worker): %s.\n", mib(m.hwm))
	for _, x := range []struct {
		when string
		p    procMem
	}{{"idle", m.rssIdle}, {"after the connections", m.rssAfter}} {
		w("- Filter memory %s: RSS %s = anonymous %s + file-backed %s (the filter's programs in the page cache, each shared with every other filter); PSS %s, of which anonymous %s.\n",
			x.when, mib(x.p.total()), mib(x.p.anon), mib(x.p.file), mib(x.p.pss), mib(x.p.pssAnon))
	}
	w("- Decision log of the filtered container: %s.\n", countList(m.decisions))
	w("- Decision log of the inspected container: %s.\n", countList(m.inspectDecided))
	if m.restarts > 0 {
		w("- **The filters' workers restarted %d times during the bench.**\n", m.restarts)
	}
	for _, e := range m.errors {
		w("- **Errors:** %s\n", e)
	}
	for _, n := range o.notes {
		w("- %s\n", n)
	}
	dr.renderCounting(&sb, m, rng)
	return sb.String()
}

// countList is "key n, key n, ..." in the keys' order.
func countList(counts map[string]int) string {
	var out []string
	for k, v := range counts {
		out = append(out, fmt.Sprintf("%s %d", k, v))
	}
	slices.Sort(out)
	return strings.Join(out, ", ")
}

func flatten(rounds [][]int64) []time.Duration {
	var out []time.Duration
	for _, r := range rounds {
		for _, v := range r {
			out = append(out, time.Duration(v))
		}
	}
	slices.Sort(out)
	return out
}

// diffCI is a 95% bootstrap interval of quantile q of a minus that of b,
// resampling whole rounds (a's and b's round i ran back to back, so the
// machine's drift between rounds stays out of the interval).
func diffCI(a, b [][]int64, q float64, rng *rand.Rand) (lo, hi time.Duration) {
	const resamples = 1000
	n := min(len(a), len(b))
	if n == 0 {
		return 0, 0
	}
	diffs := make([]time.Duration, resamples)
	ra, rb := make([][]int64, n), make([][]int64, n)
	for k := range diffs {
		for i := range n {
			j := rng.IntN(n)
			ra[i], rb[i] = a[j], b[j]
		}
		diffs[k] = stats.Quantile(flatten(ra), q) - stats.Quantile(flatten(rb), q)
	}
	slices.Sort(diffs)
	return diffs[resamples*25/1000], diffs[resamples*975/1000-1]
}

// cpuPerConnRow is the filter's CPU time in phase over its connections,
// judged against target when it is not 0. The CPU is one total (10 ms
// ticks over hundreds of connections), without an interval: PASS or FAIL.
func cpuPerConnRow(metric string, m *measurements, phase string, target time.Duration) row {
	n := m.phaseN[phase]
	if n == 0 {
		return row{metric, "—", "—", "—", "—", "—"}
	}
	per := m.cpu[phase] / time.Duration(n)
	r := row{fmt.Sprintf("%s (n=%d)", metric, n), "—", ms(per), "—", "—", "—"}
	if target > 0 {
		r.target, r.result = "≤ "+ms(target), stats.Pass
		if per > target {
			r.result = stats.Fail
		}
	}
	return r
}

func ms(d time.Duration) string { return fmt.Sprintf("%.3f ms", float64(d)/1e6) }

func plusMS(d time.Duration) string { return fmt.Sprintf("%+.3f ms", float64(d)/1e6) }

func mib(b int64) string { return fmt.Sprintf("%.1f MiB", float64(b)/(1<<20)) }

func mibs(v []float64) string {
	if len(v) == 0 {
		return "—"
	}
	return fmt.Sprintf("%.0f MiB/s (%.0f–%.0f)", stats.Median(v), slices.Min(v), slices.Max(v))
}

func ratioOrDash(a, b float64) string {
	if b == 0 {
		return "—"
	}
	return fmt.Sprintf("%.2f×", a/b)
}

func thousands(n int) string {
	s := fmt.Sprint(n)
	for i := len(s) - 3; i > 0; i -= 3 {
		s = s[:i] + "," + s[i:]
	}
	return s
}

// latencyRows appends the p50 row (added, its CI, judged on target) and
// the p99 row of a timed phase, given each side's samples per round.
func latencyRows(rows *[]row, what string, direct, other [][]int64, target time.Duration, rng *rand.Rand) {
	dl, fl := flatten(direct), flatten(other)
	if len(dl) == 0 || len(fl) == 0 {
		return
	}
	added := stats.Quantile(fl, 0.5) - stats.Quantile(dl, 0.5)
	lo, hi := diffCI(other, direct, 0.5, rng)
	goal, verdict := "—", "—" // target 0: reported, not judged
	if target > 0 {
		goal, verdict = "added ≤ "+ms(target), stats.Verdict(float64(lo), float64(hi), float64(target), true)
	}
	*rows = append(*rows,
		row{fmt.Sprintf("%s, p50 (n=%d each)", what, len(fl)),
			ms(stats.Quantile(dl, 0.5)), ms(stats.Quantile(fl, 0.5)),
			fmt.Sprintf("%s (95%% CI %s … %s)", plusMS(added), plusMS(lo), plusMS(hi)),
			goal, verdict},
		row{what + ", p99",
			ms(stats.Quantile(dl, 0.99)), ms(stats.Quantile(fl, 0.99)),
			plusMS(stats.Quantile(fl, 0.99) - stats.Quantile(dl, 0.99)), "—", "—"})
}

// shapedLink names the shaped link in a metric.
func shapedLink(o driveOptions) string {
	return fmt.Sprintf(" over a %s link (tbf on both paths)", o.shapeRate)
}

// bulkRows appends the upload and download rows of one bulk phase.
func bulkRows(rows *[]row, o driveOptions, bulk map[string]map[string][]float64, d, f, link string, mib int, rng *rand.Rand) {
	for _, dir := range []string{"up", "down"} {
		name := map[string]string{"up": "upload", "down": "download"}[dir]
		metric := fmt.Sprintf("Bulk %s%s, %d MiB, one stream (median of %d)", name, link, mib, o.bulkRuns)
		*rows = append(*rows, ratioRow(metric, bulk[d][dir], bulk[f][dir], o.throughputTarget, rng))
	}
}

// ratioRow is a throughput row: the medians (MiB/s), their ratio and its
// CI, judged on target (a ratio of at least).
func ratioRow(metric string, dv, fv []float64, target float64, rng *rand.Rand) row {
	if len(dv) == 0 || len(fv) == 0 {
		return row{metric, mibs(dv), mibs(fv), "—", fmt.Sprintf("≥ %.2f×", target), stats.Fail}
	}
	ratio := stats.Median(fv) / stats.Median(dv)
	delta := fmt.Sprintf("%.2f×", ratio)
	lo, hi := ratio, ratio
	if len(fv) == len(dv) && len(fv) > 2 {
		lo, hi = stats.RatioCI(fv, dv, 1000, rng)
		delta += fmt.Sprintf(" (95%% CI %.2f … %.2f)", lo, hi)
	}
	return row{metric, mibs(dv), mibs(fv), delta, fmt.Sprintf("≥ %.2f×", target), stats.Verdict(lo, hi, target, false)}
}
