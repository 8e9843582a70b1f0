package main

// The measuring side, run inside a container by `clawrun exec`: the same
// binary and the same arguments in the direct and the filtered container.
// Each mode prints one JSON result on stdout. Times are taken inside the
// process with the monotonic clock, so exec's own cost is not in them.

import (
	"bufio"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	goruntime "runtime"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/miekg/dns"
)

// result is what a client run reports.
type result struct {
	// latency and dns: one duration per measured operation.
	Samples []int64 `json:"samples_ns,omitempty"`
	// bulk: payload bytes moved and the time it took.
	Bytes int64 `json:"bytes,omitempty"`
	Nanos int64 `json:"nanos,omitempty"`
	// bulk: CPU time the whole machine was busy (any process, the
	// kernel) during the transfer, from /proc/stat (not namespaced).
	BusyNS int64 `json:"busy_ns,omitempty"`
	// conns: how many connections got through each phase, and how long
	// each phase took.
	N           int   `json:"n,omitempty"`
	Established int   `json:"established,omitempty"`
	Echoed      int   `json:"echoed,omitempty"`
	EstablishNS int64 `json:"establish_ns,omitempty"`
	EchoNS      int64 `json:"echo_ns,omitempty"`
	// churn: its connections' setup times.
	Churn *churnResult `json:"churn,omitempty"`
	// Failed operations (not in Samples) and the first failure.
	Errors     int    `json:"errors,omitempty"`
	FirstError string `json:"first_error,omitempty"`
}

func (r *result) fail(err error) {
	if r.Errors == 0 {
		r.FirstError = err.Error()
	}
	r.Errors++
}

func client(args []string) {
	if len(args) < 1 {
		usage()
	}
	var res result
	switch args[0] {
	case "latency":
		res = clientLatency(args[1:])
	case "keepalive":
		res = clientKeepAlive(args[1:])
	case "bulk":
		res = clientBulk(args[1:])
	case "conns":
		res = clientConns(args[1:])
	case "dns":
		res = clientDNS(args[1:])
	case "churn":
		res = clientChurn(args[1:])
	default:
		usage()
	}
	if err := json.NewEncoder(os.Stdout).Encode(res); err != nil {
		fatalf("client: %v", err)
	}
}

// clientLatency times -n sequential TLS connections: connect, full
// handshake (no session resumption), one GET and its whole response.
func clientLatency(args []string) result {
	fs := flag.NewFlagSet("latency", flag.ExitOnError)
	addr := fs.String("addr", "", "ip:port of the TLS server")
	sni := fs.String("sni", "bench.test", "server name")
	trust := trustFlags(fs)
	n := fs.Int("n", 50, "measured connections")
	warmup := fs.Int("warmup", 2, "unmeasured connections first")
	_ = fs.Parse(args)
	// No ClientSessionCache: every connection does a full handshake.
	cfg := &tls.Config{ServerName: *sni, RootCAs: trust.pool(), MinVersion: tls.VersionTLS13}
	req := "GET / HTTP/1.1\r\nHost: " + *sni + "\r\nUser-Agent: egressbench\r\nConnection: close\r\n\r\n"
	return timed(*warmup, *n, func() error { return tlsRequest(*addr, cfg, req, *sni) })
}

// clientKeepAlive opens one TLS connection (untimed), then times -n
// requests on it, one after the other: each GET written and its whole
// response read.
func clientKeepAlive(args []string) result {
	fs := flag.NewFlagSet("keepalive", flag.ExitOnError)
	addr := fs.String("addr", "", "ip:port of the TLS server")
	sni := fs.String("sni", "bench.test", "server name")
	trust := trustFlags(fs)
	n := fs.Int("n", 50, "measured requests")
	warmup := fs.Int("warmup", 2, "unmeasured requests first")
	_ = fs.Parse(args)
	var res result
	cfg := &tls.Config{ServerName: *sni, RootCAs: trust.pool(), MinVersion: tls.VersionTLS13}
	tc, err := dialTLS(*addr, cfg)
	if err != nil {
		res.fail(err)
		return res
	}
	defer tc.Close()
	_ = tc.SetDeadline(time.Now().Add(time.Minute))
	br := bufio.NewReader(tc)
	req := "GET / HTTP/1.1\r\nHost: " + *sni + "\r\nUser-Agent: egressbench\r\n\r\n"
	return timed(*warmup, *n, func() error {
		if _, err := io.WriteString(tc, req); err != nil {
			return err
		}
		return readHostAnswer(br, *sni)
	})
}

// trust is where a client takes the roots it verifies the server with:
// the fake internet's CA (the direct path), or the bundle an environment
// variable names (the runtime's trust bundle, for the inspected path).
type trust struct{ file, env *string }

func trustFlags(fs *flag.FlagSet) trust {
	return trust{
		file: fs.String("ca", "/etc/bench-ca.pem", "CA of the server's certificate"),
		env:  fs.String("ca-env", "", "take the CA bundle from the file this variable names instead of -ca (SSL_CERT_FILE: the runtime's)"),
	}
}

