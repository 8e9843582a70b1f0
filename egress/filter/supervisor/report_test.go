package supervisor

import (
	"encoding/json"
	"os/exec"
	"strings"
	"testing"
	"time"
)

func TestNoteLogReport(t *testing.T) {
	t0, t1 := time.Unix(1000, 0), time.Unix(1010, 0)
	st := &Status{State: "running"}
	noteReport(st, Report{Event: EventLogFailing, Lost: 1, Error: "no space left on device"}, t0)
	noteReport(st, Report{Event: EventLogFailing, Lost: 7, Error: "no space left on device"}, t1)
	if st.LogFailure == nil || !st.LogFailure.Time.Equal(t0) || st.LogFailure.Message != "no space left on device (7 decisions not recorded)" {
		t.Fatalf("while failing: %+v, want since the first report with the last count", st.LogFailure)
	}
	noteReport(st, Report{Event: EventLogRecovered, Lost: 9}, t1)
	if st.LogFailure != nil {
		t.Errorf("after recovery LogFailure is %+v", st.LogFailure)
	}
	if st.LastFailure == nil || !strings.Contains(st.LastFailure.Message, "9 decisions were not recorded") {
		t.Errorf("after recovery LastFailure is %+v, want the count of lost decisions", st.LastFailure)
	}
}

func TestWorkerExitDescribe(t *testing.T) {
	run := func(script string) error { return exec.Command("sh", "-c", script).Run() }
	killed := &workerExit{err: run("kill -9 $$"), words: ""}
	if got := killed.describe(256 << 20); got != "worker killed by SIGKILL" {
		t.Errorf("killed: %q", got)
	}
	oom := &workerExit{err: run("kill -9 $$"), oom: true}
	if got := oom.describe(256 << 20); got != "worker killed by SIGKILL for want of memory (its limit is 256 MiB)" {
		t.Errorf("OOM: %q", got)
	}
	var w lastWords
	for _, l := range []string{"", "panic: runtime error: index out of range", "", "goroutine 1 [running]:", "main.main()"} {
		w.printed(l)
	}
	crashed := &workerExit{err: run("exit 2"), words: w.String()}
	if got := crashed.describe(0); got != "worker exited with status 2: panic: runtime error: index out of range" {
		t.Errorf("panic: %q", got)
	}
	w.fatal = "open /var/log/x.jsonl: is a directory"
	if got := (&workerExit{err: run("exit 1"), words: w.String()}).describe(0); got != "worker exited with status 1: open /var/log/x.jsonl: is a directory" {
		t.Errorf("fatal report: %q", got)
	}
}

func TestParseReport(t *testing.T) {
	for _, r := range []Report{{Event: "loaded", Generation: 3}, {Event: "refused", Generation: 4, Error: "x"}} {
		line := mustJSON(t, r)
		got, ok := parseReport(line)
		if !ok || got != r {
			t.Errorf("parseReport(%s) = %+v, %v", line, got, ok)
		}
	}
	for _, line := range []string{"panic: x", `{"generation":3}`, `{"clawrun_egress_worker":`} {
		if _, ok := parseReport(line); ok {
			t.Errorf("parseReport(%q) took it for a report", line)
		}
	}
}

func mustJSON(t *testing.T, v any) string {
	t.Helper()
	data, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(data)
}
