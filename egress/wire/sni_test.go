package wire

import (
	"crypto/tls"
	"encoding/binary"
	"errors"
	"slices"
	"strings"
	"testing"

	"github.com/clawrun/clawrun/egress/internal/egresstest"
)

func manyProtocols(n int) []string {
	var out []string
	for i := range n {
		out = append(out, strings.Repeat(string(rune('a'+i%26)), 200)+string(rune('A'+i/26)))
	}
	return out
}

func TestParseClientHelloReal(t *testing.T) {
	for _, tc := range []struct {
		name    string
		cfg     *tls.Config
		records int // at least
	}{
		{"sni", &tls.Config{ServerName: "api.example.com"}, 1},
		{"no-sni", &tls.Config{InsecureSkipVerify: true}, 1},
		{"ip-literal", &tls.Config{ServerName: "192.0.2.1", InsecureSkipVerify: true}, 1}, // crypto/tls sends no SNI for IPs
		{"alpn", &tls.Config{ServerName: "h2.example", NextProtos: []string{"h2", "http/1.1"}}, 1},
		{"tls12", &tls.Config{ServerName: "old.example", MaxVersion: tls.VersionTLS12}, 1},
		{"spans-records", &tls.Config{ServerName: "big.example", NextProtos: manyProtocols(100)}, 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			data := egresstest.ClientHello(t, tc.cfg)
			want := tc.cfg.ServerName
			if want == "192.0.2.1" {
				want = ""
			}
			h, err := ParseClientHello(data)
			if err != nil {
				t.Fatalf("ParseClientHello: %v", err)
			}
			if h.ServerName != want || h.ECH || !slices.Equal(h.alpn, tc.cfg.NextProtos) {
				t.Errorf("got %+v, want name %q ALPN %v", h, want, len(tc.cfg.NextProtos))
			}
			if goName, ok := egresstest.GoServerName(data); !ok || goName != h.ServerName {
				t.Errorf("crypto/tls sees %q (%v)", goName, ok)
			}
			if n := countRecords(data); n < tc.records {
				t.Errorf("%d records, want at least %d", n, tc.records)
			}
			// Every prefix is incomplete: the caller reads on.
			for i := range len(data) - 1 {
				if _, err := ParseClientHello(data[:i]); err != ErrNeedMore {
					t.Fatalf("prefix of %d bytes: %v, want ErrNeedMore", i, err)
				}
			}
			// Fed in 1-byte reads, as a slow client would.
			var buf []byte
			for i := range data {
				buf = append(buf, data[i])
				h2, err := ParseClientHello(buf)
				if err == ErrNeedMore {
					continue
				}
				if err != nil || i != len(data)-1 || h2.ServerName != h.ServerName {
					t.Fatalf("at byte %d: %+v %v", i, h2, err)
				}
			}
			// Re-fragmented into tiny records, with data after the hello.
			frag := refragment(t, data, 7)
			h3, err := ParseClientHello(append(frag, 0x17, 3, 3, 0, 1, 0))
			if err != nil || h3.ServerName != h.ServerName || !slices.Equal(h3.alpn, h.alpn) {
				t.Errorf("refragmented: %+v %v", h3, err)
			}
			if goName, ok := egresstest.GoServerName(frag); !ok || goName != h.ServerName {
				t.Errorf("crypto/tls on the refragmented hello sees %q (%v)", goName, ok)
			}
		})
	}
}

func countRecords(data []byte) int {
	n := 0
	for len(data) >= 5 {
		l := int(binary.BigEndian.Uint16(data[3:5]))
		data = data[min(5+l, len(data)):]
		n++
	}
	return n
}

// handshakeOf reassembles the handshake bytes of a run of records.
func handshakeOf(t testing.TB, data []byte) []byte {
	var msg []byte
	for len(data) > 0 {
		if len(data) < 5 || data[0] != recordHandshake {
			t.Fatalf("not a handshake record")
		}
		l := int(binary.BigEndian.Uint16(data[3:5]))
		msg = append(msg, data[5:5+l]...)
		data = data[5+l:]
	}
	return msg
}

// records wraps handshake bytes in records of at most size bytes.
func helloRecords(msg []byte, size int) []byte {
	var out []byte
	for len(msg) > 0 {
		n := min(size, len(msg))
		out = append(out, recordHandshake, 3, 1, byte(n>>8), byte(n))
		out = append(out, msg[:n]...)
		msg = msg[n:]
	}
	return out
}

func refragment(t testing.TB, data []byte, size int) []byte {
	return helloRecords(handshakeOf(t, data), size)
}

