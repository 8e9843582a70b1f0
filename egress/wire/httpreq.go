package wire

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"slices"
	"strconv"
	"strings"
)

// maxRequestHead caps the bytes of one request head (request line and
// header fields).
const maxRequestHead = 64 << 10

// Errors of ReadRequestHead. Every one means the request is refused: the
// filter and the server could read it differently (which Host, where the
// body ends), so it is never forwarded.
var (
	ErrHeadTooLarge     = errors.New("http: request head too large")
	errBareLF           = errors.New("http: line not ended by CRLF")
	errObsFold          = errors.New("http: obsolete line folding")
	errBadRequestLine   = errors.New("http: malformed request line")
	errUnsupportedProto = errors.New("http: protocol version other than HTTP/1.0 or HTTP/1.1")
	errBadHeader        = errors.New("http: malformed header field")
	errDuplicateHost    = errors.New("http: more than one Host header")
	errMissingHost      = errors.New("http: no Host")
	errBadHost          = errors.New("http: malformed Host")
	errHostUserinfo     = errors.New("http: userinfo in Host")
	errHostMismatch     = errors.New("http: Host header differs from the request-target's authority")
	errBadFraming       = errors.New("http: ambiguous message framing (Content-Length, Transfer-Encoding)")
	errBadChunk         = errors.New("http: malformed chunked body")
)

// errBadStatusLine: ReadResponseHead did not find an HTTP/1.x status line.
var errBadStatusLine = errors.New("http: malformed status line")

// RequestHead is one HTTP/1.x request head.
type RequestHead struct {
	Method string
	Target string // request-target as sent
	proto  string // "HTTP/1.0" or "HTTP/1.1"
	// Host is the authority's host, lower-case, without port or brackets
	// (from an absolute-form or authority-form target, else the Host
	// header; when both are present they must agree).
	Host string
	port int // the authority's port, 0 when absent
	// header fields in order, names as sent.
	header []headerField
	// ContentLength is the body's length, -1 when chunked; 0 when the
	// request has no body.
	ContentLength int64
	Chunked       bool
	// Connect is a CONNECT request (the target is an authority).
	Connect bool
	// Upgrade lists the protocols asked for by Connection: upgrade and
	// Upgrade ("websocket"; the values of every Upgrade field, joined by
	// ", "), "" if none: once the server switches (101), the connection
	// is no longer HTTP.
	Upgrade string
	// Close: the connection ends after this request (Connection: close,
	// or HTTP/1.0 without keep-alive).
	Close bool
	// Raw is the head exactly as received, to forward unchanged.
	Raw []byte
}

// headerField is one header line.
type headerField struct{ Name, Value string }

// get returns the value of the first field named name (case-insensitive).
func (h RequestHead) get(name string) string {
	for _, f := range h.header {
		if strings.EqualFold(f.Name, name) {
			return f.Value
		}
	}
	return ""
}

// Values returns the values of every field named name (case-insensitive),
// in order.
func (h RequestHead) Values(name string) []string {
	var out []string
	for _, f := range h.header {
		if strings.EqualFold(f.Name, name) {
			out = append(out, f.Value)
		}
	}
	return out
}

// UpgradeTo reports whether the request asks to switch to protocol (an
// Upgrade token, case-insensitive, any version).
func (h RequestHead) UpgradeTo(protocol string) bool {
	for t := range strings.SplitSeq(h.Upgrade, ",") {
		name, _, _ := strings.Cut(strings.TrimSpace(t), "/")
		if strings.EqualFold(name, protocol) {
			return true
		}
	}
	return false
}

