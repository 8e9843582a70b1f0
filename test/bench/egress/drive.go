package main

// The driver: runs on the host, starts the three containers (the same
// bundle but for the policy annotation and the network namespace each
// joins), runs the client in them by `clawrun exec`, direct and filtered
// (or direct and inspected) in a shuffled order every round, and reads
// the filters' memory and CPU time from /proc.

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/clawrun/clawrun/egress/decisionlog"
	"github.com/clawrun/clawrun/test/bench/stats"
)

type driveOptions struct {
	clawrun, config, root  string
	direct, filtered       string // bundles
	uncounted              string // bundle as filtered's, its filter started without counters
	inspected              string // bundle whose policy has bench.test:443 inspected
	server, name           string // the fake internet's address, the allowed name
	logDir                 string // egress.log_dir of the config
	serverPid              int    // for the machine's load figure
	out, raw               string
	rounds, block, dnsN    int
	bulkMiB, bulkRuns      int
	shapeRate              string   // tc rate of the shaped link, e.g. 1gbit ("": no shaped phase)
	shapeLinks             []string // NETNS/IFNAME ("-/IFNAME": the host's) shaped on egress
	shapedMiB              int
	conns, connRuns        int
	seed                   uint64
	latencyTarget          time.Duration // added p50
	throughputTarget       float64       // filtered/direct
	inspectLatencyTarget   time.Duration // added p50, inspected TLS connection + first request
	keepAliveTarget        time.Duration // added p50, a request on an open inspected connection
	connCPUTarget          time.Duration // the filter's CPU per spliced TLS connection
	concurrentTarget       float64       // filtered/direct time until 1,000 connections are established
	inspectBulkTarget      float64       // inspected/direct HTTPS download over the shaped link
	rssTarget              int64         // bytes, supervisor + worker
	countLatencyTarget     time.Duration // added p50, counted filter against uncounted
	countThroughputTarget  float64       // counted/uncounted throughput
	notes                  []string
	idPrefix               string
	settle                 time.Duration
	execTimeout            time.Duration
	connHold               time.Duration
	after                  time.Duration // wait before the memory reading after the connections
	directName, filterName string
	inspectName            string
	uncountedName          string
	churn                  churnOptions
	only                   string // "churn": that phase alone
}

// ctr is one of the containers.
type ctr struct {
	label    string // column name
	id       string
	bundle   string
	filtered bool     // its policy starts a filter
	trust    []string // the client's flags for the roots it verifies TLS with
	env      []string // added to the runtime's environment when it starts the container
	// its filter's processes
	sup, worker int
}

type driver struct {
	o      driveOptions
	direct *ctr
	filter *ctr
	// uncounted is filter's twin whose filter keeps no counters.
	uncounted *ctr
	all       []*ctr
	rng       *rand.Rand
	logf      *os.File // output of run/delete (a file, not a pipe: `run -d` leaves the container holding it)
	mu        sync.Mutex
	made      []*ctr // started, to delete
	raw       strings.Builder
	// inspect's filter terminates its TLS to bench.test:443.
	inspect *ctr
	// interrupted: a signal is being handled (cleanup, then exit 130);
	// failures it causes meanwhile are not reported.
	interrupted atomic.Bool
}