func (t trust) pool() *x509.CertPool {
	file := *t.file
	if *t.env != "" {
		if file = os.Getenv(*t.env); file == "" {
			fatalf("-ca-env: %s is not set", *t.env)
		}
	}
	pem, err := os.ReadFile(file)
	if err != nil {
		fatalf("%v", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		fatalf("no certificate in %s", file)
	}
	return pool
}

// timed runs op warmup times, then n times more, timing each of those.
func timed(warmup, n int, op func() error) result {
	var res result
	goruntime.GC()
	for i := 0; i < warmup+n; i++ {
		t0 := time.Now()
		err := op()
		d := time.Since(t0)
		if err != nil {
			res.fail(err)
			continue
		}
		if i >= warmup {
			res.Samples = append(res.Samples, d.Nanoseconds())
		}
	}
	return res
}

// tlsRequest makes a TLS connection and one request on it; the answer
// must be the fake internet's for host.
func tlsRequest(addr string, cfg *tls.Config, req, host string) error {
	tc, err := dialTLS(addr, cfg)
	if err != nil {
		return err
	}
	defer tc.Close()
	_ = tc.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.WriteString(tc, req); err != nil {
		return err
	}
	return readHostAnswer(bufio.NewReader(tc), host)
}

// dialTLS connects and completes a TLS handshake.
func dialTLS(addr string, cfg *tls.Config) (*tls.Conn, error) {
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		return nil, err
	}
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	tc := tls.Client(c, cfg)
	if err := tc.Handshake(); err != nil {
		c.Close()
		return nil, fmt.Errorf("handshake: %w", err)
	}
	return tc, nil
}

// readHostAnswer reads a response that must be the fake internet's answer
// for host, body included.
func readHostAnswer(br *bufio.Reader, host string) error {
	resp, err := readResponse(br, "response", http.StatusOK)
	if err != nil {
		return err
	}
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return fmt.Errorf("response body: %w", err)
	}
	if !strings.HasPrefix(string(body), "host="+host+" ") {
		return fmt.Errorf("response: %s %q", resp.Status, body)
	}
	return nil
}

// readResponse reads a response that must have status want.
func readResponse(br *bufio.Reader, what string, want int) (*http.Response, error) {
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", what, err)
	}
	if resp.StatusCode != want {
		return nil, fmt.Errorf("%s: %s", what, resp.Status)
	}
	return resp, nil
}

// clientBulk moves -bytes over one HTTP/1.1 connection (plain, or TLS
// with -tls-sni), up (POST body) or down (response body), and times it
// from the request's first byte to the end of the response.
func clientBulk(args []string) result {
	fs := flag.NewFlagSet("bulk", flag.ExitOnError)
	addr := fs.String("addr", "", "ip:port of the bulk server")
	host := fs.String("host", "bench.test:8080", "Host header")
	dir := fs.String("dir", "down", "up or down")
	size := fs.Int64("bytes", 256<<20, "payload bytes")
	sni := fs.String("tls-sni", "", "speak TLS for this server name (the handshake is not timed)")
	trust := trustFlags(fs)
	_ = fs.Parse(args)
	var res result
	var c net.Conn
	var err error
	if *sni != "" {
		c, err = dialTLS(*addr, &tls.Config{ServerName: *sni, RootCAs: trust.pool(), MinVersion: tls.VersionTLS13})
	} else {
		c, err = net.DialTimeout("tcp", *addr, 5*time.Second)
	}
	if err != nil {
		res.fail(err)
		return res
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(2 * time.Minute))
	buf := make([]byte, 1<<20)
	br := bufio.NewReaderSize(c, 64<<10)
	goruntime.GC()
	busy0 := machineBusy()
	t0 := time.Now()
	switch *dir {
	case "up":
		if _, err := fmt.Fprintf(c, "POST /upload HTTP/1.1\r\nHost: %s\r\nContent-Type: application/octet-stream\r\nContent-Length: %d\r\nConnection: close\r\n\r\n", *host, *size); err != nil {
			res.fail(err)
			return res
		}
		for left := *size; left > 0; {
			n, err := c.Write(buf[:min(int64(len(buf)), left)])
			left -= int64(n)
			if err != nil {
				res.fail(fmt.Errorf("upload: %w", err))
				return res
			}
		}
		if _, err := readResponse(br, "upload response", http.StatusOK); err != nil {
			res.fail(err)
			return res
		}
		res.Bytes = *size
	case "down":
		if _, err := fmt.Fprintf(c, "GET /download?bytes=%d HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n\r\n", *size, *host); err != nil {
			res.fail(err)
			return res
		}
		resp, err := readResponse(br, "download response", http.StatusOK)
		if err != nil {
			res.fail(err)
			return res
		}
		var got int64
		for {
			n, err := resp.Body.Read(buf)
			got += int64(n)
			if err == io.EOF {
				break
			}
			if err != nil {
				res.fail(fmt.Errorf("download after %d bytes: %w", got, err))
				return res
			}
		}
		if got != *size {
			res.fail(fmt.Errorf("download: got %d bytes, want %d", got, *size))
			return res
		}
		res.Bytes = got
	default:
		fatalf("bulk: -dir must be up or down")
	}
	res.Nanos = time.Since(t0).Nanoseconds()
	res.BusyNS = int64(machineBusy() - busy0)
	return res
}

