package inspect

import (
	"bufio"
	"bytes"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
)

// A request inside the connection for another name than the SNI the
// filter matched is refused before Decide is asked, and never reaches the
// upstream; the refusal is logged. Each case has its positive control.
func TestFrontingRefused(t *testing.T) {
	tests := []struct {
		name   string
		raw    string
		status int    // 0: allowed (the control)
		reason string // of the refusal
	}{
		{"Host is the SNI", "GET /a HTTP/1.1\r\nHost: " + testHost + "\r\n\r\n", 0, ""},
		{"Host is the SNI in capitals", "GET /a HTTP/1.1\r\nHost: API.EXAMPLE.TEST\r\n\r\n", 0, ""},
		{"Host with the connection's port", "GET /a HTTP/1.1\r\nHost: " + testHost + ":443\r\n\r\n", 0, ""},
		{"absolute-form for the SNI", "GET https://" + testHost + "/a HTTP/1.1\r\nHost: " + testHost + "\r\n\r\n", 0, ""},

		{"Host another name", "GET /a HTTP/1.1\r\nHost: evil.example\r\n\r\n", 421, ReasonMisdirected},
		{"Host a sub-domain", "GET /a HTTP/1.1\r\nHost: x." + testHost + "\r\n\r\n", 421, ReasonMisdirected},
		{"Host with a trailing dot", "GET /a HTTP/1.1\r\nHost: " + testHost + ".\r\n\r\n", 421, ReasonMisdirected},
		{"Host with another port", "GET /a HTTP/1.1\r\nHost: " + testHost + ":8443\r\n\r\n", 421, ReasonMisdirected},
		{"Host with an empty port", "GET /a HTTP/1.1\r\nHost: " + testHost + ":\r\n\r\n", 421, ReasonMisdirected},
		{"Host an IP", "GET /a HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n", 421, ReasonMisdirected},
		{"Host with a character that folds to s", "GET /a HTTP/1.1\r\nHost: api.example.te\u017ft\r\n\r\n", 400, ReasonMalformed},
		{"absolute-form without authority", "GET https:evil.example/a HTTP/1.1\r\nHost: " + testHost + "\r\n\r\n", 400, ReasonMalformed},
		{"authority-form on GET", "GET " + testHost + ":443 HTTP/1.1\r\nHost: " + testHost + "\r\n\r\n", 421, ReasonMisdirected},
		{"asterisk on GET", "GET * HTTP/1.1\r\nHost: " + testHost + "\r\n\r\n", 400, ReasonMalformed},
		{"two Host fields", "GET /a HTTP/1.1\r\nHost: " + testHost + "\r\nHost: evil.example\r\n\r\n", 400, ReasonMalformed},
		{"two Host fields, same name", "GET /a HTTP/1.1\r\nHost: " + testHost + "\r\nHost: " + testHost + "\r\n\r\n", 400, ReasonMalformed},
		{"no Host", "GET /a HTTP/1.1\r\n\r\n", 400, ReasonMalformed},
		{"absolute-form for another name", "GET https://evil.example/a HTTP/1.1\r\nHost: " + testHost + "\r\n\r\n", 421, ReasonMisdirected},
		{"absolute-form http", "GET http://" + testHost + "/a HTTP/1.1\r\nHost: " + testHost + "\r\n\r\n", 421, ReasonMisdirected},
		{"CONNECT", "CONNECT evil.example:443 HTTP/1.1\r\nHost: evil.example:443\r\n\r\n", 403, ReasonConnect},
		{"CONNECT to the SNI", "CONNECT " + testHost + ":443 HTTP/1.1\r\nHost: " + testHost + ":443\r\n\r\n", 403, ReasonConnect},
		{"upgrade to h2c", "GET /a HTTP/1.1\r\nHost: " + testHost + "\r\nConnection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAAQAAP__\r\n\r\n", 403, ReasonUpgrade},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			up := newUpstream(t, false, nil)
			h := newHarness(t, up)
			decided := 0
			h.decide = func(r Request) Verdict { decided++; return allowGETs(r) }
			c := h.dial(protoHTTP1)
			resp := roundTrip(t, c, bufio.NewReader(c), tt.raw)
			if tt.status == 0 {
				if resp.StatusCode != 200 || up.requests.Load() != 1 || decided != 1 {
					t.Fatalf("control: %d, upstream saw %d, decided %d", resp.StatusCode, up.requests.Load(), decided)
				}
				if seen := up.lastRequest(); seen.Host != testHost || seen.RequestURI != "/a" {
					t.Fatalf("upstream saw Host %q, target %q", seen.Host, seen.RequestURI)
				}
				return
			}
			if resp.StatusCode != tt.status {
				t.Fatalf("status %d, want %d", resp.StatusCode, tt.status)
			}
			if n := up.requests.Load(); n != 0 || decided != 0 {
				t.Fatalf("the upstream saw %d requests, Decide asked %d times; want none", n, decided)
			}
			if d := h.logs.find(t, tt.reason); d.Allow || d.Status != tt.status {
				t.Fatalf("logged %+v", d)
			}
		})
	}
}

