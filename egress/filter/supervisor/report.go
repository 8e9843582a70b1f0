package supervisor

import (
	"encoding/json"
	"fmt"
	"os"
	"strings"
	"time"
)

// Report is one line the worker writes on its stderr, which the
// supervisor reads: a generation loaded or refused, the decision log
// failing or recovered, or why it exits.
type Report struct {
	Event      string `json:"clawrun_egress_worker"` // one of the Event constants
	Generation int64  `json:"generation,omitempty"`
	Error      string `json:"error,omitempty"`
	// Lost counts the decisions the log could not record.
	Lost int64 `json:"lost,omitempty"`
}

// The events of a Report.
const (
	EventLoaded       = "loaded"
	EventRefused      = "refused"
	EventFatal        = "fatal"
	EventLogFailing   = "log_failing"
	EventLogRecovered = "log_recovered"
)

// Send writes the report to the supervisor (the worker's stderr).
func (r Report) Send() {
	data, _ := json.Marshal(r)
	fmt.Fprintln(os.Stderr, string(data))
}

// parseReport reads a report line; false for anything else the worker
// printed (a panic, the Go runtime's fatal errors).
func parseReport(line string) (Report, bool) {
	var r Report
	if !strings.HasPrefix(line, `{"clawrun_egress_worker"`) || json.Unmarshal([]byte(line), &r) != nil {
		return r, false
	}
	return r, r.Event != ""
}

// noteReport records a worker's report in the Status: the generation it
// loaded (it is running once it has), the one it refused, or how its
// decision log fares.
func noteReport(st *Status, rep Report, now time.Time) {
	switch rep.Event {
	case EventLoaded:
		st.Generation = rep.Generation
		if st.State == StateRestarting {
			st.State, st.Error = StateRunning, ""
		}
	case EventRefused:
		st.LastFailure = &Failure{Time: now, Generation: rep.Generation, Message: rep.Error}
	case EventLogFailing:
		since := now
		if st.LogFailure != nil {
			since = st.LogFailure.Time
		}
		st.LogFailure = &Failure{Time: since, Message: fmt.Sprintf("%s (%d decisions not recorded)", rep.Error, rep.Lost)}
	case EventLogRecovered:
		// A LastFailure says how many decisions were lost.
		msg := fmt.Sprintf("the decision log could not be written: %d decisions were not recorded", rep.Lost)
		if st.LogFailure != nil {
			msg += " (" + st.LogFailure.Message + ")"
		}
		st.LogFailure = nil
		st.LastFailure = &Failure{Time: now, Message: msg}
	}
}
