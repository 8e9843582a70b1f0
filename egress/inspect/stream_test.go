package inspect

import (
	"bufio"
	"crypto/sha1"
	"encoding/base64"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"
)

// A response that streams reaches the client as it comes: the client
// reads the first event before the upstream writes the second (an LLM's
// tokens), whether server-sent events or any chunked body, HTTP/1.1 or
// HTTP/2.
func TestResponsesStream(t *testing.T) {
	for _, h2 := range []bool{false, true} {
		for _, contentType := range []string{"text/event-stream", "application/octet-stream"} {
			name := contentType + map[bool]string{false: " HTTP/1.1", true: " HTTP/2"}[h2]
			t.Run(name, func(t *testing.T) {
				next := make(chan struct{})
				up := newUpstream(t, h2, func(w http.ResponseWriter, r *http.Request) {
					w.Header().Set("Content-Type", contentType)
					io.WriteString(w, "data: one\n\n")
					w.(http.Flusher).Flush()
					select {
					case <-next: // the client has read event one
					case <-time.After(10 * time.Second):
						return
					}
					io.WriteString(w, "data: two\n\n")
				})
				h := newHarness(t, up)
				client := h.h1Client()
				if h2 {
					client = h.h2Client()
				}
				resp, err := client.Get("https://" + testHost + "/stream")
				if err != nil {
					t.Fatal(err)
				}
				defer resp.Body.Close()
				lines := make(chan string)
				go func() {
					br := bufio.NewReader(resp.Body)
					for {
						line, err := br.ReadString('\n')
						if err != nil {
							close(lines)
							return
						}
						if line != "\n" {
							lines <- strings.TrimSpace(line)
						}
					}
				}()
				for i, want := range []string{"data: one", "data: two"} {
					select {
					case got := <-lines:
						if got != want {
							t.Fatalf("event %d: %q, want %q", i+1, got, want)
						}
					case <-time.After(5 * time.Second):
						t.Fatalf("event %d did not arrive before the upstream wrote the next: the response is buffered", i+1)
					}
					if i == 0 {
						close(next)
					}
				}
			})
		}
	}
}

// An allowed WebSocket upgrade becomes a tunnel once the upstream
// switches: bytes flow both ways. A denied one never reaches the upstream.
func TestWebSocket(t *testing.T) {
	up := newUpstream(t, false, websocketEcho)
	h := newHarness(t, up)
	h.decide = func(r Request) Verdict {
		if r.WebSocket && r.Path == "/ws" {
			return Verdict{Allow: true, Rule: "ws-policy"}
		}
		return Verdict{Rule: "ws-policy", Reason: "not_allowed"}
	}
	upgrade := func(path string) (*http.Response, *bufio.Reader, func(string)) {
		c := h.dial(protoHTTP1)
		br := bufio.NewReader(c)
		if _, err := io.WriteString(c, "GET "+path+" HTTP/1.1\r\nHost: "+testHost+"\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n"+
			"Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n"); err != nil {
			t.Fatal(err)
		}
		c.SetReadDeadline(time.Now().Add(10 * time.Second))
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatal(err)
		}
		return resp, br, func(s string) { io.WriteString(c, s) }
	}

	resp, br, write := upgrade("/ws")
	if resp.StatusCode != http.StatusSwitchingProtocols || resp.Header.Get("Sec-WebSocket-Accept") != "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=" {
		t.Fatalf("upgrade: %d %v", resp.StatusCode, resp.Header)
	}
	for _, msg := range []string{"first message\n", "second\n"} {
		write(msg)
		got, err := br.ReadString('\n')
		if err != nil || got != "echo: "+msg {
			t.Fatalf("echo of %q: %q, %v", msg, got, err)
		}
	}
	if d := h.logs.find(t, "allowed"); !d.Allow || !d.WebSocket || d.Status != 101 {
		t.Fatalf("logged %+v", d)
	}

	before := up.requests.Load()
	resp, _, _ = upgrade("/other")
	if resp.StatusCode != http.StatusForbidden || up.requests.Load() != before {
		t.Fatalf("denied upgrade: %d, upstream requests %d -> %d", resp.StatusCode, before, up.requests.Load())
	}
}

// websocketEcho switches to WebSocket and echoes every line it reads,
// prefixed (frames are not parsed: the engine does not read them either).
func websocketEcho(w http.ResponseWriter, r *http.Request) {
	if !strings.EqualFold(r.Header.Get("Upgrade"), "websocket") {
		http.Error(w, "not a websocket", 400)
		return
	}
	sum := sha1.Sum([]byte(r.Header.Get("Sec-WebSocket-Key") + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"))
	conn, brw, err := w.(http.Hijacker).Hijack()
	if err != nil {
		return
	}
	defer conn.Close()
	io.WriteString(conn, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"+
		"Sec-WebSocket-Accept: "+base64.StdEncoding.EncodeToString(sum[:])+"\r\n\r\n")
	for {
		line, err := brw.ReadString('\n')
		if err != nil {
			return
		}
		io.WriteString(conn, "echo: "+line)
	}
}
