package filter

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/signal"
	"runtime/debug"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"

	"github.com/clawrun/clawrun/egress/decisionlog"
	"github.com/clawrun/clawrun/egress/filter/supervisor"
	"github.com/clawrun/clawrun/egress/inference"
	"github.com/clawrun/clawrun/egress/inspect"
	"github.com/clawrun/clawrun/egress/kernel"
	"github.com/clawrun/clawrun/egress/proxy"
	"github.com/clawrun/clawrun/egress/resolver"
	"github.com/clawrun/clawrun/egress/rules"
	"github.com/clawrun/clawrun/runtime/policy/hostname"
)

// WorkerMain runs the worker on the sockets inherited from the
// supervisor; it never returns.
func WorkerMain(configPath string) {
	if err := work(configPath); err != nil {
		// The supervisor reads it: the cause of this exit, for the Status.
		supervisor.Report{Event: supervisor.EventFatal, Error: err.Error()}.Send()
		os.Exit(1)
	}
	os.Exit(0)
}

func work(configPath string) error {
	cfg, err := loadWorkerConfig(configPath)
	if err != nil {
		return err
	}
	initial, err := LoadRules(cfg.RulesFile)
	if err != nil {
		return err
	}
	engine, err := newEngine(cfg)
	if err != nil {
		return err
	}
	if err := canInspect(initial, engine); err != nil {
		return err
	}
	setProcs(initial, cfg.Inference != nil)
	creds, err := loadCredentials(cfg)
	if err != nil {
		return err
	}
	logRecord, closeLog, err := openDecisionLog(cfg)
	if err != nil {
		return err
	}
	defer closeLog()
	counts, logDecision := countedLog(cfg.StatsFile, logRecord)
	w, err := newWorker(cfg, initial, logDecision, engine)
	if err == nil {
		w.tcpProxy.Credentials = creds
	}
	if err != nil {
		return err
	}
	defer w.owners.Close()
	defer startStats(cfg.StatsFile, counts, w.tcpProxy.OpenConns).Close()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	errs, err := w.serve(ctx)
	if err != nil {
		return err
	}
	return w.run(errs)
}

// loadWorkerConfig joins the worker's cgroup before anything else (all
// the memory of the worker is to be charged to it, under its limit), then
// reads the config.
func loadWorkerConfig(configPath string) (*Config, error) {
	if err := supervisor.JoinWorkerCgroup(); err != nil {
		return nil, err
	}
	cfg, err := LoadConfig(configPath)
	if err != nil {
		return nil, err
	}
	// Collect harder as the heap nears the cgroup's limit, before the
	// kernel kills the worker at it.
	debug.SetMemoryLimit(cfg.memoryBytes() / 4 * 3)
	return cfg, nil
}

// openDecisionLog opens the decision log behind its limiter: repeated
// denials are aggregated and the rate capped, so that a container cannot
// rotate the log's evidence away. It returns what logs a decision, and
// what flushes the limiter's counts and closes the log.
func openDecisionLog(cfg *Config) (func(decisionlog.Record), func(), error) {
	log, err := decisionlog.NewLogFormat(cfg.LogFile, cfg.LogMaxBytes, cfg.LogKeep, decisionlog.Format(cfg.LogFormat))
	if err != nil {
		return nil, nil, err
	}
	health := newLogHealth(supervisor.Report.Send, time.Now)
	limiter := decisionlog.NewLogLimiter(func(r decisionlog.Record) { health.wrote(log.Write(r)) }, decisionlog.DefaultLogLimits, time.Now, cfg.Container)
	ticker := time.NewTicker(time.Second)
	go func() {
		for range ticker.C {
			limiter.Tick()
		}
	}()
	closeLog := func() {
		ticker.Stop()
		limiter.Flush()
		log.Close()
	}
	return limiter.Log, closeLog, nil
}