// ReadRequestHead reads one request head of at most limit bytes (at most
// maxRequestHead) from br, strictly (RFC 9112): lines end with CRLF, no
// obsolete folding, one Host, no userinfo, one unambiguous body length.
// It returns io.EOF when the connection ends cleanly before a request, so
// a keep-alive loop can stop. Up to four empty lines before the request
// line are skipped (and not in Raw), as some clients send a CRLF after a
// body.
func ReadRequestHead(br *bufio.Reader, limit int) (RequestHead, error) {
	limit = min(limit, maxRequestHead)
	h := RequestHead{ContentLength: 0}
	var raw []byte
	line, err := readRequestLine(br, &raw, limit)
	if err != nil {
		return h, err
	}
	if err := h.parseRequestLine(string(line)); err != nil {
		return h, err
	}
	fields, err := h.readFields(br, &raw, limit)
	if err != nil {
		return h, err
	}
	h.Raw = raw

	if err := h.resolveHost(fields.hosts); err != nil {
		return h, err
	}
	if err := h.framing(fields.lengths, fields.encodings); err != nil {
		return h, err
	}
	h.connectionOptions(fields.connection, fields.upgrades)
	return h, nil
}

// readRequestLine reads the request line into raw, after at most four
// empty lines, which are not kept.
func readRequestLine(br *bufio.Reader, raw *[]byte, limit int) ([]byte, error) {
	for skipped := 0; ; skipped++ {
		if skipped > 4 {
			return nil, errBadRequestLine
		}
		line, err := readLine(br, raw, skipped == 0, limit)
		if err != nil || len(line) != 0 {
			return line, err
		}
		*raw = (*raw)[:0]
	}
}

// fieldValues are the values of the header fields that decide a request's
// host, framing and connection, each field in the order sent.
type fieldValues struct {
	hosts, lengths, encodings, connection, upgrades []string
}

// readFields reads the header fields up to the empty line into raw and
// h.header, and returns the values that matter.
func (h *RequestHead) readFields(br *bufio.Reader, raw *[]byte, limit int) (fieldValues, error) {
	var v fieldValues
	for {
		line, err := readLine(br, raw, false, limit)
		if err != nil || len(line) == 0 {
			return v, err
		}
		f, err := parseField(line)
		if err != nil {
			return v, err
		}
		h.header = append(h.header, f)
		key := strings.ToLower(f.Name)
		if spelt := strings.ReplaceAll(key, "_", "-"); spelt != key && (spelt == "content-length" || spelt == "transfer-encoding") {
			// Some servers read '_' as '-' in field names: the body would
			// end where only they think.
			return v, fmt.Errorf("%w: %s", errBadHeader, f.Name)
		}
		switch key {
		case "host":
			v.hosts = append(v.hosts, f.Value)
		case "content-length":
			v.lengths = append(v.lengths, f.Value)
		case "transfer-encoding":
			v.encodings = append(v.encodings, f.Value)
		case "connection":
			v.connection = append(v.connection, f.Value)
		case "upgrade":
			v.upgrades = append(v.upgrades, f.Value)
		}
	}
}

// parseField parses one header line: no obsolete folding, a token before
// the colon, no control character in the value.
func parseField(line []byte) (headerField, error) {
	if line[0] == ' ' || line[0] == '\t' {
		return headerField{}, errObsFold
	}
	name, value, ok := bytes.Cut(line, []byte(":"))
	if !ok || len(name) == 0 || !isToken(string(name)) {
		// Includes whitespace before the colon (RFC 9112, 5.1).
		return headerField{}, fmt.Errorf("%w: %q", errBadHeader, clipBytes(line))
	}
	v := string(bytes.Trim(value, " \t"))
	for i := 0; i < len(v); i++ {
		if c := v[i]; c < ' ' && c != '\t' || c == 0x7f {
			return headerField{}, fmt.Errorf("%w: control character in %s", errBadHeader, name)
		}
	}
	return headerField{Name: string(name), Value: v}, nil
}