func drive(args []string) {
	var o driveOptions
	fs := flag.NewFlagSet("drive", flag.ExitOnError)
	fs.StringVar(&o.clawrun, "clawrun", "bin/clawrun", "clawrun binary")
	fs.StringVar(&o.config, "config", "", "clawrun --config file (egress upstream_dns, ranges, log_dir)")
	fs.StringVar(&o.root, "root", "", "clawrun --root for the bench's containers")
	fs.StringVar(&o.direct, "direct", "", "bundle of the direct container (no policy)")
	fs.StringVar(&o.filtered, "filtered", "", "bundle of the filtered container (run.clawrun.egress)")
	fs.StringVar(&o.uncounted, "uncounted", "", "bundle of the uncounted container (as -filtered; its filter keeps no counters)")
	fs.StringVar(&o.inspected, "inspected", "", "bundle of the inspected container (a policy inspecting bench.test:443)")
	fs.StringVar(&o.server, "server", "", "the fake internet's address (bench.test)")
	fs.StringVar(&o.name, "name", "bench.test", "the allowed name")
	fs.StringVar(&o.logDir, "log-dir", "", "egress.log_dir of the config (decision logs)")
	fs.IntVar(&o.serverPid, "server-pid", 0, "pid of egressbench serve (its CPU time is the bench's, not other load)")
	fs.StringVar(&o.out, "out", "", "also write the table to this file")
	fs.StringVar(&o.raw, "raw", "", "also write every sample to this file (CSV)")
	fs.IntVar(&o.rounds, "rounds", 20, "rounds of the latency and DNS measurements")
	fs.IntVar(&o.block, "block", 25, "TLS connections per container per round")
	fs.IntVar(&o.dnsN, "dns", 25, "DNS queries per container per round")
	fs.IntVar(&o.bulkMiB, "bulk-mib", 256, "MiB per bulk transfer")
	fs.IntVar(&o.bulkRuns, "bulk-runs", 5, "bulk transfers per direction and container")
	fs.StringVar(&o.shapeRate, "shape-rate", "10gbit", "rate of the shaped link for the second bulk phase (\"\": none)")
	fs.Func("shape", "NETNS/IFNAME to shape on egress for the second bulk phase, - for the host's namespace (repeatable)",
		func(v string) error { o.shapeLinks = append(o.shapeLinks, v); return nil })
	fs.IntVar(&o.shapedMiB, "shaped-mib", 256, "MiB per transfer over the shaped link")
	fs.IntVar(&o.conns, "conns", 1000, "concurrent connections")
	fs.IntVar(&o.connRuns, "conn-runs", 3, "runs of the concurrent connections per container")
	fs.Uint64Var(&o.seed, "seed", 0, "seed of the per-round shuffle (0: from the clock)")
	fs.DurationVar(&o.latencyTarget, "latency-target", 500*time.Microsecond, "target: added p50 latency below this")
	fs.Float64Var(&o.throughputTarget, "throughput-target", 0.8, "target: filtered/direct throughput at least this")
	fs.DurationVar(&o.inspectLatencyTarget, "inspect-latency-target", 1500*time.Microsecond, "target: added p50 of an inspected connection (connect, handshake, first request) below this")
	fs.DurationVar(&o.keepAliveTarget, "keepalive-target", 300*time.Microsecond, "target: added p50 of a request on an open inspected connection below this")
	fs.DurationVar(&o.connCPUTarget, "conn-cpu-target", 700*time.Microsecond, "target: the filter's CPU per TLS connection (supervisor + worker) below this")
	fs.Float64Var(&o.concurrentTarget, "concurrent-target", 1.8, "target: filtered/direct time until every concurrent connection is established at most this")
	fs.Float64Var(&o.inspectBulkTarget, "inspect-throughput-target", 0.7, "target: inspected/direct HTTPS download over the shaped link at least this")
	fs.DurationVar(&o.countLatencyTarget, "count-latency-target", 100*time.Microsecond, "target: added p50 of the counting filter over the uncounted one below this")
	fs.Float64Var(&o.countThroughputTarget, "count-throughput-target", 0.95, "target: counting/uncounted filter throughput at least this")
	rssMiB := fs.Int64("rss-target-mib", 16, "target: filter RSS (supervisor + worker) below this many MiB")
	fs.StringVar(&o.idPrefix, "id-prefix", fmt.Sprintf("bench-egress-%d", os.Getpid()), "container id prefix")
	fs.DurationVar(&o.settle, "settle", 500*time.Millisecond, "wait after the start before the idle memory reading")
	fs.DurationVar(&o.execTimeout, "exec-timeout", 2*time.Minute, "bound of one client run")
	fs.DurationVar(&o.after, "after", time.Second, "wait after the last connections closed before reading the filter's memory")
	fs.DurationVar(&o.connHold, "hold", 700*time.Millisecond, "how long the client holds the connections open after the echoes")
	fs.Func("churn-bundle", "bundle of a filtered container of the connection churn phase (repeatable; none: no such phase)",
		func(v string) error { o.churn.bundles = append(o.churn.bundles, v); return nil })
	fs.IntVar(&o.churn.rate, "churn-rate", 1000, "new connections per second of the churn phase, all its containers together")
	fs.DurationVar(&o.churn.length, "churn-time", time.Minute, "length of the churn phase")
	fs.DurationVar(&o.churn.window, "churn-window", 10*time.Second, "the churn phase's first and last windows, compared")
	fs.StringVar(&o.only, "only", "", "run one phase alone (churn)")
	fs.Func("note", "extra footnote line (repeatable)", func(s string) error { o.notes = append(o.notes, s); return nil })
	_ = fs.Parse(args)
	o.rssTarget = *rssMiB << 20
	switch {
	case o.only == "churn":
		if o.config == "" || o.root == "" || o.server == "" || len(o.churn.bundles) == 0 {
			fatalf("drive: -only churn needs -config, -root, -server and -churn-bundle")
		}
	case o.only != "":
		fatalf("drive: -only %q: only churn can run alone", o.only)
	case o.config == "" || o.root == "" || o.direct == "" || o.filtered == "" || o.uncounted == "" || o.inspected == "" || o.server == "" || o.logDir == "":
		fatalf("drive: -config, -root, -direct, -filtered, -uncounted, -inspected, -server and -log-dir are required")
	}
	if len(o.churn.bundles) > 0 && (o.churn.rate < len(o.churn.bundles) || o.churn.window <= 0 || o.churn.length < 2*o.churn.window) {
		fatalf("drive: the churn phase needs at least a connection a second per container and two windows")
	}
	if o.rounds < 1 || o.block < 1 || o.dnsN < 1 || o.bulkRuns < 1 || o.connRuns < 1 || o.conns < 1 || o.bulkMiB < 1 {
		fatalf("drive: counts must be positive")
	}
	if o.seed == 0 {
		o.seed = uint64(time.Now().UnixNano())
	}
	o.directName, o.filterName, o.inspectName, o.uncountedName = "direct", "through clawrun", "inspected", "uncounted"

	dr := &driver{o: o, rng: rand.New(rand.NewPCG(o.seed, 0))}
	dr.direct = &ctr{label: o.directName, id: o.idPrefix + "-direct", bundle: o.direct}
	dr.filter = &ctr{label: o.filterName, id: o.idPrefix + "-filtered", bundle: o.filtered, filtered: true}
	// The inspected client trusts what the runtime gave its container.
	dr.inspect = &ctr{label: o.inspectName, id: o.idPrefix + "-inspected", bundle: o.inspected, filtered: true,
		trust: []string{"-ca-env", "SSL_CERT_FILE"}}
	dr.uncounted = &ctr{label: o.uncountedName, id: o.idPrefix + "-uncounted", bundle: o.uncounted, filtered: true,
		env: []string{uncountedEnv + "=1"}}
	dr.all = []*ctr{dr.direct, dr.filter, dr.uncounted, dr.inspect}
	// Beside --root, not in it: the runtime lists what is in it.
	var err error
	if dr.logf, err = os.CreateTemp(filepath.Dir(o.root), "runtime-*.log"); err != nil {
		fatalf("drive: %v", err)
	}
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM)
	go func() {
		s := <-sigs
		dr.interrupted.Store(true)
		dr.cleanup()
		fmt.Fprintf(os.Stderr, "egressbench: %v\n", s)
		os.Exit(130)
	}()
	var (
		table  string
		failed bool
	)
	if o.only == "churn" {
		table, failed = dr.churn(o.churn)
		dr.cleanup()
	} else {
		table, failed = dr.run()
	}
	fmt.Print(table)
	if o.out != "" {
		if err := os.WriteFile(o.out, []byte(table), 0o644); err != nil {
			fatalf("drive: %v", err)
		}
	}
	if o.raw != "" {
		if err := os.WriteFile(o.raw, []byte(dr.raw.String()), 0o644); err != nil {
			fatalf("drive: %v", err)
		}
	}
	os.Remove(dr.logf.Name())
	if failed {
		fatalf("the run had errors (see the notes under the table)")
	}
}

