// Package stats holds what clawrun's benchmarks share: order statistics,
// paired bootstrap intervals over interleaved rounds, and a description of
// the machine the figures were taken on.
package stats

import (
	"bufio"
	"fmt"
	"math/rand/v2"
	"os"
	"slices"
	"strings"
	"time"
)

// Number is what the statistics take: durations or plain values.
type Number interface{ ~int64 | ~float64 }

// Quantile of sorted xs, interpolating linearly between the nearest two;
// 0 for none.
func Quantile[T Number](sorted []T, q float64) T {
	if len(sorted) == 0 {
		return 0
	}
	pos := q * float64(len(sorted)-1)
	lo := int(pos)
	if lo >= len(sorted)-1 {
		return sorted[len(sorted)-1]
	}
	return sorted[lo] + T((pos-float64(lo))*float64(sorted[lo+1]-sorted[lo]))
}

// Median of xs (in any order): the mean of the middle two for an even count.
func Median[T Number](xs []T) T {
	s := slices.Clone(xs)
	slices.Sort(s)
	return Quantile(s, 0.5)
}

// RatioCI is a 95% bootstrap interval of median(a)/median(b). It resamples
// whole rounds, keeping a[i] and b[i] together (they ran back to back), so
// the machine's drift between rounds, which interleaving cancels, does not
// widen it.
func RatioCI[T Number](a, b []T, resamples int, rng *rand.Rand) (lo, hi float64) {
	n := min(len(a), len(b))
	if n == 0 || resamples < 40 {
		return 0, 0
	}
	ra, rb := make([]T, n), make([]T, n)
	ratios := make([]float64, resamples)
	for k := range ratios {
		for i := range n {
			j := rng.IntN(n)
			ra[i], rb[i] = a[j], b[j]
		}
		ratios[k] = float64(Median(ra)) / float64(Median(rb))
	}
	slices.Sort(ratios)
	return ratios[resamples*25/1000], ratios[resamples*975/1000-1]
}

// DiffCI is a 95% bootstrap interval of median(a) − median(b), resampling
// whole rounds like RatioCI.
func DiffCI[T Number](a, b []T, resamples int, rng *rand.Rand) (lo, hi T) {
	n := min(len(a), len(b))
	if n == 0 || resamples < 40 {
		return 0, 0
	}
	ra, rb := make([]T, n), make([]T, n)
	diffs := make([]T, resamples)
	for k := range diffs {
		for i := range n {
			j := rng.IntN(n)
			ra[i], rb[i] = a[j], b[j]
		}
		diffs[k] = Median(ra) - Median(rb)
	}
	slices.Sort(diffs)
	return diffs[resamples*25/1000], diffs[resamples*975/1000-1]
}

// The verdicts of a figure against its target, from its 95% interval.
const (
	Pass        = "PASS"         // the whole interval meets the target
	Fail        = "FAIL"         // the whole interval misses it
	WithinNoise = "within noise" // the interval straddles it: more runs or a quieter machine would tell
)

// Verdict judges a figure whose 95% interval is lo … hi against target: at
// most target (atMost), else at least target. A figure without an interval
// is judged with lo = hi.
func Verdict(lo, hi, target float64, atMost bool) string {
	if !atMost {
		lo, hi, target = -hi, -lo, -target
	}
	switch {
	case hi <= target:
		return Pass
	case lo > target:
		return Fail
	}
	return WithinNoise
}

// LoadAvg is the first three fields of /proc/loadavg.
func LoadAvg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if f := strings.Fields(string(b)); err == nil && len(f) >= 3 {
		return strings.Join(f[:3], " ")
	}
	return "?"
}

// Kernel is the running kernel's release, as `uname -r` prints it.
func Kernel() string {
	b, err := os.ReadFile("/proc/sys/kernel/osrelease")
	if err != nil {
		return "?"
	}
	return strings.TrimSpace(string(b))
}

// CPUModel is the first model name in /proc/cpuinfo.
func CPUModel() string {
	f, err := os.Open("/proc/cpuinfo")
	if err != nil {
		return "unknown CPU"
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if k, v, ok := strings.Cut(sc.Text(), ":"); ok && strings.TrimSpace(k) == "model name" {
			return strings.TrimSpace(v)
		}
	}
	return "unknown CPU"
}

// MachineCPU is the CPU time every task on the machine used so far, from
// the root cgroup v1 cpuacct controller, which charges exact run time, the
// kernel's work on behalf of tasks included (/proc/stat and the cgroup v2
// root's cpu.stat sample ticks and are too coarse to subtract a share
// from). ok is false where it is missing.
func MachineCPU() (d time.Duration, ok bool) {
	for _, p := range []string{"/sys/fs/cgroup/cpuacct/cpuacct.usage", "/sys/fs/cgroup/cpu,cpuacct/cpuacct.usage"} {
		b, err := os.ReadFile(p)
		if err != nil {
			continue
		}
		var ns int64
		if _, err := fmt.Sscan(string(b), &ns); err == nil {
			return time.Duration(ns), true
		}
	}
	return 0, false
}