// HTTP/2: a stream whose :authority is not the SNI is refused, the next
// stream of the connection is served; the upstream sees only that one.
func TestHTTP2AuthorityMismatchRefused(t *testing.T) {
	up := newUpstream(t, true, nil)
	h := newHarness(t, up)
	client := h.h2Client()
	for _, authority := range []string{"evil.example", testHost + ":8443", "x." + testHost} {
		req, _ := http.NewRequest("GET", "https://"+testHost+"/a", nil)
		req.Host = authority // :authority
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusMisdirectedRequest {
			t.Fatalf(":authority %s: %d, want 421", authority, resp.StatusCode)
		}
	}
	if n := up.requests.Load(); n != 0 {
		t.Fatalf("the upstream saw %d requests", n)
	}
	h.logs.find(t, ReasonMisdirected)
	resp, err := client.Get("https://" + testHost + "/ok")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 || up.requests.Load() != 1 || h.accepts.Load() != 1 {
		t.Fatalf("control: %d, upstream %d, connections %d", resp.StatusCode, up.requests.Load(), h.accepts.Load())
	}
}

// HTTP/2 CONNECT (and extended CONNECT, which the engine does not offer)
// never reaches Decide nor the upstream.
func TestHTTP2ConnectRefused(t *testing.T) {
	up := newUpstream(t, true, nil)
	h := newHarness(t, up)
	client := h.h2Client()
	req, _ := http.NewRequest("CONNECT", "https://evil.example:443", nil)
	req.URL.Path = ""
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusForbidden || up.requests.Load() != 0 {
		t.Fatalf("CONNECT: %d, upstream saw %d", resp.StatusCode, up.requests.Load())
	}
	h.logs.find(t, ReasonConnect)
}

// A raw target: the path and query reach the upstream exactly as sent
// (no re-encoding), and Decide sees them as sent and decoded.
func TestTargetSentAsDecided(t *testing.T) {
	up := newUpstream(t, false, nil)
	h := newHarness(t, up)
	var got Request
	h.decide = func(r Request) Verdict { got = r; return allowGETs(r) }
	c := h.dial(protoHTTP1)
	br := bufio.NewReader(c)
	for _, target := range []string{"/a%2Fb/%7Bc%7D?q=%20x&y", "/a{b}|c^d", "//double/slash", "/a/../b", "/%41"} {
		resp := roundTrip(t, c, br, "GET "+target+" HTTP/1.1\r\nHost: "+testHost+"\r\n\r\n")
		if resp.StatusCode != 200 {
			t.Fatalf("%s: %d", target, resp.StatusCode)
		}
		if seen := up.lastRequest().RequestURI; seen != target {
			t.Errorf("sent %q, the upstream got %q", target, seen)
		}
		path, query, _ := strings.Cut(target, "?")
		if got.Path != path || got.RawQuery != query {
			t.Errorf("%s: Decide saw path %q query %q", target, got.Path, got.RawQuery)
		}
	}
	if got.DecodedPath != "/A" {
		t.Errorf("decoded %q", got.DecodedPath)
	}
}

