package inspect

import (
	"bufio"
	"crypto/tls"
	"io"
	"net/http"
	"slices"
	"strconv"
	"testing"
	"time"
)

// What inspection adds to a client's HTTPS, over loopback: the same client
// (raw TLS, one HTTP/1.1 GET, the whole answer read) once straight to the
// upstream, once through the engine. Each benchmark reports the median
// and 99th percentile of its operations (p50-ns/op, p99-ns/op);
// inspected minus direct is the cost.
//
//	go test -run '^$' -bench . -benchtime 2000x ./egress/inspect/

// BenchmarkConnect: a new connection (TLS handshake) and its first
// request; inspected as the filter does (its connections share the
// upstream's, Options.Pool), and with an upstream connection of each
// client connection's own.
func BenchmarkConnect(b *testing.B) {
	up := newUpstream(b, false, nil)
	b.Run("direct", func(b *testing.B) {
		cfg := &tls.Config{RootCAs: up.roots, ServerName: testHost, NextProtos: []string{protoHTTP1}}
		benchConnect(b, up.addr(), cfg)
	})
	b.Run("inspected", func(b *testing.B) {
		h := newHarness(b, up)
		h.pool.Store("bench")
		benchConnect(b, h.ln.Addr().String(), h.clientTLS(protoHTTP1))
	})
	b.Run("inspected-unpooled", func(b *testing.B) {
		h := newHarness(b, up)
		benchConnect(b, h.ln.Addr().String(), h.clientTLS(protoHTTP1))
	})
}

// BenchmarkRequest: a request on a connection already open.
func BenchmarkRequest(b *testing.B) {
	up := newUpstream(b, false, nil)
	b.Run("direct", func(b *testing.B) {
		cfg := &tls.Config{RootCAs: up.roots, ServerName: testHost, NextProtos: []string{protoHTTP1}}
		benchRequest(b, up.addr(), cfg)
	})
	b.Run("inspected", func(b *testing.B) {
		h := newHarness(b, up)
		benchRequest(b, h.ln.Addr().String(), h.clientTLS(protoHTTP1))
	})
}

// BenchmarkRequestAfterIdle: a request on a connection already open, after
// 1 ms without traffic, as an agent's requests come (the engine's and the
// upstream's goroutines have gone to sleep; make bench's keep-alive phase
// paces its requests too). The pause is not timed.
func BenchmarkRequestAfterIdle(b *testing.B) {
	up := newUpstream(b, false, nil)
	b.Run("direct", func(b *testing.B) {
		cfg := &tls.Config{RootCAs: up.roots, ServerName: testHost, NextProtos: []string{protoHTTP1}}
		benchRequestAfter(b, up.addr(), cfg, time.Millisecond)
	})
	b.Run("inspected", func(b *testing.B) {
		h := newHarness(b, up)
		h.pool.Store("bench")
		benchRequestAfter(b, h.ln.Addr().String(), h.clientTLS(protoHTTP1), time.Millisecond)
	})
}

// BenchmarkRequestH2: a request on an HTTP/2 connection already open
// (HTTP/2 upstream too).
func BenchmarkRequestH2(b *testing.B) {
	up := newUpstream(b, true, nil)
	url := "https://" + testHost + "/"
	b.Run("direct", func(b *testing.B) {
		h := &harness{t: b, up: up}
		client := h.h2ClientTo(up.addr(), &tls.Config{RootCAs: up.roots, ServerName: testHost, NextProtos: []string{protoH2}})
		benchOps(b, func() { get(b, client, url) })
	})
	b.Run("inspected", func(b *testing.B) {
		h := newHarness(b, up)
		client := h.h2Client()
		benchOps(b, func() { get(b, client, url) })
	})
}

const benchRequestText = "GET /v1/models HTTP/1.1\r\nHost: " + testHost + "\r\nUser-Agent: bench\r\nAccept: */*\r\n\r\n"

func benchConnect(b *testing.B, addr string, cfg *tls.Config) {
	benchOps(b, func() {
		c, err := tls.Dial("tcp", addr, cfg)
		if err != nil {
			b.Fatal(err)
		}
		getOn(b, c, bufio.NewReader(c))
		c.Close()
	})
}

func benchRequest(b *testing.B, addr string, cfg *tls.Config) {
	benchRequestAfter(b, addr, cfg, 0)
}

// benchRequestAfter times requests on one open connection, each after a
// pause of idle (not timed).
func benchRequestAfter(b *testing.B, addr string, cfg *tls.Config, idle time.Duration) {
	c, err := tls.Dial("tcp", addr, cfg)
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	br := bufio.NewReader(c)
	benchOpsAfter(b, idle, func() { getOn(b, c, br) })
}

// getOn sends one GET and reads its whole answer.
func getOn(b *testing.B, c *tls.Conn, br *bufio.Reader) {
	if _, err := io.WriteString(c, benchRequestText); err != nil {
		b.Fatal(err)
	}
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		b.Fatal(err)
	}
	if _, err := io.Copy(io.Discard, resp.Body); err != nil || resp.StatusCode != 200 {
		b.Fatalf("status %d, %v", resp.StatusCode, err)
	}
	resp.Body.Close()
}

func get(b *testing.B, client *http.Client, url string) {
	resp, err := client.Get(url)
	if err != nil {
		b.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 {
		b.Fatalf("status %d", resp.StatusCode)
	}
}

// benchOps runs op b.N times (after one warm-up) and reports the median
// and 99th percentile of its durations.
func benchOps(b *testing.B, op func()) { benchOpsAfter(b, 0, op) }

// benchOpsAfter is benchOps with a pause of idle before each operation,
// left out of its duration.
func benchOpsAfter(b *testing.B, idle time.Duration, op func()) {
	op()
	durations := make([]time.Duration, 0, b.N)
	b.ResetTimer()
	for range b.N {
		if idle > 0 {
			time.Sleep(idle)
		}
		start := time.Now()
		op()
		durations = append(durations, time.Since(start))
	}
	b.StopTimer()
	slices.Sort(durations)
	b.ReportMetric(float64(durations[len(durations)/2].Nanoseconds()), "p50-ns/op")
	b.ReportMetric(float64(durations[len(durations)*99/100].Nanoseconds()), "p99-ns/op")
}

// downloadBytes is the size of BenchmarkDownload's response.
const downloadBytes = 32 << 20

// BenchmarkDownload: a 32 MiB response (Content-Length known, written in
// 64 KiB pieces) read on a connection already open; MB/s is the rate.
func BenchmarkDownload(b *testing.B) {
	piece := make([]byte, 64<<10)
	up := newUpstream(b, false, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Length", strconv.Itoa(downloadBytes))
		for sent := 0; sent < downloadBytes; sent += len(piece) {
			if _, err := w.Write(piece); err != nil {
				return
			}
		}
	})
	b.Run("direct", func(b *testing.B) {
		cfg := &tls.Config{RootCAs: up.roots, ServerName: testHost, NextProtos: []string{protoHTTP1}}
		benchDownload(b, up.addr(), cfg)
	})
	b.Run("inspected", func(b *testing.B) {
		h := newHarness(b, up)
		benchDownload(b, h.ln.Addr().String(), h.clientTLS(protoHTTP1))
	})
}

func benchDownload(b *testing.B, addr string, cfg *tls.Config) {
	b.SetBytes(downloadBytes)
	benchRequest(b, addr, cfg)
}
