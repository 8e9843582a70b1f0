package decisionlog

import (
	"fmt"
	"testing"
	"time"

	"github.com/clawrun/clawrun/egress/internal/egresstest"
	"github.com/clawrun/clawrun/egress/rules"
)

func denial(host string, port int) Record {
	return deniedRecord("tls", host, port, rules.ReasonNotAllowed)
}
func allowed(host string) Record {
	return Record{Protocol: "tls", Host: host, Port: 443, Decision: "allow", Reason: rules.ReasonAllowed}
}

// limiter is a LogLimiter on clock, writing into out.
func limiter(clock *egresstest.Clock, l LogLimits, out *[]Record) *LogLimiter {
	return NewLogLimiter(func(r Record) { *out = append(*out, r) }, l, clock.Now, "ctr")
}

func deniedRecord(protocol, host string, port int, reason rules.Reason) Record {
	return Record{Protocol: protocol, Host: host, Port: port, Decision: "deny", Reason: reason}
}

var roomy = LogLimits{Window: 10 * time.Second, Full: 1, Rate: 1e6, Burst: 1e6, MaxKeys: 100}

func TestLogLimiterAggregatesRepeatedDenials(t *testing.T) {
	clock := egresstest.NewClock()
	var out []Record
	l := limiter(clock, roomy, &out)
	for range 1000 {
		l.Log(denial("evil.test", 443))
		clock.Add(time.Millisecond)
	}
	l.Log(denial("evil.test", 8443)) // another port: another key
	l.Log(allowed("ok.test"))        // allowed decisions are never aggregated
	l.Log(allowed("ok.test"))
	if len(out) != 4 || out[0].Host != "evil.test" || out[0].Aggregated != 0 || out[1].Port != 8443 {
		t.Fatalf("before the window ends: %+v, want the first denial of each key and both allowed decisions", out)
	}
	start := clock.Now()
	clock.Add(9 * time.Second)
	l.Tick()
	if len(out) != 5 {
		t.Fatalf("after the first key's window: %d lines, want its summary: %+v", len(out), out)
	}
	s := out[4]
	if s.Host != "evil.test" || s.Port != 443 || s.Aggregated != 999 || s.Decision != "deny" || s.Reason != rules.ReasonNotAllowed ||
		!s.Since.Equal(egresstest.Start.UTC()) || !s.Time.Equal(clock.Now().UTC()) {
		t.Errorf("summary %+v: want 999 repeats of evil.test:443 since the first", s)
	}
	// The other key's window ends 10 s after its first denial; it had no
	// repeats: no summary.
	clock.Add(start.Add(10 * time.Second).Sub(clock.Now()))
	l.Tick()
	if len(out) != 5 {
		t.Errorf("a denial without repeats got a summary: %+v", out[5:])
	}
	// After its window, the next denial is logged in full again.
	l.Log(denial("evil.test", 443))
	if len(out) != 6 || out[5].Aggregated != 0 {
		t.Errorf("a denial after the window: %+v, want it logged in full", out[5:])
	}
}

func TestLogLimiterRateDropsAndCounts(t *testing.T) {
	clock := egresstest.NewClock()
	var out []Record
	l := limiter(clock, LogLimits{Window: 10 * time.Second, Full: 1, Rate: 10, Burst: 20, MaxKeys: 100}, &out)
	// Distinct names: nothing to aggregate, only the rate holds them.
	for i := range 100 {
		l.Log(denial(fmt.Sprintf("n%d.evil.test", i), 443))
	}
	if len(out) != 20 {
		t.Fatalf("%d lines logged at once, want the burst of 20", len(out))
	}
	clock.Add(time.Second) // 10 more tokens
	for i := range 100 {
		l.Log(allowed(fmt.Sprintf("a%d.test", i)))
	}
	if len(out) != 30 {
		t.Fatalf("%d lines after a second, want 30", len(out))
	}
	clock.Add(9 * time.Second)
	l.Tick()
	last := out[len(out)-1]
	if last.Decision != "dropped" || last.Reason != rules.ReasonLogRate || last.Dropped != 170 || last.Container != "ctr" ||
		!last.Since.Equal(egresstest.Start.UTC()) {
		t.Errorf("drop line %+v: want 170 dropped since the first drop", last)
	}
	n := len(out)
	clock.Add(10 * time.Second)
	l.Tick()
	if len(out) != n {
		t.Errorf("a drop line without drops: %+v", out[n:])
	}
}

func TestLogLimiterBoundsKeys(t *testing.T) {
	clock := egresstest.NewClock()
	var out []Record
	l := limiter(clock, LogLimits{Window: 10 * time.Second, Full: 1, Rate: 1e6, Burst: 1e6, MaxKeys: 2}, &out)
	for range 3 {
		for _, h := range []string{"a.test", "b.test", "c.test"} {
			l.Log(denial(h, 443))
		}
	}
	// a and b are counted; c, past MaxKeys, is logged each time.
	if len(out) != 5 {
		t.Fatalf("%d lines, want a, b once and c three times: %+v", len(out), out)
	}
	l.Flush()
	var sum int64
	for _, r := range out {
		sum += r.Aggregated
	}
	if sum != 4 {
		t.Errorf("summaries count %d repeats, want 4", sum)
	}
}

func TestLogLimiterFlushWritesOpenWindows(t *testing.T) {
	clock := egresstest.NewClock()
	var out []Record
	l := limiter(clock, LogLimits{Window: time.Minute, Full: 1, Rate: 1, Burst: 1, MaxKeys: 10}, &out)
	l.Log(denial("x.test", 443))
	l.Log(denial("x.test", 443))
	l.Log(allowed("y.test")) // past the rate
	l.Flush()
	if len(out) != 3 || out[1].Aggregated != 1 || out[2].Dropped != 1 {
		t.Errorf("after Flush: %+v, want the denial, its summary and the drop line", out)
	}
}

func TestLogLimiterLogsTheFirstFewInFull(t *testing.T) {
	clock := egresstest.NewClock()
	var out []Record
	limits := roomy
	limits.Full = 3
	l := limiter(clock, limits, &out)
	for range 10 {
		l.Log(denial("evil.test", 443))
	}
	if len(out) != 3 {
		t.Fatalf("%d lines, want the first 3 denials in full", len(out))
	}
	clock.Add(limits.Window)
	l.Tick()
	if len(out) != 4 || out[3].Aggregated != 7 {
		t.Errorf("summary %+v, want the 7 others counted", out[3:])
	}
}
