package wire

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
)

func smallReader(s string) *bufio.Reader {
	return bufio.NewReaderSize(strings.NewReader(s), 64) // small: lines span buffer refills
}

func TestReadRequestHeadKeepAlive(t *testing.T) {
	req1 := "POST /upload?x=1 HTTP/1.1\r\nHost: API.Example.com:8080\r\nContent-Length: 11\r\n\r\n"
	body1 := "hello world"
	req2 := "PUT /chunks HTTP/1.1\r\nhost: plain.example\r\nTransfer-Encoding: chunked\r\n\r\n"
	body2 := "5;ext=1\r\nhello\r\n6\r\n world\r\n0\r\nX-Trailer: yes\r\n\r\n"
	req3 := "\r\nGET http://abs.example/path HTTP/1.1\r\nHost: abs.example\r\nConnection: close\r\n\r\n"
	br := smallReader(req1 + body1 + req2 + body2 + req3)

	h, err := ReadRequestHead(br, maxRequestHead)
	if err != nil {
		t.Fatal(err)
	}
	if h.Method != "POST" || h.Target != "/upload?x=1" || h.proto != "HTTP/1.1" || h.Host != "api.example.com" || h.port != 8080 ||
		h.ContentLength != 11 || h.Chunked || h.Close || string(h.Raw) != req1 {
		t.Errorf("request 1: %+v", h)
	}
	if b, err := io.ReadAll(h.BodyReader(br)); err != nil || string(b) != body1 {
		t.Errorf("body 1: %q %v", b, err)
	}

	h, err = ReadRequestHead(br, maxRequestHead)
	if err != nil {
		t.Fatal(err)
	}
	if h.Host != "plain.example" || h.port != 0 || !h.Chunked || h.ContentLength != -1 || string(h.Raw) != req2 {
		t.Errorf("request 2: %+v", h)
	}
	// The chunked body comes out byte for byte, framing included.
	var got bytes.Buffer
	if _, err := io.CopyBuffer(&got, h.BodyReader(br), make([]byte, 3)); err != nil || got.String() != body2 {
		t.Errorf("body 2: %q %v", got.String(), err)
	}

	h, err = ReadRequestHead(br, maxRequestHead)
	if err != nil {
		t.Fatal(err)
	}
	if h.Host != "abs.example" || h.Target != "http://abs.example/path" || !h.Close || string(h.Raw) != req3[2:] {
		t.Errorf("request 3: %+v", h)
	}
	if n, err := io.Copy(io.Discard, h.BodyReader(br)); n != 0 || err != nil {
		t.Errorf("body 3: %d %v", n, err)
	}
	if _, err := ReadRequestHead(br, maxRequestHead); err != io.EOF {
		t.Errorf("after the last request: %v, want io.EOF", err)
	}
}

