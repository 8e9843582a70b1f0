package main

// The connection churn phase: many filtered containers each open new
// connections to the same destination at a steady rate for a while (an
// HTTP GET each, closed by the client once answered, as a client of a
// short-lived API call does). What it watches is whether a connection
// costs the same at the end as at the start: the filters dial every
// upstream from the host's network namespace, where whatever a closed
// connection leaves behind (TIME_WAIT) piles up for all of them.

import (
	"bufio"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/clawrun/clawrun/test/bench/stats"
)

// churnResult is a churn client's connections in the first and the last
// window of its run: their setup times (connect to the end of the
// response) and how many were started (answered or not).
type churnResult struct {
	StartStarted int     `json:"start_started"`
	EndStarted   int     `json:"end_started"`
	StartNS      []int64 `json:"start_ns"`
	EndNS        []int64 `json:"end_ns"`
	Started      int     `json:"started"`
}

// clientChurn opens -rate connections a second for -time, starting at
// -at, each on its own schedule (a slow one does not delay the next).
func clientChurn(args []string) result {
	fs := flag.NewFlagSet("churn", flag.ExitOnError)
	addr := fs.String("addr", "", "ip:port of the HTTP server")
	host := fs.String("host", "bench.test:8080", "Host header")
	rate := fs.Int("rate", 100, "new connections per second")
	length := fs.Duration("time", time.Minute, "how long")
	window := fs.Duration("window", 10*time.Second, "the first and the last window reported")
	at := fs.Int64("at", 0, "start at this time (Unix ns; 0: now)")
	_ = fs.Parse(args)
	start := time.Now()
	if *at > 0 {
		start = time.Unix(0, *at)
	}
	req := "GET / HTTP/1.1\r\nHost: " + *host + "\r\n\r\n"
	var (
		res  result
		mu   sync.Mutex
		wg   sync.WaitGroup
		slot = make(chan struct{}, 4000) // connections in flight, at most
	)
	res.Churn = &churnResult{}
	cr := res.Churn
	for i := 0; ; i++ {
		offset := time.Duration(int64(i) * int64(time.Second) / int64(*rate))
		if offset >= *length {
			break
		}
		time.Sleep(time.Until(start.Add(offset)))
		inStart, inEnd := offset < *window, offset >= *length-*window
		slot <- struct{}{}
		wg.Go(func() {
			defer func() { <-slot }()
			took, err := churnOnce(*addr, req)
			mu.Lock()
			defer mu.Unlock()
			cr.Started++
			switch {
			case inStart:
				cr.StartStarted++
			case inEnd:
				cr.EndStarted++
			}
			if err != nil {
				res.fail(err)
				return
			}
			switch {
			case inStart:
				cr.StartNS = append(cr.StartNS, took.Nanoseconds())
			case inEnd:
				cr.EndNS = append(cr.EndNS, took.Nanoseconds())
			}
		})
	}
	wg.Wait()
	return res
}

// churnOnce is one connection: connect, GET, the whole response, close.
func churnOnce(addr, req string) (time.Duration, error) {
	t0 := time.Now()
	c, err := net.DialTimeout("tcp", addr, 30*time.Second)
	if err != nil {
		return 0, fmt.Errorf("dial: %w", err)
	}
	defer c.Close()
	_ = c.SetDeadline(t0.Add(30 * time.Second))
	if _, err := io.WriteString(c, req); err != nil {
		return 0, fmt.Errorf("request: %w", err)
	}
	resp, err := readResponse(bufio.NewReaderSize(c, 512), "response", http.StatusOK)
	if err != nil {
		return 0, err
	}
	if _, err := io.Copy(io.Discard, resp.Body); err != nil {
		return 0, fmt.Errorf("response body: %w", err)
	}
	return time.Since(t0), nil
}

// churnOptions are the churn phase's.
type churnOptions struct {
	bundles []string      // one filtered container each
	rate    int           // new connections per second, all containers together
	length  time.Duration // of the phase
	window  time.Duration // the first and the last, compared
}