// withExtension appends an extension to a real ClientHello.
func withExtension(t testing.TB, data []byte, typ uint16, ext []byte) []byte {
	msg := handshakeOf(t, data)
	body := msg[4:]
	// Skip version, random, session id, cipher suites, compression.
	p := 2 + 32
	p += 1 + int(body[p])
	p += 2 + int(binary.BigEndian.Uint16(body[p:]))
	p += 1 + int(body[p])
	extLen := int(binary.BigEndian.Uint16(body[p:]))
	var nb []byte
	nb = append(nb, body[:p]...)
	nb = binary.BigEndian.AppendUint16(nb, uint16(extLen+4+len(ext)))
	nb = append(nb, body[p+2:]...)
	nb = binary.BigEndian.AppendUint16(nb, typ)
	nb = binary.BigEndian.AppendUint16(nb, uint16(len(ext)))
	nb = append(nb, ext...)
	hs := []byte{handshakeClient, byte(len(nb) >> 16), byte(len(nb) >> 8), byte(len(nb))}
	return helloRecords(append(hs, nb...), maxRecordPlaintext)
}

// hello builds a ClientHello from extensions (type, data).
func craftHello(exts ...[]byte) []byte {
	body := []byte{3, 3}
	body = append(body, make([]byte, 32)...)
	body = append(body, 0)                // session id
	body = append(body, 0, 2, 0x13, 0x01) // cipher suites
	body = append(body, 1, 0)             // compression
	if exts != nil {
		var all []byte
		for _, e := range exts {
			all = append(all, e...)
		}
		body = binary.BigEndian.AppendUint16(body, uint16(len(all)))
		body = append(body, all...)
	}
	hs := []byte{handshakeClient, byte(len(body) >> 16), byte(len(body) >> 8), byte(len(body))}
	return helloRecords(append(hs, body...), maxRecordPlaintext)
}

func helloExt(typ uint16, data []byte) []byte {
	out := binary.BigEndian.AppendUint16(nil, typ)
	out = binary.BigEndian.AppendUint16(out, uint16(len(data)))
	return append(out, data...)
}

// sni builds a server_name extension of (type, name) entries.
func sniExt(entries ...any) []byte {
	var list []byte
	for i := 0; i < len(entries); i += 2 {
		list = append(list, byte(entries[i].(int)))
		name := entries[i+1].(string)
		list = binary.BigEndian.AppendUint16(list, uint16(len(name)))
		list = append(list, name...)
	}
	return helloExt(extServerName, append(binary.BigEndian.AppendUint16(nil, uint16(len(list))), list...))
}

