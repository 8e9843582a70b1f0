package filter

import (
	"errors"
	"strings"
	"testing"
	"time"
)

func TestLogHealth(t *testing.T) {
	clock := time.Unix(1000, 0)
	var sent []workerReport
	h := newLogHealth(func(r workerReport) { sent = append(sent, r) }, func() time.Time { return clock })
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
	want := []workerReport{
		{Event: eventLogFailing, Lost: 1, Error: full.Error()},
		{Event: eventLogFailing, Lost: 4, Error: full.Error()},
		{Event: eventLogRecovered, Lost: 4},
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
	if last := sent[len(sent)-1]; last.Event != eventLogFailing || last.Lost != 1 {
		t.Errorf("after recovery, a failure reported %+v", last)
	}
}

func TestNoteLogReport(t *testing.T) {
	t0, t1 := time.Unix(1000, 0), time.Unix(1010, 0)
	st := &Status{State: "running"}
	noteLogReport(st, workerReport{Event: eventLogFailing, Lost: 1, Error: "no space left on device"}, t0)
	noteLogReport(st, workerReport{Event: eventLogFailing, Lost: 7, Error: "no space left on device"}, t1)
	if st.LogFailure == nil || !st.LogFailure.Time.Equal(t0) || st.LogFailure.Message != "no space left on device (7 decisions not recorded)" {
		t.Fatalf("while failing: %+v, want since the first report with the last count", st.LogFailure)
	}
	noteLogReport(st, workerReport{Event: eventLogRecovered, Lost: 9}, t1)
	if st.LogFailure != nil {
		t.Errorf("after recovery LogFailure is %+v", st.LogFailure)
	}
	if st.LastFailure == nil || !strings.Contains(st.LastFailure.Message, "9 decisions were not recorded") {
		t.Errorf("after recovery LastFailure is %+v, want the count of lost decisions", st.LastFailure)
	}
}
