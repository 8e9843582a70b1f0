package filter

import (
	"sync"
	"time"

	"github.com/clawrun/clawrun/egress/filter/supervisor"
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
	send     func(supervisor.Report)
}

func newLogHealth(send func(supervisor.Report), now func() time.Time) *logHealth {
	return &logHealth{send: send, now: now, every: 5 * time.Second}
}

// wrote records the outcome of one write of the log.
func (h *logHealth) wrote(err error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	now := h.now()
	if err == nil {
		if h.failing {
			h.send(supervisor.Report{Event: supervisor.EventLogRecovered, Lost: h.lost})
			h.failing, h.lost = false, 0
		}
		return
	}
	h.lost++
	if !h.failing || now.Sub(h.reported) >= h.every {
		h.send(supervisor.Report{Event: supervisor.EventLogFailing, Lost: h.lost, Error: err.Error()})
		h.failing, h.reported = true, now
	}
}
