package proxy

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/clawrun/clawrun/egress/decisionlog"
	"github.com/clawrun/clawrun/egress/internal/egresstest"
	"github.com/clawrun/clawrun/egress/kernel"
	"github.com/clawrun/clawrun/runtime/policy"
)

// halfCloseServer reads what a connection sends until its end, then
// answers with reply and closes: it only answers a client that shut down
// writing, as an upstream reading a request until EOF does.
type halfCloseServer struct {
	ln    net.Listener
	reply []byte
	got   chan upstreamEnd
}

// upstreamEnd is what the server saw of one connection.
type upstreamEnd struct {
	peer     netip.AddrPort // the filter's side
	received []byte
	readErr  error // nil: the clean end (FIN) of the client's data
	writeErr error
}

func startHalfCloseServer(t *testing.T, reply []byte) *halfCloseServer {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	s := &halfCloseServer{ln: ln, reply: reply, got: make(chan upstreamEnd, 1)}
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(10 * time.Second))
		end := upstreamEnd{peer: kernel.AddrPort(c.RemoteAddr())}
		end.received, end.readErr = io.ReadAll(c)
		if end.readErr == nil {
			_, end.writeErr = c.Write(reply)
		}
		s.got <- end
	}()
	return s
}

// A client that shuts down writing still gets the whole answer, the
// upstream gets every byte and then the end of them, and the filter's
// side of the upstream connection, which closed first, is not left in
// TIME_WAIT; both through the TLS relay and the HTTP proxy.
func TestProxyHalfCloseLeavesNoTimeWait(t *testing.T) {
	body := make([]byte, 1<<20)
	reply := make([]byte, 1<<20)
	_, _ = rand.Read(body)
	_, _ = rand.Read(reply)
	hello := egresstest.ClientHello(t, &tls.Config{ServerName: "web.test"})
	httpHead := fmt.Appendf(nil, "POST /up HTTP/1.1\r\nHost: web.test\r\nContent-Length: %d\r\n\r\n", len(body))
	httpReply := append(fmt.Appendf(nil, "HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n", len(reply)), reply...)
	for _, tc := range []struct {
		name, protocol string
		sent, answer   []byte
	}{
		{"tls", "tls", append(append([]byte(nil), hello...), body...), reply},
		{"http", "http", append(append([]byte(nil), httpHead...), body...), httpReply},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := startHalfCloseServer(t, tc.answer)
			h := newProxyHarness(t, "web.test")
			tw, err := kernel.NewTimeWaits()
			if err != nil {
				t.Fatal(err)
			}
			dialer := net.Dialer{Control: kernel.StampCookie}
			h.p.Dial = func(ctx context.Context, network, _ string) (net.Conn, error) {
				return dialer.DialContext(ctx, network, srv.ln.Addr().String())
			}
			h.p.CloseUpstream = tw.Close
			h.setRules(1, policy.Endpoint{Host: "web.test"})
			h.serve()

			c := h.dial()
			if _, err := c.Write(tc.sent); err != nil {
				t.Fatal(err)
			}
			if err := c.(*net.TCPConn).CloseWrite(); err != nil {
				t.Fatal(err)
			}
			answer, err := io.ReadAll(c)
			if err != nil || !bytes.Equal(answer, tc.answer) {
				t.Fatalf("the client read %d bytes (%v), want the upstream's %d", len(answer), err, len(tc.answer))
			}
			end := <-srv.got
			if end.readErr != nil || !bytes.Equal(end.received, tc.sent) {
				t.Fatalf("the upstream read %d bytes and then %v, want the client's %d and the end", len(end.received), end.readErr, len(tc.sent))
			}
			if end.writeErr != nil {
				t.Fatalf("the upstream's answer: %v", end.writeErr)
			}
			h.waitRecord("the connection", func(r decisionlog.Record) bool { return r.Protocol == tc.protocol })

			upstream := kernel.AddrPort(srv.ln.Addr())
			if st := egresstest.TCPState(t, end.peer, upstream); st != "" {
				t.Fatalf("the filter's side of the upstream connection is in state %s (06: TIME_WAIT) once the exchange is over, want gone", st)
			}
		})
	}
}
