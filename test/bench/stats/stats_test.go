package stats

import (
	"math/rand/v2"
	"testing"
	"time"
)

func TestQuantileAndMedian(t *testing.T) {
	if got := Quantile([]time.Duration{}, 0.5); got != 0 {
		t.Errorf("Quantile(empty) = %v", got)
	}
	sorted := []time.Duration{10, 20, 30, 40}
	for _, tc := range []struct {
		q    float64
		want time.Duration
	}{{0, 10}, {0.5, 25}, {1, 40}, {0.25, 17}} {
		if got := Quantile(sorted, tc.q); got != tc.want {
			t.Errorf("Quantile(%v) = %v, want %v", tc.q, got, tc.want)
		}
	}
	if got := Median([]float64{3, 1, 2}); got != 2 {
		t.Errorf("Median(3,1,2) = %v", got)
	}
	if got := Median([]float64{4, 1, 3, 2}); got != 2.5 {
		t.Errorf("Median(4,1,3,2) = %v", got)
	}
	in := []float64{3, 1, 2}
	Median(in)
	if in[0] != 3 {
		t.Error("Median sorted its argument")
	}
}

func TestRatioCI(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	// b is a with every value doubled: every resample's ratio is 0.5.
	a := []time.Duration{10, 12, 9, 11, 14, 10, 13}
	b := make([]time.Duration, len(a))
	for i, v := range a {
		b[i] = 2 * v
	}
	if lo, hi := RatioCI(a, b, 1000, rng); lo != 0.5 || hi != 0.5 {
		t.Errorf("RatioCI(a, 2a) = %v … %v, want 0.5 … 0.5", lo, hi)
	}
	// Noisy pairs: the interval holds the point estimate.
	x := []float64{100, 120, 90, 110, 105, 95, 130, 99}
	y := []float64{60, 80, 70, 65, 75, 62, 90, 71}
	lo, hi := RatioCI(x, y, 1000, rng)
	if r := Median(x) / Median(y); lo > r || r > hi || lo >= hi {
		t.Errorf("RatioCI = %v … %v around %v", lo, hi, r)
	}
	if lo, hi := RatioCI([]float64{}, []float64{}, 1000, rng); lo != 0 || hi != 0 {
		t.Errorf("RatioCI(empty) = %v … %v", lo, hi)
	}
}

func TestDiffCI(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	// b is a minus 3 everywhere: every resample's difference is 3.
	a := []time.Duration{10, 12, 9, 11, 14, 10, 13}
	b := make([]time.Duration, len(a))
	for i, v := range a {
		b[i] = v - 3
	}
	if lo, hi := DiffCI(a, b, 1000, rng); lo != 3 || hi != 3 {
		t.Errorf("DiffCI(a, a-3) = %v … %v, want 3 … 3", lo, hi)
	}
	x := []float64{100, 120, 90, 110, 105, 95, 130, 99}
	y := []float64{60, 80, 70, 65, 75, 62, 90, 71}
	lo, hi := DiffCI(x, y, 1000, rng)
	if d := Median(x) - Median(y); lo > d || d > hi || lo >= hi {
		t.Errorf("DiffCI = %v … %v around %v", lo, hi, d)
	}
}

func TestVerdict(t *testing.T) {
	for _, tc := range []struct {
		lo, hi, target float64
		atMost         bool
		want           string
	}{
		{0.90, 1.00, 1.05, true, Pass},
		{0.90, 1.05, 1.05, true, Pass},
		{0.83, 1.10, 1.05, true, WithinNoise}, // a median below target is not enough
		{1.06, 1.20, 1.05, true, Fail},
		{0.85, 0.95, 0.80, false, Pass},
		{0.75, 0.85, 0.80, false, WithinNoise},
		{0.60, 0.70, 0.80, false, Fail},
		{14.3, 14.3, 16, true, Pass}, // no interval
		{17, 17, 16, true, Fail},
	} {
		if got := Verdict(tc.lo, tc.hi, tc.target, tc.atMost); got != tc.want {
			t.Errorf("Verdict(%v … %v, target %v, at most %v) = %q, want %q", tc.lo, tc.hi, tc.target, tc.atMost, got, tc.want)
		}
	}
}
