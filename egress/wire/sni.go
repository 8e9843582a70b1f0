package wire

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// ClientHello is what the filter needs of a TLS ClientHello.
type ClientHello struct {
	// ServerName is the SNI host_name exactly as sent ("" if none); an IP
	// literal is reported as is, the caller decides.
	ServerName string
	// ECH is set when the hello carries an encrypted ClientHello: the
	// outer ServerName is then a decoy and the caller must deny.
	ECH  bool
	alpn []string
}

var (
	// ErrNeedMore means the data is a valid but incomplete prefix of a
	// ClientHello: read more and call again with all the data.
	ErrNeedMore = errors.New("tls: incomplete ClientHello")
	// errNotTLS means the first byte is not a TLS handshake record.
	errNotTLS = errors.New("tls: not a TLS handshake")
	// errMalformed wraps every other parse failure.
	errMalformed = errors.New("tls: malformed ClientHello")
	// ErrHelloTooLarge means the ClientHello exceeds maxClientHello.
	ErrHelloTooLarge = errors.New("tls: ClientHello too large")
)

// maxClientHello caps the handshake bytes buffered for one ClientHello
// (what crypto/tls accepts for a handshake message).
const maxClientHello = 64 << 10

const (
	recordHandshake    = 0x16
	handshakeClient    = 0x01
	maxRecordPlaintext = 1 << 14

	extServerName = 0x0000
	extALPN       = 0x0010
	extECH        = 0xfe0d
	extESNI       = 0xffce // the draft that preceded ECH
)

// isECH reports the extension code points that hide the real server name:
// ECH (and its drafts 0xfe08..0xfe0c), and ESNI.
func isECH(t uint16) bool {
	return t >= 0xfe08 && t <= extECH || t == extESNI
}

func malformed(format string, a ...any) error {
	return fmt.Errorf("%w: %s", errMalformed, fmt.Sprintf(format, a...))
}

// ParseClientHello parses the first bytes a client sent on a connection.
// The ClientHello may be fragmented over several TLS records (and those
// over several reads): the handshake message is reassembled from the
// records before it is parsed. Anything ambiguous is an error, so that
// the filter never reads a name the server would read differently: two
// server names, a name type other than host_name, duplicate extensions,
// trailing bytes.
func ParseClientHello(data []byte) (ClientHello, error) {
	if len(data) == 0 {
		return ClientHello{}, ErrNeedMore
	}
	if data[0] != recordHandshake {
		return ClientHello{}, errNotTLS
	}
	// Find the records' fragments first and copy them into one handshake
	// message only once it is complete: a client sending a byte at a time
	// costs a walk over the record headers per call, not a copy.
	var frags [][]byte
	total, need := 0, -1 // need: the handshake message's length, once known
	consumed := 0
	for {
		if len(data) >= 1 && data[0] != recordHandshake {
			return ClientHello{}, malformed("record type %#x inside the ClientHello", data[0])
		}
		if len(data) >= 2 && data[1] != 3 {
			return ClientHello{}, malformed("record version %#x", data[1])
		}
		if len(data) < 5 {
			return ClientHello{}, ErrNeedMore
		}
		n := int(binary.BigEndian.Uint16(data[3:5]))
		if n == 0 || n > maxRecordPlaintext {
			return ClientHello{}, malformed("record length %d", n)
		}
		frag := data[5:]
		complete := len(frag) >= n
		if complete {
			frag = frag[:n]
		}
		frags = append(frags, frag)
		total += len(frag)
		if need < 0 && total >= 4 {
			var hdr [4]byte
			gather(hdr[:], frags)
			if hdr[0] != handshakeClient {
				return ClientHello{}, malformed("handshake type %d, not ClientHello", hdr[0])
			}
			l := int(hdr[1])<<16 | int(hdr[2])<<8 | int(hdr[3])
			if l+4 > maxClientHello {
				return ClientHello{}, ErrHelloTooLarge
			}
			need = l + 4
		}
		if need >= 0 && total >= need {
			// Another handshake message may follow in the same record;
			// only the ClientHello matters.
			msg := make([]byte, need)
			gather(msg, frags)
			return parseHello(msg[4:])
		}
		if !complete {
			return ClientHello{}, ErrNeedMore
		}
		consumed += 5 + n
		if consumed > 2*maxClientHello {
			// Tiny records: the record headers alone outweigh the cap.
			return ClientHello{}, ErrHelloTooLarge
		}
		data = data[5+n:]
	}
}