// connectionOptions sets Close and Upgrade from the Connection and
// Upgrade fields.
func (h *RequestHead) connectionOptions(connection, upgrades []string) {
	closeConn, keepAlive, upgradeToken := false, false, false
	for _, c := range connection {
		for t := range strings.SplitSeq(c, ",") {
			switch strings.ToLower(strings.TrimSpace(t)) {
			case "close":
				closeConn = true
			case "keep-alive":
				keepAlive = true
			case "upgrade":
				upgradeToken = true
			}
		}
	}
	h.Close = closeConn || h.proto == "HTTP/1.0" && !keepAlive
	if upgradeToken {
		h.Upgrade = strings.Join(upgrades, ", ")
	}
}

// readLine appends one line (with its CRLF) to raw, which may not grow
// past limit, and returns it without the CRLF. A line ending in a bare
// LF, or holding a bare CR, is refused.
func readLine(br *bufio.Reader, raw *[]byte, first bool, limit int) ([]byte, error) {
	start := len(*raw)
	for {
		chunk, err := br.ReadSlice('\n')
		if len(*raw)+len(chunk) > limit {
			return nil, ErrHeadTooLarge
		}
		*raw = append(*raw, chunk...)
		if err == nil {
			break
		}
		if err == bufio.ErrBufferFull {
			continue
		}
		if err == io.EOF {
			if first && len(*raw) == start {
				return nil, io.EOF
			}
			return nil, io.ErrUnexpectedEOF
		}
		return nil, err
	}
	line := (*raw)[start:]
	if len(line) < 2 || line[len(line)-2] != '\r' {
		return nil, errBareLF
	}
	line = line[:len(line)-2]
	if bytes.IndexByte(line, '\r') >= 0 {
		return nil, errBareLF
	}
	return line, nil
}

func (h *RequestHead) parseRequestLine(line string) error {
	method, rest, ok1 := strings.Cut(line, " ")
	target, proto, ok2 := strings.Cut(rest, " ")
	if !ok1 || !ok2 || !isToken(method) || target == "" || strings.Contains(proto, " ") {
		return fmt.Errorf("%w: %q", errBadRequestLine, clip(line))
	}
	for i := 0; i < len(target); i++ {
		if c := target[i]; c <= ' ' || c >= 0x7f {
			return fmt.Errorf("%w: %q", errBadRequestLine, clip(line))
		}
	}
	if proto != "HTTP/1.1" && proto != "HTTP/1.0" {
		return fmt.Errorf("%w: %q", errUnsupportedProto, clip(proto))
	}
	h.Method, h.Target, h.proto = method, target, proto
	h.Connect = method == "CONNECT"
	return nil
}

// resolveHost sets Host and Port from the target and the Host headers.
func (h *RequestHead) resolveHost(hosts []string) error {
	if len(hosts) > 1 {
		return errDuplicateHost
	}
	var fromTarget, fromHeader *authority
	switch {
	case h.Connect:
		a, err := parseAuthority(h.Target)
		if err != nil {
			return err
		}
		if a.port == 0 {
			return fmt.Errorf("%w: CONNECT without a port", errBadRequestLine)
		}
		fromTarget = &a
	case strings.HasPrefix(h.Target, "/"):
	case h.Target == "*":
		if h.Method != "OPTIONS" {
			return fmt.Errorf("%w: %q target for %s", errBadRequestLine, "*", h.Method)
		}
	default:
		scheme, rest, ok := strings.Cut(h.Target, "://")
		if !ok || !strings.EqualFold(scheme, "http") && !strings.EqualFold(scheme, "https") {
			return fmt.Errorf("%w: target %q", errBadRequestLine, clip(h.Target))
		}
		end := strings.IndexAny(rest, "/?#")
		if end < 0 {
			end = len(rest)
		}
		a, err := parseAuthority(rest[:end])
		if err != nil {
			return err
		}
		fromTarget = &a
	}
	if len(hosts) == 1 {
		a, err := parseAuthority(hosts[0])
		if err != nil {
			return err
		}
		fromHeader = &a
	}
	switch {
	case fromTarget != nil && fromHeader != nil:
		if *fromTarget != *fromHeader {
			// A proxy must use the target, an origin server often reads
			// the header: refuse rather than guess.
			return errHostMismatch
		}
		h.Host, h.port = fromTarget.host, fromTarget.port
	case fromTarget != nil:
		h.Host, h.port = fromTarget.host, fromTarget.port
	case fromHeader != nil:
		h.Host, h.port = fromHeader.host, fromHeader.port
	default:
		return errMissingHost
	}
	return nil
}