// countedLog counts every decision, then logs it: the counts are exact
// whatever the log's limiter aggregates or drops. Without a stats file
// nothing would read the counts: decisions are only logged.
func countedLog(statsFile string, logRecord func(decisionlog.Record)) (*counters, func(decisionlog.Record)) {
	counts := new(counters)
	if statsFile == "" {
		return counts, logRecord
	}
	return counts, func(r decisionlog.Record) {
		counts.count(r)
		logRecord(r)
	}
}

// worker serves the policy resolver and the proxy with the rules in
// force.
type worker struct {
	cfg       *Config
	inForce   atomic.Pointer[rules.Rules]
	pool      *resolver.SyntheticPool
	dnsServer *resolver.Resolver
	tcpProxy  *proxy.Proxy
	owners    *kernel.Owners
}

// newWorker makes the resolver and the proxy of cfg, deciding with
// initial until a reload, logging with logRecord and inspecting with
// engine (nil: none).
func newWorker(cfg *Config, initial *rules.Rules, logRecord func(decisionlog.Record), engine *inspect.Engine) (*worker, error) {
	allowed, err := parsePrefixes(cfg.AllowedRanges)
	if err != nil {
		return nil, err
	}
	synth, err := netip.ParsePrefix(cfg.SyntheticRange)
	if err != nil {
		return nil, fmt.Errorf("synthetic range: %w", err)
	}
	w := &worker{cfg: cfg, pool: resolver.NewSyntheticPool(synth)}
	w.inForce.Store(initial)
	// Give the protocol: tcp names their addresses now, in the rules'
	// order, not in the order the container asks: a restarted worker then
	// maps the addresses the container still has cached back to the same
	// names (wildcard names are still assigned when first asked).
	assignSynthetic(w.pool, initial)
	if cfg.Inference != nil {
		if engine == nil {
			return nil, errors.New("egress.inference: the container has no egress CA to serve inference.local with")
		}
		w.pool.Assign(inference.Host)
	}
	w.dnsServer = &resolver.Resolver{
		Rules:         w.inForce.Load,
		Upstream:      cfg.Upstream,
		Synthetic:     w.pool,
		Log:           logRecord,
		Container:     cfg.Container,
		ConfigAllowed: allowed,
		Inference:     cfg.Inference != nil,
	}
	// Upstream connections leave no TIME_WAIT in the host's namespace,
	// where every filter's pile up (kernel/timewait.go).
	dialer := &net.Dialer{Timeout: 10 * time.Second, Control: kernel.StampCookie}
	timeWaits, err := kernel.NewTimeWaits()
	if err != nil {
		return nil, err
	}
	w.tcpProxy = &proxy.Proxy{
		Rules:         w.inForce.Load,
		Lookup:        w.dnsServer.LookupIP,
		Synthetic:     w.pool.Lookup,
		ConfigAllowed: allowed,
		Log:           logRecord,
		Container:     cfg.Container,
		Dial:          dialer.DialContext,
		CloseUpstream: timeWaits.Close,
		Limits:        cfg.connLimits(),
		Inspect:       engine,
		Inference:     cfg.Inference,
	}
	// Which processes hold a connection: for the policies that list
	// binaries (a reload may bring them).
	if w.owners, err = kernel.NewOwners(cfg.Netns); err != nil {
		return nil, err
	}
	w.tcpProxy.Binaries = func(c net.Conn) []string { return rules.JoinChains(w.owners.Conn(c)...) }
	w.dnsServer.TCPOwners = func(local, remote netip.AddrPort) []string {
		return rules.JoinChains(w.owners.TCP(local, remote)...)
	}
	return w, nil
}

// serve starts the proxy and the resolver on the sockets inherited from
// the supervisor, until ctx ends; their failures come on the channel.
func (w *worker) serve(ctx context.Context) (<-chan error, error) {
	proxies, udps, tcps, err := inheritedListeners()
	if err != nil {
		return nil, err
	}
	errs := make(chan error, len(proxies)+len(udps))
	for _, l := range proxies {
		go func(l net.Listener) { errs <- w.tcpProxy.Serve(l) }(l)
	}
	for i := range udps {
		var tcp net.Listener
		if i < len(tcps) {
			tcp = tcps[i]
		}
		go func(u net.PacketConn, t net.Listener) { errs <- w.dnsServer.Serve(ctx, u, t) }(udps[i], tcp)
	}
	return errs, nil
}