func TestReadRequestHead(t *testing.T) {
	big := "GET / HTTP/1.1\r\nHost: a.example\r\nX: " + strings.Repeat("a", 70<<10) + "\r\n\r\n"
	for _, tc := range []struct {
		name, in string
		want     error
		host     string
		port     int
		check    func(RequestHead) bool
	}{
		{"simple", "GET / HTTP/1.1\r\nHost: a.example\r\n\r\n", nil, "a.example", 0, nil},
		{"http/1.0 close", "GET / HTTP/1.0\r\nHost: a.example\r\n\r\n", nil, "a.example", 0, func(h RequestHead) bool { return h.Close }},
		{"http/1.0 keep-alive", "GET / HTTP/1.0\r\nHost: a.example\r\nConnection: Keep-Alive\r\n\r\n", nil, "a.example", 0, func(h RequestHead) bool { return !h.Close }},
		{"ipv6 host", "GET / HTTP/1.1\r\nHost: [2001:DB8::1]:81\r\n\r\n", nil, "2001:db8::1", 81, nil},
		{"ipv4 host", "GET / HTTP/1.1\r\nHost: 192.0.2.1\r\n\r\n", nil, "192.0.2.1", 0, nil},
		{"trailing dot", "GET / HTTP/1.1\r\nHost: a.example.\r\n\r\n", nil, "a.example.", 0, nil},
		{"value whitespace", "GET / HTTP/1.1\r\nHost:\t a.example \t\r\n\r\n", nil, "a.example", 0, nil},
		{"absolute-form", "GET HTTP://A.example:8080/x?y HTTP/1.1\r\n\r\n", nil, "a.example", 8080, nil},
		{"absolute-form no path", "GET http://a.example HTTP/1.1\r\nHost: a.example\r\n\r\n", nil, "a.example", 0, nil},
		{"absolute-form mismatch", "GET http://a.example/ HTTP/1.1\r\nHost: b.example\r\n\r\n", errHostMismatch, "", 0, nil},
		{"absolute-form port mismatch", "GET http://a.example/ HTTP/1.1\r\nHost: a.example:81\r\n\r\n", errHostMismatch, "", 0, nil},
		{"absolute-form userinfo", "GET http://user@a.example/ HTTP/1.1\r\n\r\n", errHostUserinfo, "", 0, nil},
		{"connect", "CONNECT a.example:443 HTTP/1.1\r\nHost: a.example:443\r\n\r\n", nil, "a.example", 443, func(h RequestHead) bool { return h.Connect }},
		{"connect no port", "CONNECT a.example HTTP/1.1\r\n\r\n", errBadRequestLine, "", 0, nil},
		{"upgrade", "GET /ws HTTP/1.1\r\nHost: a.example\r\nConnection: keep-alive, Upgrade\r\nUpgrade: websocket\r\n\r\n", nil, "a.example", 0,
			func(h RequestHead) bool { return h.Upgrade == "websocket" && h.get("upgrade") == "websocket" }},
		{"upgrade header alone", "GET /ws HTTP/1.1\r\nHost: a.example\r\nUpgrade: websocket\r\n\r\n", nil, "a.example", 0, func(h RequestHead) bool { return h.Upgrade == "" }},
		{"options *", "OPTIONS * HTTP/1.1\r\nHost: a.example\r\n\r\n", nil, "a.example", 0, nil},
		{"get *", "GET * HTTP/1.1\r\nHost: a.example\r\n\r\n", errBadRequestLine, "", 0, nil},
		{"leading CRLFs", "\r\n\r\nGET / HTTP/1.1\r\nHost: a.example\r\n\r\n", nil, "a.example", 0, nil},
		{"too many CRLFs", strings.Repeat("\r\n", 5) + "GET / HTTP/1.1\r\nHost: a.example\r\n\r\n", errBadRequestLine, "", 0, nil},

		{"duplicate host", "GET / HTTP/1.1\r\nHost: a.example\r\nHost: b.example\r\n\r\n", errDuplicateHost, "", 0, nil},
		{"duplicate host case", "GET / HTTP/1.1\r\nHost: a.example\r\nHOST: a.example\r\n\r\n", errDuplicateHost, "", 0, nil},
		{"no host", "GET / HTTP/1.1\r\n\r\n", errMissingHost, "", 0, nil},
		{"empty host", "GET / HTTP/1.1\r\nHost:\r\n\r\n", errBadHost, "", 0, nil},
		{"userinfo", "GET / HTTP/1.1\r\nHost: user:pw@a.example\r\n\r\n", errHostUserinfo, "", 0, nil},
		{"host with path", "GET / HTTP/1.1\r\nHost: a.example/x\r\n\r\n", errBadHost, "", 0, nil},
		{"host percent", "GET / HTTP/1.1\r\nHost: a%2eexample\r\n\r\n", errBadHost, "", 0, nil},
		{"host comma", "GET / HTTP/1.1\r\nHost: a.example, b.example\r\n\r\n", errBadHost, "", 0, nil},
		{"host utf-8", "GET / HTTP/1.1\r\nHost: bücher.example\r\n\r\n", errBadHost, "", 0, nil},
		{"host bad port", "GET / HTTP/1.1\r\nHost: a.example:99999\r\n\r\n", errBadHost, "", 0, nil},
		{"host empty port", "GET / HTTP/1.1\r\nHost: a.example:\r\n\r\n", errBadHost, "", 0, nil},
		{"host bare ipv6", "GET / HTTP/1.1\r\nHost: 2001:db8::1\r\n\r\n", errBadHost, "", 0, nil},
		{"host ipv6 zone", "GET / HTTP/1.1\r\nHost: [fe80::1%25eth0]\r\n\r\n", errBadHost, "", 0, nil},
		{"obs-fold", "GET / HTTP/1.1\r\nHost: a.example\r\nX: 1\r\n 2\r\n\r\n", errObsFold, "", 0, nil},
		{"obs-fold host", "GET / HTTP/1.1\r\nX: 1\r\n Host: b.example\r\nHost: a.example\r\n\r\n", errObsFold, "", 0, nil},
		{"bare LF", "GET / HTTP/1.1\nHost: a.example\n\n", errBareLF, "", 0, nil},
		{"bare LF header", "GET / HTTP/1.1\r\nX: 1\nHost: b.example\r\nHost: a.example\r\n\r\n", errBareLF, "", 0, nil},
		{"bare LF end", "GET / HTTP/1.1\r\nHost: a.example\r\n\n", errBareLF, "", 0, nil},
		{"bare CR", "GET / HTTP/1.1\r\nX: 1\rHost: b.example\r\nHost: a.example\r\n\r\n", errBareLF, "", 0, nil},
		{"space before colon", "GET / HTTP/1.1\r\nHost : b.example\r\n\r\n", errBadHeader, "", 0, nil},
		{"no colon", "GET / HTTP/1.1\r\nHost a.example\r\n\r\n", errBadHeader, "", 0, nil},
		{"NUL in value", "GET / HTTP/1.1\r\nHost: a.example\r\nX: a\x00b\r\n\r\n", errBadHeader, "", 0, nil},
		{"oversized", big, ErrHeadTooLarge, "", 0, nil},
		{"http/2", "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", errUnsupportedProto, "", 0, nil},
		{"http/0.9", "GET /\r\n", errBadRequestLine, "", 0, nil},
		{"double space", "GET  / HTTP/1.1\r\nHost: a.example\r\n\r\n", errBadRequestLine, "", 0, nil},
		{"lower proto", "GET / http/1.1\r\nHost: a.example\r\n\r\n", errUnsupportedProto, "", 0, nil},
		{"relative target", "GET x HTTP/1.1\r\nHost: a.example\r\n\r\n", errBadRequestLine, "", 0, nil},
		{"control in target", "GET /\x01 HTTP/1.1\r\nHost: a.example\r\n\r\n", errBadRequestLine, "", 0, nil},

		{"content-length", "POST / HTTP/1.1\r\nHost: a.example\r\nContent-Length: 0042\r\n\r\n", nil, "a.example", 0, func(h RequestHead) bool { return h.ContentLength == 42 }},
		{"cl and te", "POST / HTTP/1.1\r\nHost: a.example\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n", errBadFraming, "", 0, nil},
		{"two cl", "POST / HTTP/1.1\r\nHost: a.example\r\nContent-Length: 4\r\nContent-Length: 4\r\n\r\n", errBadFraming, "", 0, nil},
		{"cl list", "POST / HTTP/1.1\r\nHost: a.example\r\nContent-Length: 4, 4\r\n\r\n", errBadFraming, "", 0, nil},
		{"cl sign", "POST / HTTP/1.1\r\nHost: a.example\r\nContent-Length: +4\r\n\r\n", errBadFraming, "", 0, nil},
		{"cl huge", "POST / HTTP/1.1\r\nHost: a.example\r\nContent-Length: 99999999999999999999\r\n\r\n", errBadFraming, "", 0, nil},
		{"te gzip", "POST / HTTP/1.1\r\nHost: a.example\r\nTransfer-Encoding: gzip, chunked\r\n\r\n", errBadFraming, "", 0, nil},
		{"te twice", "POST / HTTP/1.1\r\nHost: a.example\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n", errBadFraming, "", 0, nil},
		{"te xchunked", "POST / HTTP/1.1\r\nHost: a.example\r\nTransfer-Encoding: xchunked\r\n\r\n", errBadFraming, "", 0, nil},
		{"te http/1.0", "POST / HTTP/1.0\r\nHost: a.example\r\nTransfer-Encoding: chunked\r\n\r\n", errBadFraming, "", 0, nil},
		{"te case", "POST / HTTP/1.1\r\nHost: a.example\r\nTransfer-Encoding: Chunked\r\n\r\n", nil, "a.example", 0, func(h RequestHead) bool { return h.Chunked }},
		// A body on a method whose body has no meaning: a server that
		// ignores it reads the body as the next request (CL.0).
		{"get with body", "GET / HTTP/1.1\r\nHost: a.example\r\nContent-Length: 5\r\n\r\n", errBadFraming, "", 0, nil},
		{"get chunked", "GET / HTTP/1.1\r\nHost: a.example\r\nTransfer-Encoding: chunked\r\n\r\n", errBadFraming, "", 0, nil},
		{"head with body", "HEAD / HTTP/1.1\r\nHost: a.example\r\nContent-Length: 5\r\n\r\n", errBadFraming, "", 0, nil},
		{"delete with body", "DELETE /x HTTP/1.1\r\nHost: a.example\r\nContent-Length: 5\r\n\r\n", errBadFraming, "", 0, nil},
		{"trace with body", "TRACE / HTTP/1.1\r\nHost: a.example\r\nTransfer-Encoding: chunked\r\n\r\n", errBadFraming, "", 0, nil},
		{"get length 0", "GET / HTTP/1.1\r\nHost: a.example\r\nContent-Length: 0\r\n\r\n", nil, "a.example", 0, func(h RequestHead) bool { return h.ContentLength == 0 }},
		{"options with body", "OPTIONS / HTTP/1.1\r\nHost: a.example\r\nContent-Length: 2\r\n\r\n", nil, "a.example", 0, func(h RequestHead) bool { return h.ContentLength == 2 }},
		// Framing fields spelt with '_', which some servers read as '-'.
		{"te underscore", "POST / HTTP/1.1\r\nHost: a.example\r\nContent-Length: 4\r\nTransfer_Encoding: chunked\r\n\r\n", errBadHeader, "", 0, nil},
		{"cl underscore", "GET / HTTP/1.1\r\nHost: a.example\r\nContent_Length: 5\r\n\r\n", errBadHeader, "", 0, nil},
		{"te space", "POST / HTTP/1.1\r\nHost: a.example\r\nContent-Length: 4\r\nTransfer-Encoding : chunked\r\n\r\n", errBadHeader, "", 0, nil},
		{"te obs-fold", "POST / HTTP/1.1\r\nHost: a.example\r\nContent-Length: 4\r\nTransfer-Encoding:\r\n chunked\r\n\r\n", errObsFold, "", 0, nil},
		{"te vertical tab", "POST / HTTP/1.1\r\nHost: a.example\r\nTransfer-Encoding: \x0bchunked\r\n\r\n", errBadHeader, "", 0, nil},
		{"cl and te identity", "POST / HTTP/1.1\r\nHost: a.example\r\nContent-Length: 4\r\nTransfer-Encoding: identity\r\n\r\n", errBadFraming, "", 0, nil},
		{"te chunked twice", "POST / HTTP/1.1\r\nHost: a.example\r\nTransfer-Encoding: chunked, chunked\r\n\r\n", errBadFraming, "", 0, nil},
		{"upgrade lists", "GET /ws HTTP/1.1\r\nHost: a.example\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nUpgrade: h2c\r\n\r\n", nil, "a.example", 0,
			func(h RequestHead) bool { return h.UpgradeTo("h2c") && h.UpgradeTo("websocket") && !h.UpgradeTo("tls") }},
		{"upgrade h2c case", "GET / HTTP/1.1\r\nHost: a.example\r\nConnection: HTTP2-Settings, upgrade\r\nUpgrade: H2C\r\n\r\n", nil, "a.example", 0,
			func(h RequestHead) bool { return h.UpgradeTo("h2c") }},

		{"eof mid head", "GET / HTTP/1.1\r\nHost: a.exa", io.ErrUnexpectedEOF, "", 0, nil},
		{"eof", "", io.EOF, "", 0, nil},
	} {
		h, err := ReadRequestHead(smallReader(tc.in), maxRequestHead)
		if !errors.Is(err, tc.want) {
			t.Errorf("%s: error %v, want %v", tc.name, err, tc.want)
			continue
		}
		if err != nil {
			continue
		}
		if h.Host != tc.host || h.port != tc.port || tc.check != nil && !tc.check(h) {
			t.Errorf("%s: %+v", tc.name, h)
		}
	}
}

