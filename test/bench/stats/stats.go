// Package stats holds what clawrun's benchmarks share: order statistics,
// paired bootstrap intervals over interleaved rounds, and a description of
// the machine the figures were taken on.
package stats

import (
	"bufio"
	"math/rand/v2"
	"os"
	"slices"
	"strings"
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