type authority struct {
	host string
	port int
}

// parseAuthority parses host[:port] strictly: a DNS name of letters,
// digits, '-', '_' and '.', or an IP literal (IPv6 in brackets); no
// userinfo, no percent-encoding.
func parseAuthority(s string) (authority, error) {
	var a authority
	if strings.Contains(s, "@") {
		return a, errHostUserinfo
	}
	host, port := s, ""
	if strings.HasPrefix(s, "[") {
		end := strings.Index(s, "]")
		if end < 0 {
			return a, fmt.Errorf("%w: %q", errBadHost, clip(s))
		}
		host, port = s[1:end], s[end+1:]
		ip, err := netip.ParseAddr(host)
		if err != nil || !ip.Is6() || ip.Zone() != "" {
			return a, fmt.Errorf("%w: %q", errBadHost, clip(s))
		}
		host = ip.String()
		if port != "" {
			p, ok := strings.CutPrefix(port, ":")
			if !ok {
				return a, fmt.Errorf("%w: %q", errBadHost, clip(s))
			}
			port = p
		}
	} else if i := strings.LastIndexByte(s, ':'); i >= 0 {
		host, port = s[:i], s[i+1:]
		if port == "" {
			// "host:" is allowed by RFC 3986 but a needless ambiguity.
			return a, fmt.Errorf("%w: %q", errBadHost, clip(s))
		}
	}
	if host == "" {
		return a, fmt.Errorf("%w: empty host", errBadHost)
	}
	for i := 0; i < len(host); i++ {
		c := host[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_' || c == '.' || c == ':') {
			return a, fmt.Errorf("%w: %q", errBadHost, clip(s))
		}
	}
	if strings.Contains(host, ":") && !strings.HasPrefix(s, "[") {
		return a, fmt.Errorf("%w: %q", errBadHost, clip(s))
	}
	a.host = strings.ToLower(host)
	if port != "" {
		if len(port) > 5 || strings.Trim(port, "0123456789") != "" {
			return a, fmt.Errorf("%w: port %q", errBadHost, clip(port))
		}
		p, _ := strconv.Atoi(port)
		if p < 1 || p > 65535 {
			return a, fmt.Errorf("%w: port %q", errBadHost, clip(port))
		}
		a.port = p
	}
	return a, nil
}

// framing sets ContentLength and Chunked, refusing any message whose end
// two parsers could place differently (RFC 9112, 6.3 and 11.2).
func (h *RequestHead) framing(lengths, encodings []string) error {
	switch {
	case len(encodings) > 0 && len(lengths) > 0:
		return fmt.Errorf("%w: both Content-Length and Transfer-Encoding", errBadFraming)
	case len(encodings) > 1:
		return fmt.Errorf("%w: several Transfer-Encoding fields", errBadFraming)
	case len(encodings) == 1:
		if h.proto == "HTTP/1.0" || !strings.EqualFold(encodings[0], "chunked") {
			return fmt.Errorf("%w: Transfer-Encoding %q", errBadFraming, clip(encodings[0]))
		}
		h.Chunked, h.ContentLength = true, -1
	case len(lengths) > 1:
		return fmt.Errorf("%w: several Content-Length fields", errBadFraming)
	case len(lengths) == 1:
		v := lengths[0]
		if v == "" || len(v) > 18 || strings.Trim(v, "0123456789") != "" {
			return fmt.Errorf("%w: Content-Length %q", errBadFraming, clip(v))
		}
		h.ContentLength, _ = strconv.ParseInt(v, 10, 64)
	}
	if (h.Chunked || h.ContentLength > 0) && slices.Contains(bodilessMethods, h.Method) {
		// A server that ignores the body of such a request reads it as
		// the next request, which the filter never checked (CL.0).
		return fmt.Errorf("%w: a body on %s", errBadFraming, h.Method)
	}
	return nil
}