func TestParseClientHelloCrafted(t *testing.T) {
	real := egresstest.ClientHello(t, &tls.Config{ServerName: "front.example", NextProtos: []string{"h2"}})
	ech := withExtension(t, real, extECH, []byte{0, 1, 2, 3})
	h, err := ParseClientHello(ech)
	if err != nil || !h.ECH || h.ServerName != "front.example" {
		t.Errorf("ECH injected: %+v %v", h, err)
	}
	if h, err := ParseClientHello(withExtension(t, real, extESNI, []byte{1})); err != nil || !h.ECH {
		t.Errorf("ESNI injected: %+v %v", h, err)
	}
	// A second server_name extension is a duplicate.
	if _, err := ParseClientHello(withExtension(t, real, extServerName, sniExt(0, "evil.example")[4:])); !errors.Is(err, errMalformed) {
		t.Errorf("duplicate SNI extension: %v", err)
	}

	for _, tc := range []struct {
		name string
		data []byte
		want error  // nil: success
		sni  string // on success
		ech  bool
	}{
		{"minimal", craftHello(sniExt(0, "a.example")), nil, "a.example", false},
		{"no extensions", craftHello(), nil, "", false},
		{"ip literal", craftHello(sniExt(0, "192.0.2.1")), nil, "192.0.2.1", false},
		{"ech", craftHello(sniExt(0, "a.example"), helloExt(0xfe0d, []byte{0})), nil, "a.example", true},
		{"ech draft", craftHello(helloExt(0xfe0a, nil)), nil, "", true},
		{"two names", craftHello(sniExt(0, "a.example", 0, "b.example")), errMalformed, "", false},
		{"other type", craftHello(sniExt(1, "a.example")), errMalformed, "", false},
		{"host and other type", craftHello(sniExt(0, "a.example", 1, "b.example")), errMalformed, "", false},
		{"empty name", craftHello(sniExt(0, "")), errMalformed, "", false},
		{"empty list", craftHello(helloExt(extServerName, []byte{0, 0})), errMalformed, "", false},
		{"empty extension", craftHello(helloExt(extServerName, nil)), errMalformed, "", false},
		{"trailing dot", craftHello(sniExt(0, "a.example.")), errMalformed, "", false},
		{"NUL in name", craftHello(sniExt(0, "a.example\x00.evil")), errMalformed, "", false},
		{"space in name", craftHello(sniExt(0, "a example")), errMalformed, "", false},
		{"duplicate ext", craftHello(helloExt(5, nil), helloExt(5, nil)), errMalformed, "", false},
		{"bad alpn", craftHello(helloExt(extALPN, []byte{0, 1, 0})), errMalformed, "", false},
		{"list length lies", craftHello(helloExt(extServerName, []byte{0, 9, 0, 0, 1, 'a'})), errMalformed, "", false},
		{"not tls", []byte("GET / HTTP/1.1\r\n"), errNotTLS, "", false},
		{"ssh", []byte("SSH-2.0-OpenSSH\r\n"), errNotTLS, "", false},
		{"empty", nil, ErrNeedMore, "", false},
		{"record header only", []byte{0x16, 3, 1}, ErrNeedMore, "", false},
		{"bad version", []byte{0x16, 9, 1, 0, 5}, errMalformed, "", false},
		{"zero record", []byte{0x16, 3, 1, 0, 0}, errMalformed, "", false},
		{"huge record", []byte{0x16, 3, 1, 0x40, 0x01}, errMalformed, "", false},
		{"server hello", helloRecords([]byte{2, 0, 0, 1, 0}, 100), errMalformed, "", false},
		{"too large", helloRecords([]byte{1, 0x01, 0x00, 0x00}, 100), ErrHelloTooLarge, "", false},
		{"alert after fragment", append(helloRecords([]byte{1, 0, 1, 0}, 100), 0x15, 3, 1, 0, 2, 2, 40), errMalformed, "", false},
		{"trailing bytes in hello", func() []byte {
			b := handshakeOf(t, craftHello(sniExt(0, "a.example")))
			b = append(b, 0xff)
			b[3]++
			return helloRecords(b, 1000)
		}(), errMalformed, "", false},
	} {
		h, err := ParseClientHello(tc.data)
		if tc.want == nil {
			if err != nil || h.ServerName != tc.sni || h.ECH != tc.ech {
				t.Errorf("%s: %+v %v, want %q ech=%v", tc.name, h, err, tc.sni, tc.ech)
			}
			continue
		}
		if !errors.Is(err, tc.want) {
			t.Errorf("%s: error %v, want %v", tc.name, err, tc.want)
		}
	}
}

// FuzzParseClientHello: real ClientHellos are ~1.5 KiB (ML-KEM key
// shares), run it with -fuzzminimizetime=200x or minimizing stalls it.
func FuzzParseClientHello(f *testing.F) {
	for _, cfg := range []*tls.Config{
		{ServerName: "api.example.com"},
		{InsecureSkipVerify: true},
		{ServerName: "h2.example", NextProtos: []string{"h2", "http/1.1"}},
		{ServerName: "old.example", MaxVersion: tls.VersionTLS12},
	} {
		data := egresstest.ClientHello(f, cfg)
		f.Add(data)
		f.Add(refragment(f, data, 50))
	}
	f.Add(craftHello(sniExt(0, "a.example"), helloExt(0xfe0d, []byte{0})))
	f.Add(craftHello(sniExt(0, "a.example", 0, "b.example")))
	f.Add([]byte{0x16, 3, 1, 0, 4, 1, 0, 0, 0})
	f.Fuzz(func(t *testing.T, data []byte) {
		h, err := ParseClientHello(data)
		if err != nil {
			if !errors.Is(err, ErrNeedMore) && !errors.Is(err, errNotTLS) && !errors.Is(err, errMalformed) && !errors.Is(err, ErrHelloTooLarge) {
				t.Fatalf("untyped error %v", err)
			}
			return
		}
		for _, c := range []byte(h.ServerName) {
			if c <= ' ' || c >= 0x7f {
				t.Fatalf("server name %q", h.ServerName)
			}
		}
		// A prefix of an accepted hello is incomplete, never another
		// answer.
		step := max(1, len(data)/64)
		for i := 0; i < len(data); i += step {
			h2, err := ParseClientHello(data[:i])
			if err != ErrNeedMore && (err != nil || h2.ServerName != h.ServerName || h2.ECH != h.ECH) {
				t.Fatalf("prefix %d: %+v %v; whole: %+v", i, h2, err, h)
			}
		}
		// Where crypto/tls accepts the hello too, it sees the same name.
		if name, ok := egresstest.GoServerName(data); ok && name != h.ServerName {
			t.Fatalf("crypto/tls sees %q, we see %q", name, h.ServerName)
		}
	})
}
