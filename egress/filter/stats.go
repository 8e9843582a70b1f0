package filter

import (
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/clawrun/clawrun/egress/decisionlog"
	"github.com/clawrun/clawrun/internal/jsonfile"
)

// Stats is what a filter has decided and carried since its container was
// created, as its worker writes it to Config.StatsFile every second and
// when it exits: `clawrun metrics` reads it. The counts are the filter's
// own, taken on the decision path before the decision log's limiter, so
// that aggregated and rate-limited decisions are counted too. A worker
// starts from the file its predecessor left: the counts survive a restart
// (but for the decisions of the last second of a worker that was killed).
type Stats struct {
	// Time is when the worker wrote the file.
	Time time.Time `json:"time"`
	// Decisions count the decisions by protocol, decision and reason
	// (every one bounded: no host name, no rule name).
	Decisions []DecisionCount `json:"decisions,omitempty"`
	// BytesOut (to the upstream) and BytesIn (to the container) of the
	// proxied connections, counted when each connection closes.
	BytesOut int64 `json:"bytes_out"`
	BytesIn  int64 `json:"bytes_in"`
	// OpenConns are the proxy's connections open when the file was
	// written, decided or not.
	OpenConns int `json:"open_connections"`
}

// DecisionCount is the number of decisions of one kind.
type DecisionCount struct {
	Protocol string `json:"protocol"`
	Decision string `json:"decision"`
	Reason   string `json:"reason"`
	Count    int64  `json:"count"`
}

// ReadStats reads a StatsFile.
func ReadStats(path string) (*Stats, error) {
	var s Stats
	if err := jsonfile.Read(path, &s); err != nil {
		return nil, err
	}
	return &s, nil
}

// decisionKey is one kind of decision.
type decisionKey struct{ protocol, decision, reason string }

// counters are the worker's running counts. count is on every decision's
// path: a lock-free map read and atomic adds (the map takes its lock only
// the first time a kind of decision is seen).
type counters struct {
	decisions         sync.Map // decisionKey -> *atomic.Int64
	bytesOut, bytesIn atomic.Int64
}

// count counts one decision and the bytes of its connection.
func (c *counters) count(r decisionlog.Record) {
	c.add(decisionKey{r.Protocol, r.Decision, string(r.Reason)}, 1)
	if r.BytesOut != 0 {
		c.bytesOut.Add(r.BytesOut)
	}
	if r.BytesIn != 0 {
		c.bytesIn.Add(r.BytesIn)
	}
}

func (c *counters) add(k decisionKey, n int64) {
	v, ok := c.decisions.Load(k)
	if !ok {
		v, _ = c.decisions.LoadOrStore(k, new(atomic.Int64))
	}
	v.(*atomic.Int64).Add(n)
}

// seed starts the counts from a predecessor's Stats.
func (c *counters) seed(s *Stats) {
	for _, d := range s.Decisions {
		c.add(decisionKey{d.Protocol, d.Decision, d.Reason}, d.Count)
	}
	c.bytesOut.Add(s.BytesOut)
	c.bytesIn.Add(s.BytesIn)
}

// snapshot is the counts now, in a stable order.
func (c *counters) snapshot(now time.Time, openConns int) Stats {
	s := Stats{Time: now, BytesOut: c.bytesOut.Load(), BytesIn: c.bytesIn.Load(), OpenConns: openConns}
	c.decisions.Range(func(k, v any) bool {
		key := k.(decisionKey)
		s.Decisions = append(s.Decisions, DecisionCount{Protocol: key.protocol, Decision: key.decision, Reason: key.reason, Count: v.(*atomic.Int64).Load()})
		return true
	})
	slices.SortFunc(s.Decisions, func(a, b DecisionCount) int {
		return strings.Compare(a.Protocol+"\x00"+a.Decision+"\x00"+a.Reason, b.Protocol+"\x00"+b.Decision+"\x00"+b.Reason)
	})
	return s
}

// statsWriter writes a worker's counters to its StatsFile every second,
// and once more when stopped.
type statsWriter struct {
	path      string
	counts    *counters
	openConns func() int
	stop      chan struct{}
	done      chan struct{}
}

// startStats seeds counts from the file at path (a worker's
// predecessor's) and starts writing them there. Without a file (the
// first worker) the counts start from zero. No path: nothing is written.
func startStats(path string, counts *counters, openConns func() int) *statsWriter {
	w := &statsWriter{path: path, counts: counts, openConns: openConns, stop: make(chan struct{}), done: make(chan struct{})}
	if path == "" {
		close(w.done)
		return w
	}
	if prev, err := ReadStats(path); err == nil {
		counts.seed(prev)
	}
	go w.loop()
	return w
}

func (w *statsWriter) loop() {
	defer close(w.done)
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for {
		select {
		case <-tick.C:
			w.write()
		case <-w.stop:
			w.write()
			return
		}
	}
}

func (w *statsWriter) write() {
	// Unsynced: a sync a second would cost each container milliseconds
	// where the state dir is on a disk; a file a crash emptied only
	// restarts the counts, which Prometheus takes for a reset.
	_ = jsonfile.WriteUnsynced(w.path, w.counts.snapshot(time.Now().UTC(), w.openConns()), 0o600)
}

// Close writes the counts a last time and stops.
func (w *statsWriter) Close() {
	select {
	case <-w.done:
		return
	default:
	}
	close(w.stop)
	<-w.done
}