// gather fills dst from the start of the concatenated fragments.
func gather(dst []byte, frags [][]byte) {
	for _, f := range frags {
		n := copy(dst, f)
		dst = dst[n:]
		if len(dst) == 0 {
			return
		}
	}
}

// helloCursor is a bounds-checked cursor over a byte slice.
type helloCursor struct {
	b  []byte
	ok bool
}

func (r *helloCursor) take(n int) []byte {
	if !r.ok || n > len(r.b) {
		r.ok = false
		return nil
	}
	v := r.b[:n]
	r.b = r.b[n:]
	return v
}

func (r *helloCursor) u8() int {
	v := r.take(1)
	if v == nil {
		return 0
	}
	return int(v[0])
}

func (r *helloCursor) u16() int {
	v := r.take(2)
	if v == nil {
		return 0
	}
	return int(binary.BigEndian.Uint16(v))
}

func (r *helloCursor) vec8() []byte  { return r.take(r.u8()) }
func (r *helloCursor) vec16() []byte { return r.take(r.u16()) }

func parseHello(body []byte) (ClientHello, error) {
	var h ClientHello
	r := &helloCursor{b: body, ok: true}
	if v := r.u16(); r.ok && v>>8 != 3 {
		return h, malformed("client version %#04x", v)
	}
	r.take(32) // random
	if sid := r.vec8(); len(sid) > 32 {
		return h, malformed("session id of %d bytes", len(sid))
	}
	if cs := r.vec16(); r.ok && (len(cs) == 0 || len(cs)%2 != 0) {
		return h, malformed("cipher suites of %d bytes", len(cs))
	}
	if cm := r.vec8(); r.ok && len(cm) == 0 {
		return h, malformed("no compression method")
	}
	if !r.ok {
		return h, malformed("truncated ClientHello")
	}
	if len(r.b) == 0 {
		return h, nil // no extensions (TLS 1.2 and older)
	}
	exts := &helloCursor{b: r.vec16(), ok: true}
	if !r.ok || len(r.b) != 0 {
		return h, malformed("bad extensions length")
	}
	seen := map[int]bool{}
	for len(exts.b) > 0 {
		t := exts.u16()
		data := exts.vec16()
		if !exts.ok {
			return h, malformed("truncated extension")
		}
		if seen[t] {
			return h, malformed("duplicate extension %#04x", t)
		}
		seen[t] = true
		switch {
		case t == extServerName:
			name, err := parseSNI(data)
			if err != nil {
				return h, err
			}
			h.ServerName = name
		case t == extALPN:
			alpn, err := parseALPN(data)
			if err != nil {
				return h, err
			}
			h.alpn = alpn
		case isECH(uint16(t)):
			h.ECH = true
		}
	}
	return h, nil
}

// parseSNI reads the server_name extension (RFC 6066, section 3): exactly
// one host_name, printable ASCII, no trailing dot.
func parseSNI(data []byte) (string, error) {
	r := &helloCursor{b: data, ok: true}
	list := &helloCursor{b: r.vec16(), ok: true}
	if !r.ok || len(r.b) != 0 || len(list.b) == 0 {
		return "", malformed("bad server_name list")
	}
	typ := list.u8()
	name := list.vec16()
	if !list.ok {
		return "", malformed("truncated server_name")
	}
	if len(list.b) != 0 {
		return "", malformed("more than one server name")
	}
	if typ != 0 {
		return "", malformed("server name type %d, not host_name", typ)
	}
	if len(name) == 0 {
		return "", malformed("empty server name")
	}
	for _, c := range name {
		if c <= ' ' || c >= 0x7f {
			return "", malformed("server name contains byte %#02x", c)
		}
	}
	if name[len(name)-1] == '.' {
		return "", malformed("server name ends with a dot")
	}
	return string(name), nil
}

func parseALPN(data []byte) ([]string, error) {
	r := &helloCursor{b: data, ok: true}
	list := &helloCursor{b: r.vec16(), ok: true}
	if !r.ok || len(r.b) != 0 || len(list.b) == 0 {
		return nil, malformed("bad ALPN list")
	}
	var out []string
	for len(list.b) > 0 {
		p := list.vec8()
		if !list.ok || len(p) == 0 {
			return nil, malformed("bad ALPN protocol")
		}
		out = append(out, string(p))
	}
	return out, nil
}
