package filter

import (
	"errors"
	"testing"
	"time"

	"github.com/clawrun/clawrun/egress/filter/supervisor"
)

func TestLogHealth(t *testing.T) {
	clock := time.Unix(1000, 0)
	var sent []supervisor.Report
	h := newLogHealth(func(r supervisor.Report) { sent = append(sent, r) }, func() time.Time { return clock })
	full := errors.New("write /logs/x.jsonl: no space left on device")

	h.wrote(nil)
	if len(sent) != 0 {
		t.Fatalf("a working log reported %v", sent)
	}
	// The first failure is reported at once, repeats within the period
	// are only counted, the next period reports the count.
	h.wrote(full)
	clock = clock.Add(time.Second)
	h.wrote(full)
	h.wrote(full)
	clock = clock.Add(5 * time.Second)
	h.wrote(full)
	h.wrote(nil)
	h.wrote(nil)
	want := []supervisor.Report{
		{Event: supervisor.EventLogFailing, Lost: 1, Error: full.Error()},
		{Event: supervisor.EventLogFailing, Lost: 4, Error: full.Error()},
		{Event: supervisor.EventLogRecovered, Lost: 4},
	}
	if len(sent) != len(want) {
		t.Fatalf("sent %+v, want %+v", sent, want)
	}
	for i := range want {
		if sent[i] != want[i] {
			t.Errorf("report %d: %+v, want %+v", i, sent[i], want[i])
		}
	}
	// A new run of failures counts from zero.
	h.wrote(full)
	if last := sent[len(sent)-1]; last.Event != supervisor.EventLogFailing || last.Lost != 1 {
		t.Errorf("after recovery, a failure reported %+v", last)
	}
}