// run reports the rules in force, then loads a proposed generation on
// SIGHUP (and at once if one was proposed while no worker ran), until
// SIGTERM or SIGINT (nil) or a server's failure.
func (w *worker) run(errs <-chan error) error {
	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, unix.SIGHUP, unix.SIGTERM, unix.SIGINT)
	supervisor.Report{Event: supervisor.EventLoaded, Generation: w.inForce.Load().Generation}.Send()
	if _, err := os.Stat(ProposalFile(w.cfg.RulesFile)); err == nil {
		w.reload()
	}
	for {
		select {
		case s := <-sigs:
			if s != unix.SIGHUP {
				return nil
			}
			w.reload()
		case err := <-errs:
			if err != nil {
				return err
			}
		}
	}
}

// reload puts the proposed generation in force, and closes the open
// connections it no longer allows; a proposal refused whole leaves the
// generation in force.
func (w *worker) reload() {
	next, err := takeProposal(w.cfg.RulesFile, func(r *rules.Rules) error { return canInspect(r, w.tcpProxy.Inspect) })
	if err != nil {
		var r refusal
		errors.As(err, &r)
		supervisor.Report{Event: supervisor.EventRefused, Generation: r.generation, Error: err.Error()}.Send()
		return
	}
	assignSynthetic(w.pool, next)
	setProcs(next, w.cfg.Inference != nil)
	w.inForce.Store(next)
	w.tcpProxy.Recheck()
	supervisor.Report{Event: supervisor.EventLoaded, Generation: next.Generation}.Send()
}

func parsePrefixes(in []string) ([]netip.Prefix, error) {
	var out []netip.Prefix
	for _, s := range in {
		p, err := netip.ParsePrefix(s)
		if err != nil {
			return nil, fmt.Errorf("allowed range %q: %w", s, err)
		}
		out = append(out, p)
	}
	return out, nil
}

// inheritedListeners rebuilds the supervisor's sockets from fds 3...
func inheritedListeners() (proxies []net.Listener, udps []net.PacketConn, tcps []net.Listener, err error) {
	parts := strings.Split(os.Getenv(supervisor.FDLayoutEnv), ",")
	if len(parts) != 3 {
		return nil, nil, nil, fmt.Errorf("missing %s", supervisor.FDLayoutEnv)
	}
	var n [3]int
	for i, p := range parts {
		if n[i], err = strconv.Atoi(p); err != nil {
			return nil, nil, nil, err
		}
	}
	fd := 3
	next := func() *os.File { f := os.NewFile(uintptr(fd), "listener-"+strconv.Itoa(fd)); fd++; return f }
	for range n[0] {
		l, err := net.FileListener(next())
		if err != nil {
			return nil, nil, nil, err
		}
		proxies = append(proxies, l)
	}
	for range n[1] {
		c, err := net.FilePacketConn(next())
		if err != nil {
			return nil, nil, nil, err
		}
		udps = append(udps, c)
	}
	for range n[2] {
		l, err := net.FileListener(next())
		if err != nil {
			return nil, nil, nil, err
		}
		tcps = append(tcps, l)
	}
	return proxies, udps, tcps, nil
}

// assignSynthetic assigns the synthetic addresses of the exact names of
// the rules' protocol: tcp endpoints.
func assignSynthetic(pool *resolver.SyntheticPool, r *rules.Rules) {
	for _, l := range r.Layers {
		for _, p := range l.Policies {
			for _, e := range p.Endpoints {
				if e.Protocol != "tcp" || hostname.IsWildcard(e.Host) {
					continue
				}
				if _, ok := r.TCPEndpoint(e.Host); ok {
					pool.Assign(e.Host)
				}
			}
		}
	}
}