// HTTP/2 streams a Go client would not send: a Host field besides the
// :authority naming another host (servers differ on which one wins), an
// :authority that is no host name, and extended CONNECT (:protocol,
// WebSocket over HTTP/2), which the engine does not offer. None reaches
// Decide nor the upstream. The HTTP/2 server (golang.org/x/net since
// v0.59) resets the first two itself, before the engine sees them: they
// are not logged.
func TestHTTP2RawStreamsRefused(t *testing.T) {
	up := newUpstream(t, true, nil)
	h := newHarness(t, up)
	decided := 0
	h.decide = func(r Request) Verdict { decided++; return allowGETs(r) }
	get := [][2]string{{":method", "GET"}, {":scheme", "https"}, {":path", "/a"}}
	tests := []struct {
		name   string
		fields [][2]string
		status string // "" : the stream is reset
		reason string // "": reset by the HTTP/2 server, not logged
	}{
		{"control", append(get, [2]string{":authority", testHost}), "200", "allowed"},
		{"Host field for another name", append(get, [2]string{":authority", testHost}, [2]string{"host", "evil.example"}), "", ""},
		{"Host field only, another name", append(get, [2]string{"host", "evil.example"}), "421", ReasonMisdirected},
		{":authority with a character that folds to s", append(get, [2]string{":authority", "api.example.te\u017ft"}), "", ""},
		{"extended CONNECT", [][2]string{{":method", "CONNECT"}, {":protocol", "websocket"}, {":scheme", "https"},
			{":path", "/chat"}, {":authority", testHost}}, "", ReasonConnect},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			status := h2Stream(t, h, tt.fields)
			if status != tt.status {
				t.Fatalf("status %q, want %q", status, tt.status)
			}
			if tt.reason == "" {
				if up.requests.Load() != 1 || decided != 1 {
					t.Fatalf("upstream saw %d, decided %d (the control's 1 each)", up.requests.Load(), decided)
				}
				return
			}
			d := h.logs.find(t, tt.reason)
			if tt.status == "200" {
				if up.requests.Load() != 1 || decided != 1 {
					t.Fatalf("control: upstream saw %d, decided %d", up.requests.Load(), decided)
				}
				return
			}
			if d.Allow || up.requests.Load() != 1 || decided != 1 {
				t.Fatalf("logged %+v; upstream saw %d, decided %d (the control's 1 each)", d, up.requests.Load(), decided)
			}
		})
	}
}

// h2Stream opens an HTTP/2 connection to the engine, sends one stream of
// header fields, and returns the answer's :status ("" if the stream was
// reset).
func h2Stream(t *testing.T, h *harness, fields [][2]string) string {
	t.Helper()
	c := h.dial(protoH2)
	c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.WriteString(c, http2.ClientPreface); err != nil {
		t.Fatal(err)
	}
	fr := http2.NewFramer(c, c)
	fr.ReadMetaHeaders = hpack.NewDecoder(4096, nil)
	if err := fr.WriteSettings(); err != nil {
		t.Fatal(err)
	}
	var block bytes.Buffer
	enc := hpack.NewEncoder(&block)
	for _, f := range fields {
		enc.WriteField(hpack.HeaderField{Name: f[0], Value: f[1]})
	}
	if err := fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: block.Bytes(), EndStream: true, EndHeaders: true}); err != nil {
		t.Fatal(err)
	}
	for {
		f, err := fr.ReadFrame()
		if err != nil {
			t.Fatalf("reading frames: %v", err)
		}
		switch f := f.(type) {
		case *http2.SettingsFrame:
			if !f.IsAck() {
				fr.WriteSettingsAck()
			}
		case *http2.MetaHeadersFrame:
			if f.StreamID == 1 {
				return f.PseudoValue("status")
			}
		case *http2.RSTStreamFrame:
			if f.StreamID == 1 {
				return ""
			}
		case *http2.GoAwayFrame:
			return ""
		}
	}
}
