package decisionlog

import (
	"sync"
	"time"

	"github.com/clawrun/clawrun/egress/rules"
)

// LogLimits bound what a container can make the filter write into its
// decision log. The log is size-capped and rotated, so a container that
// produced decisions as fast as it could would otherwise rotate the
// evidence of what it did before out of the log.
type LogLimits struct {
	// Window is how long the repeats of a denial are counted instead of
	// logged: the first Full ones are logged in full, the others are one
	// summary line with their number when the window ends.
	Window time.Duration
	Full   int
	// Rate and Burst cap the lines per second (a token bucket); the lines
	// past it are counted and reported on one line per Window.
	Rate  float64
	Burst int
	// MaxKeys bounds the denials being counted at once; a denial past it
	// is logged (within the rate) but its repeats are not counted apart.
	MaxKeys int
}

// DefaultLogLimits: at 100 lines a second, rotating the 64 MiB of a
// default log takes a container more than half an hour, and every line
// it could not get logged is counted.
var DefaultLogLimits = LogLimits{Window: 10 * time.Second, Full: 10, Rate: 100, Burst: 1000, MaxKeys: 4096}

// LogLimiter passes decisions to a log within LogLimits: repeated denials
// are aggregated, and lines past the rate are dropped and counted. Safe
// for concurrent use; Tick must be called now and then (e.g. every
// second) to end windows when no decision comes.
type LogLimiter struct {
	write     func(Record)
	limits    LogLimits
	now       func() time.Time
	container string

	mu           sync.Mutex
	counting     map[aggKey]*aggregate
	tokens       float64
	refilled     time.Time
	dropped      int64
	droppedSince time.Time
}

// aggKey is what makes two denials "the same" for aggregation.
type aggKey struct {
	protocol, decision, host, queryType string
	method, path, rule                  string
	reason                              rules.Reason
	port                                int
	generation                          int64
}

// aggregate counts the repeats of one denial first logged at since.
type aggregate struct {
	first   Record
	since   time.Time
	full    int // logged in full so far
	repeats int64
}

// NewLogLimiter passes records to write within limits, with now as its
// clock; container names the filter on the lines it writes itself.
func NewLogLimiter(write func(Record), limits LogLimits, now func() time.Time, container string) *LogLimiter {
	return &LogLimiter{
		write: write, limits: limits, now: now, container: container,
		counting: map[aggKey]*aggregate{},
		tokens:   float64(limits.Burst),
		refilled: now(),
	}
}

func keyOf(r Record) aggKey {
	return aggKey{protocol: r.Protocol, decision: r.Decision, host: r.Host, queryType: r.QueryType,
		method: r.Method, path: r.Path, rule: r.Rule,
		reason: r.Reason, port: r.Port, generation: r.Generation}
}

// Log logs r, or counts it.
func (l *LogLimiter) Log(r Record) {
	l.mu.Lock()
	defer l.mu.Unlock()
	now := l.now()
	l.endWindows(now)
	var a *aggregate
	if r.Decision == "deny" {
		if a = l.counting[keyOf(r)]; a != nil && a.full >= l.limits.Full {
			a.repeats++
			return
		}
	}
	if !l.take(now) {
		if l.dropped == 0 {
			l.droppedSince = now
		}
		l.dropped++
		return
	}
	if r.Decision == "deny" && a == nil && len(l.counting) < l.limits.MaxKeys {
		a = &aggregate{first: r, since: now}
		l.counting[keyOf(r)] = a
	}
	if a != nil {
		a.full++
	}
	l.write(r)
}

// Tick ends the windows that are over.
func (l *LogLimiter) Tick() {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.endWindows(l.now())
}

// Flush writes what is being counted now (the filter is stopping).
func (l *LogLimiter) Flush() {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.endWindows(time.Time{})
}

// endWindows writes the summaries of the windows over at now (all of
// them when now is zero). Summaries are not rate-limited: there is at
// most one per counted denial and one for the drops per window.
func (l *LogLimiter) endWindows(now time.Time) {
	over := func(since time.Time) bool { return now.IsZero() || now.Sub(since) >= l.limits.Window }
	at := now
	if at.IsZero() {
		at = l.now()
	}
	for k, a := range l.counting {
		if !over(a.since) {
			continue
		}
		delete(l.counting, k)
		if a.repeats > 0 {
			l.write(summary(a, at))
		}
	}
	if l.dropped > 0 && over(l.droppedSince) {
		l.write(Record{Time: at.UTC(), Container: l.container, Protocol: "log", Decision: "dropped",
			Reason: rules.ReasonLogRate, Dropped: l.dropped, Since: l.droppedSince.UTC()})
		l.dropped = 0
	}
}

// summary is the line that stands for a denial's repeats.
func summary(a *aggregate, at time.Time) Record {
	f := a.first
	return Record{Time: at.UTC(), Container: f.Container, Generation: f.Generation, Protocol: f.Protocol,
		Host: f.Host, Port: f.Port, QueryType: f.QueryType, Decision: f.Decision, Reason: f.Reason,
		Rule: f.Rule, Aggregated: a.repeats, Since: a.since.UTC()}
}

// take spends a token of the rate limit, if there is one.
func (l *LogLimiter) take(now time.Time) bool {
	if elapsed := now.Sub(l.refilled); elapsed > 0 {
		l.tokens = min(float64(l.limits.Burst), l.tokens+elapsed.Seconds()*l.limits.Rate)
		l.refilled = now
	}
	if l.tokens < 1 {
		return false
	}
	l.tokens--
	return true
}
