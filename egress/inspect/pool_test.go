package inspect

import (
	"bufio"
	"net/http"
	"testing"
)

// getOnNewConnection opens a client connection, sends one GET on it,
// reads the answer and closes it, as a client without a session does.
func getOnNewConnection(t *testing.T, h *harness) {
	t.Helper()
	c := h.dial(protoHTTP1)
	defer c.Close()
	resp := roundTrip(t, c, bufio.NewReader(c), "GET / HTTP/1.1\r\nHost: "+testHost+"\r\n\r\n")
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET: %d", resp.StatusCode)
	}
}

// Client connections with the same Options.Pool share upstream
// connections: one after the other, they need one upstream connection.
// Without a Pool each has its own, closed with it.
func TestUpstreamConnectionsSharedByPool(t *testing.T) {
	for _, tc := range []struct {
		pool  string
		conns int64
	}{
		{"", 3},
		{"rules-1", 1},
	} {
		t.Run("pool="+tc.pool, func(t *testing.T) {
			up := newUpstream(t, false, nil)
			h := newHarness(t, up)
			h.pool.Store(tc.pool)
			for range 3 {
				getOnNewConnection(t, h)
			}
			if up.requests.Load() != 3 || h.accepts.Load() != 3 || up.conns.Load() != tc.conns {
				t.Fatalf("3 client connections: the upstream saw %d requests on %d connections, want 3 on %d",
					up.requests.Load(), up.conns.Load(), tc.conns)
			}
		})
	}
}

// Connections are shared only within a Pool: a connection another Pool
// left is never reused (the filter's pools stand for what its dial
// checked), and DropUpstreamConns (a reload) forgets every one.
func TestUpstreamConnectionsNotSharedAcrossPools(t *testing.T) {
	up := newUpstream(t, false, nil)
	h := newHarness(t, up)
	for i, pool := range []string{"rules-1", "rules-2", "rules-1", "rules-2"} {
		h.pool.Store(pool)
		getOnNewConnection(t, h)
		if want := int64(min(i+1, 2)); up.conns.Load() != want {
			t.Fatalf("after connection %d (pool %s): %d upstream connections, want %d", i+1, pool, up.conns.Load(), want)
		}
	}
	h.engine.DropUpstreamConns()
	h.pool.Store("rules-1")
	getOnNewConnection(t, h)
	if up.conns.Load() != 3 {
		t.Fatalf("after DropUpstreamConns: %d upstream connections, want a new one (3)", up.conns.Load())
	}
}

// An HTTP/2 client keeps its connection and sends its requests on it as
// streams: its upstream connections stay its own (maxUpstreamConns at
// most), a Pool or not, and go with it.
func TestUpstreamConnectionsOfHTTP2ClientsOwn(t *testing.T) {
	up := newUpstream(t, true, nil)
	h := newHarness(t, up)
	h.pool.Store("rules-1")
	for range 2 {
		client := h.h2Client()
		resp, err := client.Get("https://" + testHost + "/")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		client.CloseIdleConnections()
	}
	if up.requests.Load() != 2 || up.conns.Load() != 2 {
		t.Fatalf("2 HTTP/2 client connections: the upstream saw %d requests on %d connections, want 2 on 2",
			up.requests.Load(), up.conns.Load())
	}
}
