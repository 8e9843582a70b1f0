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
		workerReport{Event: "fatal", Error: err.Error()}.send()
		os.Exit(1)
	}
	os.Exit(0)
}

func work(configPath string) error {
	// Before anything else: all the memory of the worker is to be charged
	// to its own cgroup, under its limit.
	if dir := os.Getenv(cgroupEnv); dir != "" {
		if err := joinCgroup(dir); err != nil {
			return err
		}
	}
	cfg, err := LoadConfig(configPath)
	if err != nil {
		return err
	}
	// Collect harder as the heap nears the cgroup's limit, before the
	// kernel kills the worker at it.
	debug.SetMemoryLimit(cfg.memoryBytes() / 4 * 3)
	initial, err := LoadRules(cfg.RulesFile)
	if err != nil {
		return err
	}
	var inForce atomic.Pointer[rules.Rules]
	inForce.Store(initial)
	current := func() *rules.Rules { return inForce.Load() }

	log, err := decisionlog.NewLog(cfg.LogFile, cfg.LogMaxBytes, cfg.LogKeep)
	if err != nil {
		return err
	}
	defer log.Close()
	// Repeated denials are aggregated and the rate capped, so that a
	// container cannot rotate the log's evidence away.
	health := newLogHealth(workerReport.send, time.Now)
	limiter := decisionlog.NewLogLimiter(func(r decisionlog.Record) { health.wrote(log.Write(r)) }, decisionlog.DefaultLogLimits, time.Now, cfg.Container)
	defer limiter.Flush()
	ticker := time.NewTicker(time.Second)
	defer ticker.Stop()
	go func() {
		for range ticker.C {
			limiter.Tick()
		}
	}()

	allowed, err := parsePrefixes(cfg.AllowedRanges)
	if err != nil {
		return err
	}
	synth, err := netip.ParsePrefix(cfg.SyntheticRange)
	if err != nil {
		return fmt.Errorf("synthetic range: %w", err)
	}
	logRecord := limiter.Log
	pool := resolver.NewSyntheticPool(synth)
	// Give the protocol: tcp names their addresses now, in the rules'
	// order, not in the order the container asks: a restarted worker then
	// maps the addresses the container still has cached back to the same
	// names (wildcard names are still assigned when first asked).
	assignSynthetic(pool, initial)
	dnsServer := &resolver.Resolver{
		Rules:         current,
		Upstream:      cfg.Upstream,
		Synthetic:     pool,
		Log:           logRecord,
		Container:     cfg.Container,
		ConfigAllowed: allowed,
	}
	dialer := &net.Dialer{Timeout: 10 * time.Second}
	tcpProxy := &proxy.Proxy{
		Rules:         current,
		Lookup:        dnsServer.LookupIP,
		Synthetic:     pool.Lookup,
		ConfigAllowed: allowed,
		Log:           logRecord,
		Container:     cfg.Container,
		Dial:          dialer.DialContext,
		Limits:        cfg.connLimits(),
	}
	// Which processes hold a connection: for the policies that list
	// binaries (a reload may bring them).
	owners, err := kernel.NewOwners(cfg.Netns)
	if err != nil {
		return err
	}
	defer owners.Close()
	tcpProxy.Binaries = owners.Conn
	dnsServer.TCPOwners = owners.TCP

	proxies, udps, tcps, err := inheritedListeners()
	if err != nil {
		return err
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	errs := make(chan error, len(proxies)+len(udps))
	for _, l := range proxies {
		go func(l net.Listener) { errs <- tcpProxy.Serve(l) }(l)
	}
	for i := range udps {
		var tcp net.Listener
		if i < len(tcps) {
			tcp = tcps[i]
		}
		go func(u net.PacketConn, t net.Listener) { errs <- dnsServer.Serve(ctx, u, t) }(udps[i], tcp)
	}

	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, unix.SIGHUP, unix.SIGTERM, unix.SIGINT)
	reload := func() {
		next, err := takeProposal(cfg.RulesFile)
		if err != nil {
			// Refused whole: the generation in force stays.
			var r refusal
			errors.As(err, &r)
			workerReport{Event: "refused", Generation: r.generation, Error: err.Error()}.send()
			return
		}
		assignSynthetic(pool, next)
		inForce.Store(next)
		tcpProxy.Recheck()
		workerReport{Event: "loaded", Generation: next.Generation}.send()
	}
	workerReport{Event: "loaded", Generation: initial.Generation}.send()
	// A generation proposed while no worker ran.
	if _, err := os.Stat(ProposalFile(cfg.RulesFile)); err == nil {
		reload()
	}
	for {
		select {
		case s := <-sigs:
			if s != unix.SIGHUP {
				return nil
			}
			reload()
		case err := <-errs:
			if err != nil {
				return err
			}
		}
	}
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
	parts := strings.Split(os.Getenv(fdLayoutEnv), ",")
	if len(parts) != 3 {
		return nil, nil, nil, fmt.Errorf("missing %s", fdLayoutEnv)
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
