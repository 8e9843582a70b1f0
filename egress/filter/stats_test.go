package filter

import (
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/clawrun/clawrun/egress/decisionlog"
)

func TestCountersCountDecisionsAndBytes(t *testing.T) {
	var c counters
	c.count(decisionlog.Record{Protocol: "tls", Decision: "allow", Reason: "allowed", BytesOut: 100, BytesIn: 2000})
	c.count(decisionlog.Record{Protocol: "tls", Decision: "allow", Reason: "allowed", BytesOut: 1, BytesIn: 2})
	c.count(decisionlog.Record{Protocol: "dns", Decision: "deny", Reason: "not_allowed"})
	s := c.snapshot(time.Unix(1, 0), 3)
	want := []DecisionCount{
		{Protocol: "dns", Decision: "deny", Reason: "not_allowed", Count: 1},
		{Protocol: "tls", Decision: "allow", Reason: "allowed", Count: 2},
	}
	if len(s.Decisions) != len(want) {
		t.Fatalf("decisions %+v, want %+v", s.Decisions, want)
	}
	for i := range want {
		if s.Decisions[i] != want[i] {
			t.Fatalf("decisions %+v, want %+v", s.Decisions, want)
		}
	}
	if s.BytesOut != 101 || s.BytesIn != 2002 || s.OpenConns != 3 {
		t.Fatalf("bytes out %d in %d, open %d; want 101, 2002, 3", s.BytesOut, s.BytesIn, s.OpenConns)
	}
}

// The decision path runs on many goroutines: no count may be lost.
func TestCountersConcurrent(t *testing.T) {
	var c counters
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for range 1000 {
				c.count(decisionlog.Record{Protocol: "http", Decision: "deny", Reason: "not_allowed", BytesIn: 1})
			}
		})
	}
	wg.Wait()
	s := c.snapshot(time.Now(), 0)
	if len(s.Decisions) != 1 || s.Decisions[0].Count != 8000 || s.BytesIn != 8000 {
		t.Fatalf("got %+v, want 8000 decisions and bytes", s)
	}
}

// A worker writes its counts when it stops, and the next one (a restart)
// goes on from them.
func TestStatsSurviveAWorkerRestart(t *testing.T) {
	path := filepath.Join(t.TempDir(), "egress-stats.json")
	first := new(counters)
	w := startStats(path, first, func() int { return 5 })
	first.count(decisionlog.Record{Protocol: "dns", Decision: "allow", Reason: "allowed"})
	first.count(decisionlog.Record{Protocol: "tcp", Decision: "allow", Reason: "allowed", BytesOut: 7, BytesIn: 9})
	w.Close()
	s, err := ReadStats(path)
	if err != nil {
		t.Fatal(err)
	}
	if len(s.Decisions) != 2 || s.BytesOut != 7 || s.OpenConns != 5 {
		t.Fatalf("written at exit: %+v", s)
	}

	second := new(counters)
	w = startStats(path, second, func() int { return 0 })
	second.count(decisionlog.Record{Protocol: "dns", Decision: "allow", Reason: "allowed"})
	w.Close()
	s, err = ReadStats(path)
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]int64{}
	for _, d := range s.Decisions {
		got[d.Protocol] = d.Count
	}
	if got["dns"] != 2 || got["tcp"] != 1 || s.BytesOut != 7 || s.BytesIn != 9 || s.OpenConns != 0 {
		t.Fatalf("after a restart: %+v, want dns 2, tcp 1, 7 B out, 9 B in, none open", s)
	}
}

// The file is rewritten while the worker runs, not only at its exit.
func TestStatsWrittenWhileRunning(t *testing.T) {
	path := filepath.Join(t.TempDir(), "egress-stats.json")
	c := new(counters)
	w := startStats(path, c, func() int { return 0 })
	defer w.Close()
	c.count(decisionlog.Record{Protocol: "dns", Decision: "allow", Reason: "allowed"})
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		if s, err := ReadStats(path); err == nil && len(s.Decisions) == 1 {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatal("the counts were not written within 5 s while the worker ran")
}

// BenchmarkCount is the cost counting adds to every decision.
func BenchmarkCount(b *testing.B) {
	var c counters
	r := decisionlog.Record{Protocol: "tls", Decision: "allow", Reason: "allowed", BytesOut: 100, BytesIn: 1000}
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			c.count(r)
		}
	})
}

// Every decision is logged; it is counted only when a stats file is to
// carry the counts (the egress benchmark's uncounted filter has none).
func TestCountedLogCountsOnlyWithAStatsFile(t *testing.T) {
	r := decisionlog.Record{Protocol: "tls", Decision: "allow", Reason: "allowed", BytesOut: 7}
	for _, c := range []struct {
		statsFile string
		counted   int
	}{{"/run/clawrun/c/egress-stats.json", 1}, {"", 0}} {
		logged := 0
		counts, logDecision := countedLog(c.statsFile, func(decisionlog.Record) { logged++ })
		logDecision(r)
		s := counts.snapshot(time.Unix(1, 0), 0)
		if logged != 1 || len(s.Decisions) != c.counted || s.BytesOut != int64(7*c.counted) {
			t.Errorf("stats file %q: logged %d, counted %+v (bytes out %d); want logged 1, counted %d",
				c.statsFile, logged, s.Decisions, s.BytesOut, c.counted)
		}
	}
}