// bodilessMethods are the methods whose body has no defined meaning
// (RFC 9110, 9.3): servers may ignore it, or must not receive one.
var bodilessMethods = []string{"GET", "HEAD", "DELETE", "TRACE"}

// ResponseHead is one HTTP/1.x response head.
type ResponseHead struct {
	Status int    // the status code
	Raw    []byte // the head exactly as received, to forward unchanged
}

// ReadResponseHead reads one response head (status line and header
// fields) from br, as strictly as a request head (lines end with CRLF,
// at most maxRequestHead bytes). The fields are not interpreted: the
// proxy only needs to know whether a server switched protocols.
func ReadResponseHead(br *bufio.Reader) (ResponseHead, error) {
	var h ResponseHead
	line, err := readLine(br, &h.Raw, true, maxRequestHead)
	if err != nil {
		return h, err
	}
	proto, rest, _ := strings.Cut(string(line), " ")
	code, _, _ := strings.Cut(rest, " ")
	if proto != "HTTP/1.1" && proto != "HTTP/1.0" || len(code) != 3 || strings.Trim(code, "0123456789") != "" {
		return h, fmt.Errorf("%w: %q", errBadStatusLine, clipBytes(line))
	}
	h.Status, _ = strconv.Atoi(code)
	for {
		line, err := readLine(br, &h.Raw, false, maxRequestHead)
		if err != nil {
			return h, err
		}
		if len(line) == 0 {
			return h, nil
		}
	}
}

// BodyReader returns a reader of exactly the request's body bytes as they
// are on the wire (chunked framing and trailers included, verified), so
// that the caller can forward them and then read the next request head.
// A CONNECT or Upgrade request has no body here: after it the connection
// is a raw stream, which the caller handles.
func (h RequestHead) BodyReader(br *bufio.Reader) io.Reader {
	switch {
	case h.Chunked:
		return &chunkedReader{br: br}
	case h.ContentLength > 0:
		return &fixedReader{r: br, left: h.ContentLength}
	}
	return eofReader{}
}

type eofReader struct{}

func (eofReader) Read([]byte) (int, error) { return 0, io.EOF }

// fixedReader is io.LimitReader that reports a short body.
type fixedReader struct {
	r    io.Reader
	left int64
}

func (f *fixedReader) Read(p []byte) (int, error) {
	if f.left <= 0 {
		return 0, io.EOF
	}
	if int64(len(p)) > f.left {
		p = p[:f.left]
	}
	n, err := f.r.Read(p)
	f.left -= int64(n)
	if err == io.EOF {
		if f.left > 0 {
			return n, io.ErrUnexpectedEOF
		}
		err = nil
	}
	return n, err
}

// Limits of the chunked framing lines.
const (
	maxChunkLine = 4 << 10
	maxTrailers  = 64 << 10
)

// chunkedReader passes a chunked body through unchanged while checking
// its framing: chunk-size (hex) [; extensions] CRLF, data, CRLF, ..., a
// zero-size chunk, trailer fields, CRLF.
type chunkedReader struct {
	br      *bufio.Reader
	pending []byte // framing bytes read but not yet returned
	data    int64  // data bytes left in the current chunk
	state   int
	trailer int // trailer bytes so far
	err     error
}

const (
	chunkSize = iota
	chunkData
	chunkDataEnd
	chunkTrailer
	chunkDone
)