// die deletes the containers and exits.
func (dr *driver) die(format string, a ...any) {
	if dr.interrupted.Load() {
		select {} // the signal handler exits
	}
	dr.cleanup()
	fatalf(format, a...)
}

func (dr *driver) cleanup() {
	dr.mu.Lock()
	made := dr.made
	dr.made = nil
	dr.mu.Unlock()
	for _, c := range made {
		if out, err := dr.runtime(30*time.Second, "delete", "--force", c.id); err != nil {
			fmt.Fprintf(os.Stderr, "egressbench: delete %s: %v\n%s\n", c.id, err, out)
		}
	}
}

// runtime runs clawrun with the bench's --root and --config; its output
// goes to a file, since `run -d` leaves the container's init holding it.
func (dr *driver) runtime(timeout time.Duration, args ...string) (string, error) {
	return dr.runtimeEnv(nil, timeout, args...)
}

// runtimeEnv is runtime with env added to the runtime's environment.
func (dr *driver) runtimeEnv(env []string, timeout time.Duration, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	if err := dr.logf.Truncate(0); err != nil {
		return "", err
	}
	if _, err := dr.logf.Seek(0, 0); err != nil {
		return "", err
	}
	full := append([]string{"--root", dr.o.root, "--config", dr.o.config}, args...)
	cmd := exec.CommandContext(ctx, dr.o.clawrun, full...)
	cmd.Env = append(os.Environ(), env...)
	cmd.Stdout, cmd.Stderr = dr.logf, dr.logf
	err := cmd.Run()
	out, _ := os.ReadFile(dr.logf.Name())
	if err != nil {
		return string(out), fmt.Errorf("clawrun %s: %v", strings.Join(args, " "), err)
	}
	return string(out), nil
}

func (dr *driver) start(c *ctr) {
	dr.mu.Lock()
	dr.made = append(dr.made, c)
	dr.mu.Unlock()
	if out, err := dr.runtimeEnv(c.env, time.Minute, "run", "-d", "--bundle", c.bundle, c.id); err != nil {
		dr.die("starting the %s container: %v\n%s", c.label, err, out)
	}
}