// churn runs the phase and returns its table, and whether a filter
// restarted. Failed connections are a result, in the table: past what
// the machine can carry, connections queue and time out.
func (dr *driver) churn(co churnOptions) (string, bool) {
	o := dr.o
	n := len(co.bundles)
	ctrs := make([]*ctr, n)
	fmt.Fprintf(os.Stderr, "egressbench: connection churn: starting %d filtered containers\n", n)
	for i, b := range co.bundles {
		ctrs[i] = &ctr{label: fmt.Sprintf("churn %d", i), id: fmt.Sprintf("%s-churn%d", o.idPrefix, i), bundle: b, filtered: true}
		dr.start(ctrs[i])
		dr.findFilter(ctrs[i])
	}
	workerCPU := func() time.Duration {
		var d time.Duration
		for _, c := range ctrs {
			d += procCPU(c.worker)
		}
		return d
	}
	fmt.Fprintf(os.Stderr, "egressbench: connection churn: %d connections/s for %v\n", co.rate, co.length)
	// Every client starts at the same instant, after all of them are
	// exec'd.
	loadBefore := stats.LoadAvg()
	at := time.Now().Add(5 * time.Second)
	results := make([]result, n)
	var wg sync.WaitGroup
	saved := dr.o.execTimeout
	dr.o.execTimeout = co.length + 2*time.Minute
	for i, c := range ctrs {
		wg.Go(func() {
			results[i] = dr.client(c, "churn", "-addr", o.server+":8080", "-host", o.name+":8080",
				"-rate", strconv.Itoa(co.rate/n), "-time", co.length.String(), "-window", co.window.String(),
				"-at", strconv.FormatInt(at.UnixNano(), 10))
		})
	}
	time.Sleep(time.Until(at))
	cpu0 := workerCPU()
	time.Sleep(time.Until(at.Add(co.window)))
	cpuStart := workerCPU() - cpu0
	time.Sleep(time.Until(at.Add(co.length - co.window)))
	cpu1 := workerCPU()
	wg.Wait() // the last window's connections, however long they take
	cpuEnd := workerCPU() - cpu1
	dr.o.execTimeout = saved
	twDst, twAll := timeWaits(o.server + ":8080")
	restarts := 0
	for _, c := range ctrs {
		if st, err := dr.status(c); err == nil {
			restarts += st.Restarts
		}
	}

	var startNS, endNS []int64
	var startN, endN, started, errs int
	var firstErr string
	for _, r := range results {
		cr := r.Churn
		if cr == nil {
			dr.die("a churn client returned no churn result")
		}
		startNS, endNS = append(startNS, cr.StartNS...), append(endNS, cr.EndNS...)
		startN, endN, started = startN+cr.StartStarted, endN+cr.EndStarted, started+cr.Started
		if r.Errors > 0 && firstErr == "" {
			firstErr = r.FirstError
		}
		errs += r.Errors
	}
	slices.Sort(startNS)
	slices.Sort(endNS)
	q := func(xs []int64, p float64) time.Duration {
		if len(xs) == 0 {
			return 0
		}
		return time.Duration(stats.Quantile(xs, p))
	}
	perConn := func(cpu time.Duration, conns int) time.Duration {
		if conns == 0 {
			return 0
		}
		return cpu / time.Duration(conns)
	}
	cpuS, cpuE := perConn(cpuStart, startN), perConn(cpuEnd, endN)
	p50S, p50E := q(startNS, 0.5), q(endNS, 0.5)
	ratio := func(a, b time.Duration) float64 {
		if a <= 0 {
			return 0
		}
		return float64(b) / float64(a)
	}
	verdict := "met"
	if ratio(p50S, p50E) > 1.2 || ratio(cpuS, cpuE) > 1.2 || errs > 0 || restarts > 0 {
		verdict = "**missed**"
	}
	w := co.window.Round(time.Second)
	var b strings.Builder
	fmt.Fprintf(&b, "\n#### Connection churn\n\n")
	fmt.Fprintf(&b, "%d filtered containers open %d new connections a second together, all to %s:8080 (an HTTP GET each, closed by the client once answered), for %v; the first %v against the last %v:\n\n",
		n, co.rate, o.name, co.length, w, w)
	fmt.Fprintf(&b, "| | first %v | last %v | last/first |\n|---|---|---|---|\n", w, w)
	fmt.Fprintf(&b, "| setup p50 (connect to the end of the response) | %s | %s | %.2f |\n", ms(p50S), ms(p50E), ratio(p50S, p50E))
	fmt.Fprintf(&b, "| setup p99 | %s | %s | %.2f |\n", ms(q(startNS, 0.99)), ms(q(endNS, 0.99)), ratio(q(startNS, 0.99), q(endNS, 0.99)))
	fmt.Fprintf(&b, "| filter worker CPU per connection (all workers) | %s | %s | %.2f |\n", ms(cpuS), ms(cpuE), ratio(cpuS, cpuE))
	fmt.Fprintf(&b, "| connections started | %d | %d | |\n", startN, endN)
	fmt.Fprintf(&b, "\nTarget: the last window within 1.2x of the first (setup p50, worker CPU per connection), no failure: %s. ", verdict)
	fmt.Fprintf(&b, "%d connections, %d failed", started, errs)
	if firstErr != "" {
		fmt.Fprintf(&b, " (first: %s)", firstErr)
	}
	fmt.Fprintf(&b, "; filter restarts: %d. TIME_WAIT sockets in the host's network namespace at the end: %d towards %s:8080, %d in all. ",
		restarts, twDst, o.name, twAll)
	fmt.Fprintf(&b, "Load average %s before, %s after: a machine that cannot carry the rate from the start (the first window's setup already in seconds) measures its own queue, not the filter.\n",
		loadBefore, stats.LoadAvg())
	return b.String(), restarts > 0
}

// timeWaits counts the TCP sockets in TIME_WAIT in this network namespace
// (IPv4): those whose peer is dst (ip:port), and all.
func timeWaits(dst string) (toDst, all int) {
	data, err := os.ReadFile("/proc/net/tcp")
	if err != nil {
		return -1, -1
	}
	want := procNetAddr(dst)
	for _, line := range strings.Split(string(data), "\n")[1:] {
		f := strings.Fields(line)
		if len(f) < 4 || f[3] != "06" { // TCP_TIME_WAIT
			continue
		}
		all++
		if f[2] == want {
			toDst++
		}
	}
	return toDst, all
}

// procNetAddr writes an IPv4 ip:port as /proc/net/tcp does (the address
// as a little-endian hex word, the port in hex).
func procNetAddr(addrPort string) string {
	h, p, err := net.SplitHostPort(addrPort)
	ip := net.ParseIP(h).To4()
	port, perr := strconv.Atoi(p)
	if err != nil || ip == nil || perr != nil {
		return ""
	}
	return fmt.Sprintf("%02X%02X%02X%02X:%04X", ip[3], ip[2], ip[1], ip[0], port)
}
