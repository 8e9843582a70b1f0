package filter

import (
	"fmt"
	"sync"
	"time"
)

// logHealth watches the decision log's writes. A log that cannot be
// written (its log_dir full, read-only, gone) does not stop the filter:
// every decision is still enforced, and stopping would only make the
// container lose its network. But nobody may believe the log is complete:
// the worker tells the supervisor when writes start failing, how many
// decisions went unrecorded, and when writes work again, so that `state`
// and `audit` say it.
type logHealth struct {
	mu       sync.Mutex
	failing  bool
	lost     int64 // decisions not written since the log started failing
	reported time.Time
	every    time.Duration // at most one report per period while failing
	now      func() time.Time
	send     func(workerReport)
}

func newLogHealth(send func(workerReport), now func() time.Time) *logHealth {
	return &logHealth{send: send, now: now, every: 5 * time.Second}
}

// wrote records the outcome of one write of the log.
func (h *logHealth) wrote(err error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	now := h.now()
	if err == nil {
		if h.failing {
			h.send(workerReport{Event: eventLogRecovered, Lost: h.lost})
			h.failing, h.lost = false, 0
		}
		return
	}
	h.lost++
	if !h.failing || now.Sub(h.reported) >= h.every {
		h.send(workerReport{Event: eventLogFailing, Lost: h.lost, Error: err.Error()})
		h.failing, h.reported = true, now
	}
}

// Worker report events about the decision log.
const (
	eventLogFailing   = "log_failing"
	eventLogRecovered = "log_recovered"
)

// noteLogReport records a report about the decision log in the Status:
// LogFailure while it fails; once it works again, a LastFailure that says
// how many decisions were lost.
func noteLogReport(st *Status, rep workerReport, now time.Time) {
	switch rep.Event {
	case eventLogFailing:
		since := now
		if st.LogFailure != nil {
			since = st.LogFailure.Time
		}
		st.LogFailure = &Failure{Time: since, Message: fmt.Sprintf("%s (%d decisions not recorded)", rep.Error, rep.Lost)}
	case eventLogRecovered:
		msg := fmt.Sprintf("the decision log could not be written: %d decisions were not recorded", rep.Lost)
		if st.LogFailure != nil {
			msg += " (" + st.LogFailure.Message + ")"
		}
		st.LogFailure = nil
		st.LastFailure = &Failure{Time: now, Message: msg}
	}
}