// client runs `egressbench client ARGS` in c and returns its result.
func (dr *driver) client(c *ctr, args ...string) result {
	ctx, cancel := context.WithTimeout(context.Background(), dr.o.execTimeout)
	defer cancel()
	full := append([]string{"--root", dr.o.root, "--config", dr.o.config, "exec", c.id, "/bin/egressbench", "client"}, args...)
	cmd := exec.CommandContext(ctx, dr.o.clawrun, full...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	var res result
	lines := strings.Split(strings.TrimSpace(stdout.String()), "\n")
	if jerr := json.Unmarshal([]byte(lines[len(lines)-1]), &res); err != nil || jerr != nil {
		dr.die("client %s in the %s container: %v %v\nstdout: %s\nstderr: %s",
			strings.Join(args, " "), c.label, err, jerr, stdout.String(), stderr.String())
	}
	return res
}

// order is the direct container and other in a fresh random order:
// neither always runs right after the other (or right after a bulk
// transfer, say).
func (dr *driver) order(other *ctr) []*ctr { return dr.pair(dr.direct, other) }

// pair is a and b in a fresh random order.
func (dr *driver) pair(a, b *ctr) []*ctr {
	o := []*ctr{a, b}
	dr.rng.Shuffle(len(o), func(i, j int) { o[i], o[j] = o[j], o[i] })
	return o
}

// tlsArgs are the client's arguments for n TLS connections (mode
// latency) or n requests on one (keepalive) to the server's :443.
func (dr *driver) tlsArgs(mode string) func(c *ctr, n, warmup int) []string {
	return func(c *ctr, n, warmup int) []string {
		return append([]string{mode, "-addr", dr.o.server + ":443", "-sni", dr.o.name,
			"-n", strconv.Itoa(n), "-warmup", strconv.Itoa(warmup)}, c.trust...)
	}
}

// bulkRun is one transfer of size bytes in dir (plain HTTP on :8080) by
// c's client, and its rate in MiB/s (0 if it failed).
func (dr *driver) bulkRun(c *ctr, dir string, size int64) (result, float64) {
	r := dr.client(c, "bulk", "-addr", dr.o.server+":8080", "-host", dr.o.name+":8080",
		"-dir", dir, "-bytes", strconv.FormatInt(size, 10))
	if r.Errors > 0 || r.Nanos <= 0 {
		return r, 0
	}
	return r, float64(r.Bytes) / (1 << 20) / (float64(r.Nanos) / 1e9)
}

// measurements, per container label.
type measurements struct {
	dnsFirst   map[string]time.Duration
	tlsFirst   map[string]time.Duration
	dns        map[string][][]int64 // per round
	latency    map[string][][]int64 // per round
	bulk       map[string]map[string][]float64
	shaped     map[string]map[string][]float64 // bulk over the shaped link
	bulkCost   map[string]map[string]*bulkCost // per container and direction
	conns      map[string][]result
	rssIdle    procMem
	rssPeak    procMem // the sample with the largest VmRSS(supervisor)+VmRSS(worker), connections open
	rssAfter   procMem
	hwm        int64                    // VmHWM(supervisor)+VmHWM(worker) at the end
	cpu        map[string]time.Duration // the filter's CPU time per phase
	phaseOps   map[string]string
	phaseN     map[string]int // connections of the phases that count them
	errors     []string
	decisions  map[string]int
	restarts   int // of the filtered container's filter, and of the inspected one's
	elapsed    time.Duration
	loadBefore string
	others     float64 // CPUs used by other processes during the bench
	idle       float64 // share of the machine's CPU time left idle
	loadAfter  string
	version    string
	filterExe  string // the filter's executable (clawrun-egress, or clawrun)

	// HTTPS inspected by the filter, and direct HTTPS beside it
	inspectFirst   map[string]time.Duration
	inspectLatency map[string][][]int64 // per round
	keepAlive      map[string][][]int64 // per round
	keepAliveTLS   map[string][][]int64 // per round, the filtered (pass-through) container
	inspectShaped  map[string][]float64 // HTTPS download over the shaped link
	inspectDecided map[string]int       // the inspected container's decision log

	// The counters' cost: the filtered container against the uncounted
	// one, per container label.
	countLatency map[string][][]int64 // per round
	countBulk    map[string]map[string][]float64
	countCheck   string // what the two filters' stats files say ("" until read)
}

// bulkCost is what the bulk transfers of one path cost the machine: the
// bytes moved, their time, and the CPU time the whole machine was busy.
type bulkCost struct {
	bytes      int64
	wall, busy time.Duration
}

// run measures everything and returns the table, and whether anything
// failed.
func (dr *driver) run() (string, bool) {
	o := dr.o
	m := &measurements{
		dnsFirst: map[string]time.Duration{}, tlsFirst: map[string]time.Duration{}, dns: map[string][][]int64{}, latency: map[string][][]int64{},
		bulk: map[string]map[string][]float64{}, conns: map[string][]result{},
		bulkCost: map[string]map[string]*bulkCost{},
		shaped:   map[string]map[string][]float64{},
		cpu:      map[string]time.Duration{}, phaseOps: map[string]string{}, phaseN: map[string]int{},
		inspectFirst: map[string]time.Duration{}, inspectLatency: map[string][][]int64{},
		keepAlive: map[string][][]int64{}, keepAliveTLS: map[string][][]int64{}, inspectShaped: map[string][]float64{},
		countLatency: map[string][][]int64{}, countBulk: map[string]map[string][]float64{},
	}
	m.loadBefore = stats.LoadAvg()
	m.version = versionOf(o.clawrun)
	t0 := time.Now()
	busy0, idle0, own0 := machineBusy(), machineIdle(), dr.ownCPU()
	dr.raw.WriteString("phase,container,round,value\n")
	fmt.Fprintf(os.Stderr, "egressbench: starting the direct, the filtered, the uncounted and the inspected container\n")
	for _, c := range dr.all {
		dr.start(c)
	}
	defer dr.cleanup()
	dr.findFilter(dr.filter)
	dr.findFilter(dr.inspect)
	dr.findFilter(dr.uncounted)
	m.filterExe, _ = os.Readlink("/proc/" + strconv.Itoa(dr.filter.sup) + "/exe")
	filterCPU0 := dr.filter.cpu() + dr.inspect.cpu() + dr.uncounted.cpu()

	// Idle: the filter as a container gets it, before any traffic.
	time.Sleep(o.settle)
	m.rssIdle = dr.mem()

	server53 := o.server + ":53"
	dnsArgs := func(_ *ctr, n, warmup int) []string {
		return []string{"dns", "-server", server53, "-name", o.name, "-want", o.server,
			"-n", strconv.Itoa(n), "-warmup", strconv.Itoa(warmup)}
	}
	// A failed query, handshake or transfer makes the run worthless: stop.
	// Failed concurrent connections are a result: they are reported, and
	// the bench then exits non-zero.
	check := func(c *ctr, what string, r result) {
		if r.Errors == 0 {
			return
		}
		msg := fmt.Sprintf("%s, %s: %d failed (first: %s)", what, c.label, r.Errors, r.FirstError)
		if what != "concurrent connections" {
			dr.die("%s", msg)
		}
		m.errors = append(m.errors, msg)
	}

	// A timed phase of the direct container and other: each one's very
	// first operation alone (the filter's cold path; none if first is
	// nil), then rounds of n in a shuffled order.
	timed := func(phase, what string, other *ctr, args func(c *ctr, n, warmup int) []string, n int, first map[string]time.Duration, rounds map[string][][]int64) {
		cpu0 := other.cpu()
		if first != nil {
			for _, c := range []*ctr{other, dr.direct} {
				r := dr.client(c, args(c, 1, 0)...)
				check(c, what+", the first", r)
				if len(r.Samples) == 1 {
					first[c.label] = time.Duration(r.Samples[0])
					dr.rawf(phase+"-first", c.label, 0, r.Samples[0])
				}
			}
		}
		for round := range o.rounds {
			for _, c := range dr.order(other) {
				r := dr.client(c, args(c, n, 2)...)
				check(c, what, r)
				rounds[c.label] = append(rounds[c.label], r.Samples)
				for _, s := range r.Samples {
					dr.rawf(phase, c.label, round, s)
				}
			}
		}
		m.cpu[phase] = other.cpu() - cpu0
	}

	// DNS: the filter's very first query, then rounds of repeated ones.
	fmt.Fprintf(os.Stderr, "egressbench: DNS\n")
	timed("dns", "DNS queries", dr.filter, dnsArgs, o.dnsN, m.dnsFirst, m.dns)
	m.phaseOps["dns"] = fmt.Sprintf("%d queries", 1+o.rounds*(o.dnsN+2))

	// TLS latency: the filter's first connection (its first proxied flow),
	// then rounds.
	fmt.Fprintf(os.Stderr, "egressbench: TLS connection latency\n")
	tlsArgs := dr.tlsArgs
	timed("tls", "TLS connections", dr.filter, tlsArgs("latency"), o.block, m.tlsFirst, m.latency)
	m.phaseN["tls"] = 1 + o.rounds*(o.block+2)
	m.phaseOps["tls"] = fmt.Sprintf("%d connections", m.phaseN["tls"])
	// Requests on an open pass-through connection: what a hop through
	// the filter's process costs a request when nothing is decrypted,
	// the floor under the inspected keep-alive figure.
	fmt.Fprintf(os.Stderr, "egressbench: TLS: requests on an open connection\n")
	timed("keepalive-tls", "requests on an open TLS connection", dr.filter, tlsArgs("keepalive"), o.block, nil, m.keepAliveTLS)
	m.phaseOps["keepalive-tls"] = fmt.Sprintf("%d requests on %d connections", o.rounds*(o.block+2), o.rounds)

	// HTTPS inspected by the filter, against direct HTTPS: a connection
	// and its first request (the filter's first one alone: its first
	// leaf certificate and upstream connection), then requests on a
	// connection already open.
	fmt.Fprintf(os.Stderr, "egressbench: inspected HTTPS: connection latency\n")
	timed("tls-inspected", "inspected TLS connections", dr.inspect, tlsArgs("latency"), o.block, m.inspectFirst, m.inspectLatency)
	m.phaseN["tls-inspected"] = 1 + o.rounds*(o.block+2)
	m.phaseOps["tls-inspected"] = fmt.Sprintf("%d connections", m.phaseN["tls-inspected"])
	fmt.Fprintf(os.Stderr, "egressbench: inspected HTTPS: requests on an open connection\n")
	timed("keepalive", "requests on an open inspected connection", dr.inspect, tlsArgs("keepalive"), o.block, nil, m.keepAlive)
	m.phaseOps["keepalive"] = fmt.Sprintf("%d requests on %d connections", o.rounds*(o.block+2), o.rounds)

	// Bulk, one direction after the other: over the veths as they are
	// (the filter's own limit), then over a link shaped like an internet
	// connection's (where the link is the limit).
	bulk := func(phase string, mib int, into map[string]map[string][]float64) {
		size := int64(mib) << 20
		for _, dir := range []string{"down", "up"} {
			cpu0 := dr.filter.cpu()
			for round := range o.bulkRuns {
				for _, c := range dr.order(dr.filter) {
					r, mibs := dr.bulkRun(c, dir, size)
					check(c, phase+" "+dir, r)
					if mibs == 0 {
						continue
					}
					if into[c.label] == nil {
						into[c.label] = map[string][]float64{}
					}
					into[c.label][dir] = append(into[c.label][dir], mibs)
					if phase == "bulk" {
						if m.bulkCost[c.label] == nil {
							m.bulkCost[c.label] = map[string]*bulkCost{}
						}
						bc := m.bulkCost[c.label][dir]
						if bc == nil {
							bc = &bulkCost{}
							m.bulkCost[c.label][dir] = bc
						}
						bc.bytes += r.Bytes
						bc.wall += time.Duration(r.Nanos)
						bc.busy += time.Duration(r.BusyNS)
					}
					dr.rawf(phase+"-"+dir+"-mibs", c.label, round, int64(mibs))
				}
			}
			m.cpu[phase+"-"+dir] = dr.filter.cpu() - cpu0
			m.phaseOps[phase+"-"+dir] = fmt.Sprintf("%d MiB", o.bulkRuns*mib)
		}
	}
	fmt.Fprintf(os.Stderr, "egressbench: bulk transfers\n")
	bulk("bulk", o.bulkMiB, m.bulk)
	fmt.Fprintf(os.Stderr, "egressbench: the counters' cost: the filtered container against the uncounted one\n")
	dr.countingAB(m, check)
	if o.shapeRate != "" && len(o.shapeLinks) > 0 {
		fmt.Fprintf(os.Stderr, "egressbench: bulk transfers over a %s link\n", o.shapeRate)
		undo, err := shapeLinks(o.shapeLinks, o.shapeRate)
		if err != nil {
			undo()
			dr.die("shaping the links: %v", err)
		}
		bulk("shaped", o.shapedMiB, m.shaped)
		fmt.Fprintf(os.Stderr, "egressbench: inspected HTTPS downloads over a %s link\n", o.shapeRate)
		dr.inspectedDownloads(m, check)
		undo()
	}

	// Many connections at once.
	fmt.Fprintf(os.Stderr, "egressbench: %d concurrent connections\n", o.conns)
	cpu0 := dr.filter.cpu()
	for round := range o.connRuns {
		for _, c := range dr.order(dr.filter) {
			var stop func() procMem
			if c.filtered {
				stop = dr.sampleMem()
			}
			r := dr.client(c, "conns", "-addr", o.server+":8080", "-host", o.name+":8080",
				"-n", strconv.Itoa(o.conns), "-hold", o.connHold.String())
			if stop != nil {
				if p := stop(); p.total() > m.rssPeak.total() {
					m.rssPeak = p
				}
			}
			check(c, "concurrent connections", r)
			m.conns[c.label] = append(m.conns[c.label], r)
			dr.rawf("conns-established-ns", c.label, round, r.EstablishNS)
			dr.rawf("conns-echo-ns", c.label, round, r.EchoNS)
		}
	}
	m.cpu["conns"] = dr.filter.cpu() - cpu0
	m.phaseOps["conns"] = fmt.Sprintf("%d connections", o.connRuns*o.conns)

	// After: the connections are gone; what does the filter keep?
	time.Sleep(o.after)
	m.rssAfter = dr.mem()
	m.hwm = readStatusBytes(dr.filter.sup, "VmHWM") + readStatusBytes(dr.filter.worker, "VmHWM")
	for _, c := range []*ctr{dr.filter, dr.inspect} {
		if st, err := dr.status(c); err == nil {
			m.restarts += st.Restarts
		}
	}
	// Every filtered operation must have gone through the filter: a
	// connection that did not would have measured the direct path. The
	// log's rate cap counts what it drops (a burst of a thousand
	// connections is past it) on a line it writes when its window ends.
	// The inspected container's requests are each a record of their own
	// (protocol https), beside their connection's.
	inspectedConns := 1 + o.rounds*(o.block+2)
	inspectedRequests := inspectedConns + o.rounds*(o.block+2)
	if len(m.inspectShaped) > 0 {
		inspectedRequests += o.bulkRuns
	}
	wants := []struct {
		c   *ctr
		key string
		n   int
	}{
		{dr.filter, "dns allow", 1 + o.rounds*(o.dnsN+2)},
		{dr.filter, "tls allow", 1 + o.rounds*(o.block+2)},
		{dr.filter, "http allow", 2*o.bulkRuns + o.connRuns*o.conns},
		{dr.inspect, "https allow", inspectedRequests},
	}
	logs := func(c *ctr) map[string]int {
		if c == dr.inspect {
			return m.inspectDecided
		}
		return m.decisions
	}
	missing := func() []string {
		var out []string
		for _, want := range wants {
			log := logs(want.c)
			if got := log[want.key] + log[droppedKey]; got < want.n {
				out = append(out, fmt.Sprintf("the %s container's decision log has %d %q records (and %d dropped by its rate cap), want at least %d: not all its traffic went through the filter",
					want.c.label, log[want.key], want.key, log[droppedKey], want.n))
			}
		}
		return out
	}
	for deadline := time.Now().Add(decisionlog.DefaultLogLimits.Window + 3*time.Second); ; time.Sleep(250 * time.Millisecond) {
		m.decisions = dr.decisions(dr.filter)
		m.inspectDecided = dr.decisions(dr.inspect)
		if len(missing()) == 0 || time.Now().After(deadline) {
			break
		}
	}
	m.errors = append(m.errors, missing()...)
	m.loadAfter = stats.LoadAvg()
	// What the machine did besides the bench: all CPU time used meanwhile
	// less ours (this driver, the runtime and the clients it reaped, the
	// servers, the filters). The filtered path needs three busy processes
	// at once, the direct one two: with 2 CPUs, other load costs the
	// filtered figures more.
	elapsed := time.Since(t0)
	ours := dr.ownCPU() - own0 + dr.filter.cpu() + dr.inspect.cpu() + dr.uncounted.cpu() - filterCPU0
	others := machineBusy() - busy0 - ours
	m.others = max(0, float64(others)/float64(elapsed))
	if b, i := machineBusy()-busy0, machineIdle()-idle0; b+i > 0 {
		m.idle = float64(i) / float64(b+i)
	}
	dr.cleanup()
	m.elapsed = time.Since(t0)
	table, failed := dr.render(m), len(m.errors) > 0 || m.restarts > 0
	if len(o.churn.bundles) > 0 {
		churnTable, churnFailed := dr.churn(o.churn)
		dr.cleanup()
		table, failed = table+churnTable, failed || churnFailed
	}
	return table, failed
}

// inspectedDownloads times HTTPS downloads (TLS on :443, the handshake
// untimed), direct and inspected in a shuffled order, into
// m.inspectShaped; check judges each result.
func (dr *driver) inspectedDownloads(m *measurements, check func(*ctr, string, result)) {
	o := dr.o
	const phase = "shaped-inspected-down"
	size := int64(o.shapedMiB) << 20
	cpu0 := dr.inspect.cpu()
	for round := range o.bulkRuns {
		for _, c := range dr.order(dr.inspect) {
			r := dr.client(c, append([]string{"bulk", "-addr", o.server + ":443", "-host", o.name, "-tls-sni", o.name,
				"-dir", "down", "-bytes", strconv.FormatInt(size, 10)}, c.trust...)...)
			check(c, "inspected HTTPS download", r)
			if r.Nanos <= 0 {
				continue
			}
			mibs := float64(r.Bytes) / (1 << 20) / (float64(r.Nanos) / 1e9)
			m.inspectShaped[c.label] = append(m.inspectShaped[c.label], mibs)
			dr.rawf(phase+"-mibs", c.label, round, int64(mibs))
		}
	}
	m.cpu[phase] = dr.inspect.cpu() - cpu0
	m.phaseOps[phase] = fmt.Sprintf("%d MiB", o.bulkRuns*o.shapedMiB)
}

func (dr *driver) rawf(phase, label string, round int, v int64) {
	fmt.Fprintf(&dr.raw, "%s,%q,%d,%d\n", phase, label, round, v)
}

// filterStatus is the part of egress-status.json the bench reads.
type filterStatus struct {
	State      string `json:"state"`
	Supervisor int    `json:"supervisor_pid"`
	Worker     int    `json:"worker_pid"`
	Restarts   int    `json:"restarts"`
}

func (dr *driver) status(c *ctr) (filterStatus, error) {
	var st filterStatus
	data, err := os.ReadFile(filepath.Join(dr.o.root, c.id, "egress-status.json"))
	if err != nil {
		return st, err
	}
	err = json.Unmarshal(data, &st)
	return st, err
}

// findFilter reads the pids of c's filter: the supervisor from
// egress.json, the worker from egress-status.json (both in the
// container's state dir).
func (dr *driver) findFilter(c *ctr) {
	var rec struct {
		Supervisor int `json:"supervisor_pid"`
	}
	data, err := os.ReadFile(filepath.Join(dr.o.root, c.id, "egress.json"))
	if err == nil {
		err = json.Unmarshal(data, &rec)
	}
	if err != nil || rec.Supervisor <= 0 {
		dr.die("the %s container has no egress filter (egress.json: %v)", c.label, err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		st, err := dr.status(c)
		if err == nil && st.State == "running" && st.Worker > 0 {
			if st.Supervisor != rec.Supervisor {
				dr.die("egress.json says supervisor %d, egress-status.json %d", rec.Supervisor, st.Supervisor)
			}
			c.sup, c.worker = st.Supervisor, st.Worker
			return
		}
		if time.Now().After(deadline) {
			dr.die("the %s container's egress filter is not running: %+v %v", c.label, st, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// procMem is the filtered container's filter's resident memory: VmRSS of each process, and
// for the notes how it splits (anonymous, file-backed: the binary's pages,
// which the two processes share) and the proportional share (PSS).
type procMem struct {
	sup, worker  int64
	anon, file   int64 // RssAnon, RssFile, both processes
	pss, pssAnon int64 // from smaps_rollup, both processes
}

func (p procMem) total() int64 { return p.sup + p.worker }

func (dr *driver) mem() procMem {
	p := dr.memOf()
	f := dr.filter
	if p.sup == 0 || p.worker == 0 {
		dr.die("the egress filter's processes are gone (supervisor %d, worker %d)", f.sup, f.worker)
	}
	p.pss = readKB("/proc/"+strconv.Itoa(f.sup)+"/smaps_rollup", "Pss") +
		readKB("/proc/"+strconv.Itoa(f.worker)+"/smaps_rollup", "Pss")
	p.pssAnon = readKB("/proc/"+strconv.Itoa(f.sup)+"/smaps_rollup", "Pss_Anon") +
		readKB("/proc/"+strconv.Itoa(f.worker)+"/smaps_rollup", "Pss_Anon")
	return p
}

// memOf reads what /proc/PID/status says (cheap enough to sample).
func (dr *driver) memOf() procMem {
	f := dr.filter
	p := procMem{sup: readStatusBytes(f.sup, "VmRSS"), worker: readStatusBytes(f.worker, "VmRSS")}
	for _, pid := range []int{f.sup, f.worker} {
		p.anon += readStatusBytes(pid, "RssAnon")
		p.file += readStatusBytes(pid, "RssFile")
	}
	return p
}

// sampleMem samples the filter's memory every 20 ms until the returned
// function is called, which returns the sample with the largest RSS.
func (dr *driver) sampleMem() func() procMem {
	stop := make(chan struct{})
	done := make(chan procMem)
	go func() {
		var peak procMem
		t := time.NewTicker(20 * time.Millisecond)
		defer t.Stop()
		for {
			if p := dr.memOf(); p.total() > peak.total() {
				peak = p
			}
			select {
			case <-stop:
				done <- peak
				return
			case <-t.C:
			}
		}
	}()
	return func() procMem { close(stop); return <-done }
}

// readStatusBytes reads a "kB" field of /proc/PID/status; 0 if unreadable.
func readStatusBytes(pid int, key string) int64 {
	return readKB("/proc/"+strconv.Itoa(pid)+"/status", key)
}

// readKB reads a "Key: N kB" line of a /proc file, in bytes; 0 if absent.
func readKB(path, key string) int64 {
	f, err := os.Open(path)
	if err != nil {
		return 0
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		if !ok || k != key {
			continue
		}
		fields := strings.Fields(v)
		if len(fields) == 0 {
			return 0
		}
		n, _ := strconv.ParseInt(fields[0], 10, 64)
		return n << 10
	}
	return 0
}

// cpu is the user+system time of c's filter's two processes so far.
func (c *ctr) cpu() time.Duration {
	return procCPU(c.sup) + procCPU(c.worker)
}

// ownCPU is the CPU time of this driver, of the children it waited for
// (the runtime, and the clients the runtime reaped) and of the servers.
func (dr *driver) ownCPU() time.Duration {
	var self, children syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &self)
	_ = syscall.Getrusage(syscall.RUSAGE_CHILDREN, &children)
	d := time.Duration(self.Utime.Nano() + self.Stime.Nano() + children.Utime.Nano() + children.Stime.Nano())
	if dr.o.serverPid > 0 {
		d += procCPU(dr.o.serverPid)
	}
	return d
}

// machineBusy is the CPU time all CPUs spent not idle so far (/proc/stat).
func machineBusy() time.Duration { return machineCPU(false) }

// machineIdle is the CPU time all CPUs spent idle (or waiting for I/O).
func machineIdle() time.Duration { return machineCPU(true) }

func machineCPU(idle bool) time.Duration {
	data, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0
	}
	line, _, _ := strings.Cut(string(data), "\n")
	f := strings.Fields(line)
	if len(f) < 9 || f[0] != "cpu" {
		return 0
	}
	// user nice system idle iowait irq softirq steal
	var ticks int64
	for i, v := range f[1:9] {
		if (i == 3 || i == 4) != idle {
			continue
		}
		n, _ := strconv.ParseInt(v, 10, 64)
		ticks += n
	}
	return time.Duration(ticks) * time.Second / clkTck
}

// clkTck is USER_HZ, 100 on every Linux architecture Go supports.
const clkTck = 100

func procCPU(pid int) time.Duration {
	data, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0
	}
	i := bytes.LastIndexByte(data, ')')
	if i < 0 {
		return 0
	}
	f := strings.Fields(string(data[i+1:]))
	// After the command: state is field 3 of the line, utime 14, stime 15.
	if len(f) < 13 {
		return 0
	}
	u, _ := strconv.ParseInt(f[11], 10, 64)
	s, _ := strconv.ParseInt(f[12], 10, 64)
	return time.Duration(u+s) * time.Second / clkTck
}

// decisions counts c's decision log lines by protocol and decision ("tls
// allow", "dns allow", ...).
// droppedKey counts, in decisions(), the decisions the log's rate cap
// dropped.
const droppedKey = "dropped by the rate cap"

func (dr *driver) decisions(c *ctr) map[string]int {
	out := map[string]int{}
	base := filepath.Join(dr.o.logDir, c.id+".egress.jsonl")
	paths := []string{base}
	for i := 1; i <= 5; i++ {
		paths = append(paths, base+"."+strconv.Itoa(i))
	}
	for _, p := range paths {
		data, err := os.ReadFile(p)
		if errors.Is(err, os.ErrNotExist) {
			continue
		}
		if err != nil {
			dr.die("decision log: %v", err)
		}
		for line := range strings.SplitSeq(string(data), "\n") {
			if line == "" {
				continue
			}
			var d decisionlog.Record
			if err := json.Unmarshal([]byte(line), &d); err != nil {
				out["unparsable"]++
				continue
			}
			if d.Dropped > 0 {
				out[droppedKey] += int(d.Dropped)
				continue
			}
			out[d.Protocol+" "+d.Decision]++
		}
	}
	return out
}

func versionOf(bin string) string {
	out, err := exec.Command(bin, "--version").Output()
	line, _, _ := strings.Cut(string(out), "\n")
	if err != nil || line == "" {
		return "?"
	}
	return strings.TrimSpace(line)
}

// shapeLinks puts a token bucket of rate on the egress of each NETNS/IFNAME
// and returns what removes them (also after a failure).
func shapeLinks(links []string, rate string) (undo func(), err error) {
	var done []string
	tc := func(link string, args ...string) error {
		ns, dev, ok := strings.Cut(link, "/")
		if !ok {
			return fmt.Errorf("%q: want NETNS/IFNAME", link)
		}
		cmd := append([]string{"tc", "qdisc"}, args[0], "dev", dev)
		cmd = append(cmd, args[1:]...)
		if ns != "-" {
			cmd = append([]string{"ip", "netns", "exec", ns}, cmd...)
		}
		out, err := exec.Command(cmd[0], cmd[1:]...).CombinedOutput()
		if err != nil {
			return fmt.Errorf("%s: %v: %s", strings.Join(cmd, " "), err, out)
		}
		return nil
	}
	undo = func() {
		for _, link := range done {
			if err := tc(link, "del", "root"); err != nil {
				fmt.Fprintf(os.Stderr, "egressbench: %v\n", err)
			}
		}
	}
	for _, link := range links {
		// A 256 KiB bucket (0.2 ms at 10 Gbit/s, 2 ms at 1) and 50 ms of
		// queue: a link, not a shaper that stalls the stream.
		if err := tc(link, "add", "root", "tbf", "rate", rate, "burst", "256kb", "latency", "50ms"); err != nil {
			return undo, err
		}
		done = append(done, link)
	}
	return undo, nil
}