func TestChunkedBody(t *testing.T) {
	head := "POST / HTTP/1.1\r\nHost: a.example\r\nTransfer-Encoding: chunked\r\n\r\n"
	for _, tc := range []struct {
		name, body string
		want       error
	}{
		{"ok", "a\r\n0123456789\r\n0\r\n\r\n", nil},
		{"upper hex", "A\r\n0123456789\r\n0\r\n\r\n", nil},
		{"trailers", "1\r\nx\r\n0\r\nA: b\r\nC: d\r\n\r\n", nil},
		{"bad size", "g\r\nx\r\n0\r\n\r\n", errBadChunk},
		{"size space", "1 \r\nx\r\n0\r\n\r\n", errBadChunk},
		{"size 0x", "0x1\r\nx\r\n0\r\n\r\n", errBadChunk},
		{"size overflow", "10000000000000000\r\nx\r\n0\r\n\r\n", errBadChunk},
		{"empty size", "\r\nx\r\n0\r\n\r\n", errBadChunk},
		{"data too long", "1\r\nxy\r\n0\r\n\r\n", errBadChunk},
		{"bare LF size", "1\nx\r\n0\r\n\r\n", errBareLF},
		{"bare LF data end", "1\r\nx\n0\r\n\r\n", errBareLF},
		{"bare LF trailer", "0\r\nA: b\n\r\n", errBareLF},
		{"obs-fold trailer", "0\r\nA: b\r\n c\r\n\r\n", errObsFold},
		{"bad trailer", "0\r\nA b\r\n\r\n", errBadHeader},
		{"ext ctl", "1;a\x01\r\nx\r\n0\r\n\r\n", errBadChunk},
		{"truncated", "5\r\nab", io.ErrUnexpectedEOF},
		{"no last chunk", "1\r\nx\r\n", io.ErrUnexpectedEOF},
	} {
		in := head + tc.body
		if tc.want == nil {
			in += "GET /next HTTP/1.1\r\nHost: a.example\r\n\r\n"
		}
		br := smallReader(in)
		h, err := ReadRequestHead(br, maxRequestHead)
		if err != nil {
			t.Fatal(err)
		}
		got, err := io.ReadAll(h.BodyReader(br))
		if !errors.Is(err, tc.want) {
			t.Errorf("%s: %v, want %v", tc.name, err, tc.want)
			continue
		}
		if err == nil {
			if string(got) != tc.body {
				t.Errorf("%s: body %q", tc.name, got)
			}
			if next, err := ReadRequestHead(br, maxRequestHead); err != nil || next.Target != "/next" {
				t.Errorf("%s: next request %+v %v", tc.name, next, err)
			}
		}
	}
	// A short fixed-length body.
	br := smallReader("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 10\r\n\r\nabc")
	h, _ := ReadRequestHead(br, maxRequestHead)
	if _, err := io.ReadAll(h.BodyReader(br)); err != io.ErrUnexpectedEOF {
		t.Errorf("short body: %v", err)
	}
}