func (c *chunkedReader) Read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	for {
		if len(c.pending) > 0 {
			n := copy(p, c.pending)
			c.pending = c.pending[n:]
			return n, nil
		}
		if c.err != nil {
			return 0, c.err
		}
		if c.state != chunkData {
			c.step()
			continue
		}
		q := p
		if int64(len(q)) > c.data {
			q = q[:c.data]
		}
		n, err := c.br.Read(q)
		c.data -= int64(n)
		if c.data == 0 {
			c.state = chunkDataEnd
		}
		if n > 0 {
			return n, nil // an error comes back on the next call
		}
		if err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		if err != nil {
			c.err = err
			return 0, err
		}
	}
}

// step reads the next framing element into pending (or sets err).
func (c *chunkedReader) step() {
	switch c.state {
	case chunkSize:
		line, err := c.line(maxChunkLine)
		if err != nil {
			c.err = err
			return
		}
		size, ext, _ := bytes.Cut(line, []byte(";"))
		if len(size) == 0 || len(size) > 15 {
			c.err = fmt.Errorf("%w: chunk size %q", errBadChunk, clipBytes(line))
			return
		}
		// Hex digits only: no sign, no prefix, no '_'.
		n, err := strconv.ParseUint(string(size), 16, 64)
		if err != nil {
			c.err = fmt.Errorf("%w: chunk size %q", errBadChunk, clipBytes(line))
			return
		}
		for _, b := range ext {
			if b < ' ' && b != '\t' || b == 0x7f {
				c.err = fmt.Errorf("%w: control character in a chunk extension", errBadChunk)
				return
			}
		}
		if n == 0 {
			c.state = chunkTrailer
		} else {
			c.data, c.state = int64(n), chunkData
		}
	case chunkDataEnd:
		line, err := c.line(2)
		if err != nil {
			c.err = err
			return
		}
		if len(line) != 0 {
			c.err = fmt.Errorf("%w: chunk data longer than its size", errBadChunk)
			return
		}
		c.state = chunkSize
	case chunkTrailer:
		line, err := c.line(maxTrailers - c.trailer)
		if err != nil {
			c.err = err
			return
		}
		c.trailer += len(line) + 2
		if len(line) == 0 {
			c.state = chunkDone
			return
		}
		if line[0] == ' ' || line[0] == '\t' {
			c.err = errObsFold
			return
		}
		if name, _, ok := bytes.Cut(line, []byte(":")); !ok || !isToken(string(name)) {
			c.err = fmt.Errorf("%w: trailer %q", errBadHeader, clipBytes(line))
		}
	case chunkDone:
		c.err = io.EOF
	}
}

// line reads one CRLF-terminated framing line of at most max bytes (CRLF
// excluded) into pending and returns it without the CRLF.
func (c *chunkedReader) line(max int) ([]byte, error) {
	var raw []byte
	for {
		chunk, err := c.br.ReadSlice('\n')
		raw = append(raw, chunk...)
		if len(raw) > max+2 {
			return nil, fmt.Errorf("%w: line too long", errBadChunk)
		}
		if err == nil {
			break
		}
		if err == bufio.ErrBufferFull {
			continue
		}
		if err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		return nil, err
	}
	if len(raw) < 2 || raw[len(raw)-2] != '\r' || bytes.IndexByte(raw[:len(raw)-2], '\r') >= 0 {
		return nil, errBareLF
	}
	c.pending = append(c.pending, raw...)
	return raw[:len(raw)-2], nil
}

// isToken reports an RFC 9110 token (method, header name).
func isToken(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' {
			continue
		}
		if !strings.ContainsRune("!#$%&'*+-.^_`|~", rune(c)) {
			return false
		}
	}
	return true
}

func clip(s string) string {
	if len(s) > 64 {
		return s[:64] + "..."
	}
	return s
}

func clipBytes(b []byte) string { return clip(string(b)) }