// clientConns opens -n connections at once to the echo server (an
// HTTP/1.1 upgrade, as a WebSocket would), waits until every one is
// established end to end (the server's 101 arrived), then sends one byte
// on each and waits for all the echoes; then it holds them -hold longer
// (for the driver to read the filter's memory) and closes them.
func clientConns(args []string) result {
	fs := flag.NewFlagSet("conns", flag.ExitOnError)
	addr := fs.String("addr", "", "ip:port of the echo server")
	host := fs.String("host", "bench.test:8080", "Host header")
	n := fs.Int("n", 1000, "connections")
	hold := fs.Duration("hold", 500*time.Millisecond, "how long to keep them open after the echoes")
	_ = fs.Parse(args)
	res := result{N: *n}
	type conn struct {
		c  net.Conn
		br *bufio.Reader
	}
	conns := make([]*conn, *n)
	var mu sync.Mutex
	failed := func(err error) {
		mu.Lock()
		res.fail(err)
		mu.Unlock()
	}
	req := "GET /ws HTTP/1.1\r\nHost: " + *host + "\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n"
	deadline := time.Now().Add(30 * time.Second)
	goruntime.GC()

	var established atomic.Int64
	var wg sync.WaitGroup
	t0 := time.Now()
	for i := range conns {
		wg.Go(func() {
			c, err := net.DialTimeout("tcp", *addr, 10*time.Second)
			if err != nil {
				failed(fmt.Errorf("dial: %w", err))
				return
			}
			_ = c.SetDeadline(deadline)
			br := bufio.NewReaderSize(c, 512)
			if _, err := io.WriteString(c, req); err != nil {
				c.Close()
				failed(fmt.Errorf("request: %w", err))
				return
			}
			if _, err := readResponse(br, "upgrade response", http.StatusSwitchingProtocols); err != nil {
				c.Close()
				failed(err)
				return
			}
			conns[i] = &conn{c, br}
			established.Add(1)
		})
	}
	wg.Wait()
	res.EstablishNS = time.Since(t0).Nanoseconds()
	res.Established = int(established.Load())

	var echoed atomic.Int64
	t1 := time.Now()
	for _, cn := range conns {
		if cn == nil {
			continue
		}
		wg.Go(func() {
			if _, err := cn.c.Write([]byte{'x'}); err != nil {
				failed(fmt.Errorf("echo write: %w", err))
				return
			}
			b, err := cn.br.ReadByte()
			if err != nil {
				failed(fmt.Errorf("echo read: %w", err))
				return
			}
			if b != 'x' {
				failed(fmt.Errorf("echo: got %q", b))
				return
			}
			echoed.Add(1)
		})
	}
	wg.Wait()
	res.EchoNS = time.Since(t1).Nanoseconds()
	res.Echoed = int(echoed.Load())
	time.Sleep(*hold)
	for _, cn := range conns {
		if cn != nil {
			cn.c.Close()
		}
	}
	return res
}

// clientDNS times -n A queries for -name, each from a new UDP socket (as a
// stub resolver does), to -server.
func clientDNS(args []string) result {
	fs := flag.NewFlagSet("dns", flag.ExitOnError)
	server := fs.String("server", "", "ip:port of the resolver")
	name := fs.String("name", "bench.test", "name to ask")
	want := fs.String("want", "", "the address the answer must hold")
	n := fs.Int("n", 50, "measured queries")
	warmup := fs.Int("warmup", 2, "unmeasured queries first")
	_ = fs.Parse(args)
	cl := &dns.Client{Net: "udp", Timeout: 3 * time.Second}
	return timed(*warmup, *n, func() error {
		m := new(dns.Msg)
		m.SetQuestion(dns.Fqdn(*name), dns.TypeA)
		m.RecursionDesired = true
		r, _, err := cl.Exchange(m, *server)
		if err != nil {
			return err
		}
		return checkAnswer(r, *want)
	})
}

func checkAnswer(r *dns.Msg, want string) error {
	if r.Rcode != dns.RcodeSuccess {
		return fmt.Errorf("dns: %s", dns.RcodeToString[r.Rcode])
	}
	var got []string
	for _, rr := range r.Answer {
		if a, ok := rr.(*dns.A); ok {
			got = append(got, a.A.String())
			if want == "" || a.A.String() == want {
				return nil
			}
		}
	}
	return fmt.Errorf("dns: answer %v, want %s", strings.Join(got, ","), want)
}