// TestReadRequestHeadConn reads from a real loopback connection in small
// writes.
func TestReadRequestHeadConn(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	msg := "POST /a HTTP/1.1\r\nHost: a.example\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\nGET /b HTTP/1.1\r\nHost: b.example\r\n\r\n"
	go func() {
		c, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			return
		}
		defer c.Close()
		for i := 0; i < len(msg); i += 7 {
			c.Write([]byte(msg[i:min(i+7, len(msg))]))
		}
	}()
	c, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	br := bufio.NewReader(c)
	var hosts []string
	for {
		h, err := ReadRequestHead(br, maxRequestHead)
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		hosts = append(hosts, h.Host)
		if _, err := io.Copy(io.Discard, h.BodyReader(br)); err != nil {
			t.Fatal(err)
		}
	}
	if strings.Join(hosts, ",") != "a.example,b.example" {
		t.Errorf("hosts %v", hosts)
	}
}

// consumed is how many bytes of data a reader pair has used.
func consumed(data []byte, br *bufio.Reader, r *bytes.Reader) int {
	return len(data) - br.Buffered() - r.Len()
}

func FuzzReadRequestHead(f *testing.F) {
	for _, s := range []string{
		"GET / HTTP/1.1\r\nHost: a.example\r\n\r\n",
		"POST /x HTTP/1.1\r\nHost: a.example:81\r\nContent-Length: 3\r\n\r\nabcGET / HTTP/1.1\r\nHost: b.example\r\n\r\n",
		"PUT / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n3;x\r\nabc\r\n0\r\nT: 1\r\n\r\nGET / HTTP/1.1\r\nHost: c\r\n\r\n",
		"GET http://a.example/x HTTP/1.1\r\nHost: a.example\r\n\r\n",
		"CONNECT a.example:443 HTTP/1.1\r\nHost: a.example:443\r\n\r\n",
		"GET / HTTP/1.0\r\nHost: [::1]:80\r\nConnection: upgrade\r\nUpgrade: websocket\r\n\r\n",
		"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
		"GET / HTTP/1.1\nHost: a\n\n",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		r := bytes.NewReader(data)
		br := bufio.NewReaderSize(r, 16)
		h, err := ReadRequestHead(br, maxRequestHead)
		if err != nil {
			return
		}
		if len(h.Raw) > maxRequestHead || !bytes.Contains(data, h.Raw) || !bytes.HasSuffix(h.Raw, []byte("\r\n\r\n")) {
			t.Fatalf("raw %q", h.Raw)
		}
		if h.Host == "" || h.Host != strings.ToLower(h.Host) || strings.ContainsAny(h.Host, "@/ \r\n") {
			t.Fatalf("host %q", h.Host)
		}
		body, berr := io.ReadAll(h.BodyReader(br))
		ours := consumed(data, br, r)

		// Where net/http reads the same request, it sees the same host
		// and the same body end: no request smuggled past the filter.
		r2 := bytes.NewReader(data)
		br2 := bufio.NewReaderSize(r2, 16)
		req, err := http.ReadRequest(br2)
		if err != nil {
			return
		}
		host := req.Host
		if hh, p, err := net.SplitHostPort(host); err == nil {
			host = hh
			_ = p
		}
		host = strings.Trim(strings.ToLower(host), "[]")
		if host != h.Host && !strings.Contains(host, ":") {
			t.Fatalf("net/http host %q, ours %q", req.Host, h.Host)
		}
		if h.Connect || h.Upgrade != "" {
			return
		}
		b2, err := io.ReadAll(req.Body)
		if err != nil || berr != nil {
			return
		}
		theirs := consumed(data, br2, r2)
		if theirs != ours {
			t.Fatalf("body ends at %d for net/http, %d for us (%d body bytes, %q)", theirs, ours, len(b2), body)
		}
	})
}

