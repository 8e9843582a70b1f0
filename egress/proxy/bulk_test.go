package proxy

import (
	"bufio"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"testing"

	"github.com/clawrun/clawrun/egress/internal/egresstest"
	"github.com/clawrun/clawrun/runtime/policy"
)

// bulkSize is what one connection of BenchmarkProxyBulk carries.
const bulkSize = 64 << 20

// BenchmarkProxyBulk is the throughput of one connection once decided:
// TLS each way (spliced both ways between the two sockets) and a plain
// HTTP request body of known length (spliced from the client's socket
// once the read-ahead is drained).
func BenchmarkProxyBulk(b *testing.B) {
	b.Run("tls-upload", func(b *testing.B) {
		h, hello := bulkTLSHarness(b, func(c net.Conn, hello int) {
			_, _ = io.Copy(io.Discard, c)
			_, _ = c.Write([]byte{1}) // all of it arrived
		})
		b.SetBytes(bulkSize)
		for b.Loop() {
			c := h.dial()
			mustWrite(b, c, hello)
			if _, err := io.CopyN(c, zeros{}, bulkSize); err != nil {
				b.Fatal(err)
			}
			_ = c.(*net.TCPConn).CloseWrite()
			if n, _ := io.Copy(io.Discard, c); n != 1 {
				b.Fatalf("the upstream acknowledged %d bytes, want 1", n)
			}
			c.Close()
		}
	})
	b.Run("tls-download", func(b *testing.B) {
		h, hello := bulkTLSHarness(b, func(c net.Conn, hello int) {
			if _, err := io.CopyN(io.Discard, c, int64(hello)); err == nil {
				_, _ = io.CopyN(c, zeros{}, bulkSize)
			}
		})
		b.SetBytes(bulkSize)
		for b.Loop() {
			c := h.dial()
			mustWrite(b, c, hello)
			if n, err := io.Copy(io.Discard, c); n != bulkSize {
				b.Fatalf("read %d bytes (%v), want %d", n, err, bulkSize)
			}
			c.Close()
		}
	})
	b.Run("http-upload", func(b *testing.B) {
		h := newProxyHarness(b, "web.test")
		srv := startRecordingServer(b)
		h.upstream(srv.ln.Addr().String())
		h.setRules(1, policy.Endpoint{Host: "web.test"})
		h.serve()
		b.SetBytes(bulkSize)
		for b.Loop() {
			c := h.dial()
			mustWrite(b, c, fmt.Appendf(nil, "POST /up HTTP/1.1\r\nHost: web.test\r\nContent-Length: %d\r\nConnection: close\r\n\r\n", bulkSize))
			if _, err := io.CopyN(c, zeros{}, bulkSize); err != nil {
				b.Fatal(err)
			}
			resp, err := http.ReadResponse(bufio.NewReader(c), nil)
			if err != nil || resp.StatusCode != 200 {
				b.Fatalf("response %v, %v", resp, err)
			}
			c.Close()
		}
	})
}

// bulkTLSHarness is a proxy allowing a.test to an upstream that serves
// each connection (told the length of the ClientHello the proxy replays
// first), and that ClientHello.
func bulkTLSHarness(b *testing.B, serve func(c net.Conn, hello int)) (*proxyHarness, []byte) {
	hello := egresstest.ClientHello(b, &tls.Config{ServerName: "a.test"})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				serve(c, len(hello))
			}()
		}
	}()
	h := newProxyHarness(b, "a.test")
	h.upstream(ln.Addr().String())
	h.setRules(1, policy.Endpoint{Host: "a.test"})
	h.serve()
	return h, hello
}

func mustWrite(b *testing.B, c net.Conn, data []byte) {
	b.Helper()
	if _, err := c.Write(data); err != nil {
		b.Fatal(err)
	}
}

// zeros reads as an endless run of zero bytes.
type zeros struct{}

func (zeros) Read(p []byte) (int, error) {
	clear(p)
	return len(p), nil
}

// BenchmarkProxyConnect is the proxy's cost of one short TLS connection:
// accepted, its ClientHello read and decided, the upstream dialled and
// the hello replayed, one byte back, both closed (the TLS itself is the
// client's and the upstream's, passed through). Run with -benchmem for
// the allocations per connection, -cpuprofile/-memprofile for where.
func BenchmarkProxyConnect(b *testing.B) {
	h, hello := bulkTLSHarness(b, func(c net.Conn, hello int) {
		if _, err := io.CopyN(io.Discard, c, int64(hello)); err == nil {
			_, _ = c.Write([]byte{1})
		}
	})
	one := make([]byte, 1)
	for b.Loop() {
		c := h.dial()
		mustWrite(b, c, hello)
		if _, err := io.ReadFull(c, one); err != nil {
			b.Fatal(err)
		}
		c.Close()
	}
}