func TestReadResponseHead(t *testing.T) {
	for _, tc := range []struct {
		name, in string
		status   int
		want     error
	}{
		{"switching", "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\nframes", 101, nil},
		{"ok", "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nhi", 200, nil},
		{"no reason", "HTTP/1.0 426 \r\n\r\n", 426, nil},
		{"http/2", "HTTP/2 101 x\r\n\r\n", 0, errBadStatusLine},
		{"short code", "HTTP/1.1 10 x\r\n\r\n", 0, errBadStatusLine},
		{"bare LF", "HTTP/1.1 101 Switching Protocols\nUpgrade: websocket\n\n", 0, errBareLF},
		{"eof", "HTTP/1.1 101 Switching Protocols\r\nUpgrade: web", 0, io.ErrUnexpectedEOF},
	} {
		br := smallReader(tc.in)
		h, err := ReadResponseHead(br)
		if !errors.Is(err, tc.want) || h.Status != tc.status && err == nil {
			t.Errorf("%s: %+v %v, want status %d error %v", tc.name, h, err, tc.status, tc.want)
			continue
		}
		if rest, _ := io.ReadAll(br); err == nil && string(h.Raw)+string(rest) != tc.in {
			t.Errorf("%s: raw %q does not end where the head ends", tc.name, h.Raw)
		}
	}
}
