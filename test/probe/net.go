package main

// Network subcommands, for the egress filter's tests. Each one is bounded
// in time (a few seconds at most, unless a hold time is given) and prints
// one line like the rest of the probe:
//
//	dns SERVER NAME [TYPE] [tcp]      one query (SERVER is ip or ip:port):
//	                                  "OK A:1.2.3.4 ... ttl:N", "OK NODATA ttl:N",
//	                                  "ERR NXDOMAIN|SERVFAIL|REFUSED|... name";
//	                                  a truncated UDP answer is asked again
//	                                  over TCP, as stub resolvers do
//	tls ADDR PORT SNI [HOLD]          handshake with that SNI ("-": none),
//	                                  print the peer's CN and the server's
//	                                  greeting; with HOLD, then wait for the
//	                                  peer to close: "OK CLOSED <ms>" or
//	                                  "OK OPEN" (still open when HOLD ended:
//	                                  after HOLD seconds, or once the file
//	                                  HOLD names, a path, exists)
//	tls-nosni ADDR PORT               tls ADDR PORT -
//	hello ADDR PORT SNI [ech]         a hand-made ClientHello (SNI may be an
//	                                  IP literal, "-" for none; ech adds the
//	                                  encrypted_client_hello extension 0xfe0d):
//	                                  "OK handshake" or "OK alert" when the
//	                                  server answered, ERR when cut off
//	http ADDR PORT HOST [HOST2] [PATH] GET on one keep-alive connection, a
//	                                  second request with HOST2 ("-": none)
//	                                  after the first response:
//	                                  "OK 200 body | 403 body"
//	http-hold ADDR PORT HOST WAIT [PATH]
//	                                  GET, wait (WAIT seconds, or until the
//	                                  file WAIT names exists), GET again on
//	                                  the same connection:
//	                                  "OK 200 body | 200 body"
//	tcp ADDR PORT [HOLD]              connect and read a banner line
//	tcp-listen PORT [SECONDS]         bind 127.0.0.1:PORT and listen: "OK
//	                                  listening on PORT"; with SECONDS, then
//	                                  greet each connection with "hello from
//	                                  PORT" for that long
//	udp ADDR PORT [PAYLOAD]           send one datagram, wait for a reply
//	icmp ADDR                         one unprivileged ICMP echo
//	udp-dev HOW IFACE ADDR PORT [PAYLOAD]
//	                                  send one datagram through interface
//	                                  IFACE, forced with HOW: bind
//	                                  (SO_BINDTODEVICE) or unicast-if
//	                                  (IP_UNICAST_IF): "OK SENT"
//	tcp-dev HOW IFACE ADDR PORT       connect through IFACE the same way:
//	                                  "OK CONNECTED"
//
// Floods, for the filter's limits (they take longer than the rest):
//
//	partial-hellos ADDR PORT N HOLD [BYTES]
//	                                  open N connections, each sending only
//	                                  the first BYTES (9 by default, at most
//	                                  16389) of a ClientHello; print
//	                                  "OPEN held=H refused=R" once it is known
//	                                  which ones the peer closed at once, keep
//	                                  the held ones open HOLD seconds, then
//	                                  "OK held=H refused=R closed=C" (C: held
//	                                  ones the peer closed meanwhile)
//	flood-tls ADDR PORT SNI N         N ClientHellos for SNI, one connection
//	                                  each, 32 at a time: "OK closed=C
//	                                  answered=A failed=F"
//	flood-dns SERVER NAME N           N A queries for NAME, 32 at a time:
//	                                  "OK answered=A lost=L"
//
// ADDR is an IP literal or a name resolved through /etc/resolv.conf.
// The commands register themselves in the probe's command table: this
// file's init runs after main.go's (files initialize in name order).

import (
	"bufio"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// caFile is where the tests put the CA of their TLS servers.
const caFile = "/etc/test-ca.pem"

const netTimeout = 5 * time.Second

func init() {
	if commands == nil {
		commands = map[string]command{}
	}
	for name, c := range map[string]command{
		"dns":            {"SERVER NAME [TYPE] [tcp]", 2, 4, cmdDNS},
		"tls":            {"ADDR PORT SNI [HOLD]", 3, 4, cmdTLS},
		"tls-nosni":      {"ADDR PORT", 2, 2, func(a []string) error { return cmdTLS([]string{a[0], a[1], "-"}) }},
		"hello":          {"ADDR PORT SNI [ech]", 3, 4, cmdHello},
		"http":           {"ADDR PORT HOST [HOST2] [PATH]", 3, 5, cmdHTTP},
		"http-hold":      {"ADDR PORT HOST WAIT [PATH]", 4, 5, cmdHTTPHold},
		"tcp":            {"ADDR PORT [HOLD]", 2, 3, cmdTCP},
		"tcp-listen":     {"PORT [SECONDS]", 1, 2, cmdTCPListen},
		"udp":            {"ADDR PORT [PAYLOAD]", 2, 3, cmdUDP},
		"icmp":           {"ADDR", 1, 1, cmdICMP},
		"partial-hellos": {"ADDR PORT N HOLD [BYTES]", 4, 5, cmdPartialHellos},
		"flood-tls":      {"ADDR PORT SNI N", 4, 4, cmdFloodTLS},
		"flood-dns":      {"SERVER NAME N", 3, 3, cmdFloodDNS},
		"udp-dev":        {"bind|unicast-if IFACE ADDR PORT [PAYLOAD]", 4, 5, cmdUDPDev},
		"tcp-dev":        {"bind|unicast-if IFACE ADDR PORT", 4, 4, cmdTCPDev},
	} {
		commands[name] = c
	}
}

// netErr turns a network error into the probe's ERR kinds: an errno
// name when there is one, EOF, ETIMEDOUT.
func netErr(what string, err error) error {
	if err == nil {
		return nil
	}
	var errno syscall.Errno
	switch {
	case errors.As(err, &errno):
		return fmt.Errorf("%s: %w", what, err)
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return failure{"EOF", what + ": " + err.Error()}
	case errors.Is(err, os.ErrDeadlineExceeded):
		return failure{"ETIMEDOUT", what + ": " + err.Error()}
	}
	var dnsErr *net.DNSError
	if errors.As(err, &dnsErr) {
		if dnsErr.IsNotFound {
			return failure{"NXDOMAIN", what + ": " + err.Error()}
		}
		return failure{"ERESOLVE", what + ": " + err.Error()}
	}
	return failure{"EOTHER", what + ": " + err.Error()}
}

func dialTCP(addr, port string) (net.Conn, error) {
	c, err := net.DialTimeout("tcp", net.JoinHostPort(addr, port), netTimeout)
	if err != nil {
		return nil, netErr("connect", err)
	}
	_ = c.SetDeadline(time.Now().Add(netTimeout))
	return c, nil
}

// holdOpen waits until the peer closes c or hold ends (see until).
func holdOpen(c net.Conn, r io.Reader, hold string) error {
	start := time.Now()
	ended, err := until(hold)
	if err != nil {
		return err
	}
	buf := make([]byte, 512)
	for {
		// Short reads: a close is seen at once, the end of hold within
		// a poll.
		_ = c.SetDeadline(time.Now().Add(pollEvery))
		_, err := r.Read(buf)
		if err == nil {
			continue
		}
		if !errors.Is(err, os.ErrDeadlineExceeded) {
			return okWith(fmt.Sprintf("CLOSED %d", time.Since(start).Milliseconds()))
		}
		if ended() {
			return okWith("OPEN")
		}
	}
}

// pollEvery is how often a hold checks whether it ended.
const pollEvery = 20 * time.Millisecond

// until turns a HOLD or WAIT argument into a test of its end: a number of
// seconds from now, or the path of a file whose creation (by the test, on
// an event it saw) ends it, within a minute.
func until(hold string) (func() bool, error) {
	if secs, err := strconv.ParseFloat(hold, 64); err == nil {
		if secs <= 0 {
			return nil, failure{"USAGE", "a hold must be a positive number of seconds or a path"}
		}
		end := time.Now().Add(time.Duration(secs * float64(time.Second)))
		return func() bool { return !time.Now().Before(end) }, nil
	}
	if !strings.HasPrefix(hold, "/") {
		return nil, failure{"USAGE", "a hold must be a positive number of seconds or a path"}
	}
	giveUp := time.Now().Add(time.Minute)
	return func() bool {
		_, err := os.Stat(hold)
		return err == nil || !time.Now().Before(giveUp)
	}, nil
}

// --- DNS ---

var dnsTypes = map[string]uint16{"A": 1, "NS": 2, "CNAME": 5, "SOA": 6, "PTR": 12, "MX": 15, "TXT": 16,
	"AAAA": 28, "SRV": 33, "SVCB": 64, "HTTPS": 65, "ANY": 255}

var dnsRcodes = map[int]string{1: "FORMERR", 2: "SERVFAIL", 3: "NXDOMAIN", 4: "NOTIMP", 5: "REFUSED"}

func cmdDNS(a []string) error {
	server, name := a[0], a[1]
	if _, _, err := net.SplitHostPort(server); err != nil {
		server = net.JoinHostPort(server, "53")
	}
	qtype := uint16(1)
	if len(a) > 2 {
		t, ok := dnsTypes[strings.ToUpper(a[2])]
		if !ok {
			return failure{"USAGE", "unknown type " + a[2]}
		}
		qtype = t
	}
	useTCP := len(a) > 3 && a[3] == "tcp"
	var id [2]byte
	_, _ = rand.Read(id[:])
	msg := buildQuery(binary.BigEndian.Uint16(id[:]), name, qtype)
	var resp []byte
	var err error
	if useTCP {
		resp, err = exchangeTCP(server, msg)
	} else if resp, err = exchangeUDP(server, msg); err == nil && truncated(resp) {
		// As stub resolvers do: a truncated answer is asked again over TCP.
		resp, err = exchangeTCP(server, msg)
	}
	if err != nil {
		return err
	}
	return parseAnswer(resp, binary.BigEndian.Uint16(id[:]))
}

// truncated reports whether a DNS message has its TC bit set.
func truncated(m []byte) bool { return len(m) > 2 && m[2]&0x02 != 0 }

func buildQuery(id uint16, name string, qtype uint16) []byte {
	b := binary.BigEndian.AppendUint16(nil, id)
	b = append(b, 0x01, 0x00) // RD
	b = binary.BigEndian.AppendUint16(b, 1)
	b = append(b, 0, 0, 0, 0, 0, 0)
	for l := range strings.SplitSeq(strings.TrimSuffix(name, "."), ".") {
		b = append(b, byte(len(l)))
		b = append(b, l...)
	}
	b = append(b, 0)
	b = binary.BigEndian.AppendUint16(b, qtype)
	return binary.BigEndian.AppendUint16(b, 1) // IN
}

func exchangeUDP(server string, msg []byte) ([]byte, error) {
	c, err := net.DialTimeout("udp", server, netTimeout)
	if err != nil {
		return nil, netErr("dial", err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(3 * time.Second))
	if _, err := c.Write(msg); err != nil {
		return nil, netErr("send", err)
	}
	buf := make([]byte, 4096)
	n, err := c.Read(buf)
	if err != nil {
		return nil, netErr("receive", err)
	}
	return buf[:n], nil
}

func exchangeTCP(server string, msg []byte) ([]byte, error) {
	c, err := net.DialTimeout("tcp", server, netTimeout)
	if err != nil {
		return nil, netErr("connect", err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(3 * time.Second))
	if _, err := c.Write(append(binary.BigEndian.AppendUint16(nil, uint16(len(msg))), msg...)); err != nil {
		return nil, netErr("send", err)
	}
	var l [2]byte
	if _, err := io.ReadFull(c, l[:]); err != nil {
		return nil, netErr("receive", err)
	}
	buf := make([]byte, binary.BigEndian.Uint16(l[:]))
	if _, err := io.ReadFull(c, buf); err != nil {
		return nil, netErr("receive", err)
	}
	return buf, nil
}

// skipName skips a (possibly compressed) name at off.
func skipName(m []byte, off int) (int, bool) {
	for off < len(m) {
		l := int(m[off])
		switch {
		case l == 0:
			return off + 1, true
		case l&0xc0 == 0xc0:
			return off + 2, off+2 <= len(m)
		}
		off += 1 + l
	}
	return 0, false
}

// readName reads a (possibly compressed) name at off.
func readName(m []byte, off int) string {
	var labels []string
	for hops := 0; off < len(m) && hops < 32; hops++ {
		l := int(m[off])
		if l == 0 {
			break
		}
		if l&0xc0 == 0xc0 {
			if off+1 >= len(m) {
				break
			}
			off = int(binary.BigEndian.Uint16(m[off:]) & 0x3fff)
			continue
		}
		if off+1+l > len(m) {
			break
		}
		labels = append(labels, string(m[off+1:off+1+l]))
		off += 1 + l
	}
	return strings.Join(labels, ".")
}

func parseAnswer(m []byte, id uint16) error {
	if len(m) < 12 || binary.BigEndian.Uint16(m) != id {
		return failure{"EBADMSG", "short answer or wrong id"}
	}
	rcode := int(m[3] & 0x0f)
	if rcode != 0 {
		name, ok := dnsRcodes[rcode]
		if !ok {
			name = "RCODE" + strconv.Itoa(rcode)
		}
		return failure{name, "rcode " + strconv.Itoa(rcode)}
	}
	qd, an := binary.BigEndian.Uint16(m[4:]), binary.BigEndian.Uint16(m[6:])
	off := 12
	for range qd {
		var ok bool
		if off, ok = skipName(m, off); !ok {
			return failure{"EBADMSG", "bad question"}
		}
		off += 4
	}
	var out []string
	minTTL := uint32(1 << 31)
	for range an {
		var ok bool
		if off, ok = skipName(m, off); !ok || off+10 > len(m) {
			return failure{"EBADMSG", "bad answer"}
		}
		typ := binary.BigEndian.Uint16(m[off:])
		ttl := binary.BigEndian.Uint32(m[off+4:])
		rdlen := int(binary.BigEndian.Uint16(m[off+8:]))
		off += 10
		if off+rdlen > len(m) {
			return failure{"EBADMSG", "bad rdata"}
		}
		rd := m[off : off+rdlen]
		minTTL = min(minTTL, ttl)
		switch {
		case typ == 1 && rdlen == 4, typ == 28 && rdlen == 16:
			kind := "A"
			if typ == 28 {
				kind = "AAAA"
			}
			out = append(out, kind+":"+net.IP(rd).String())
		case typ == 5:
			out = append(out, "CNAME:"+readName(m, off))
		case typ == 16:
			out = append(out, "TXT:"+strconv.Quote(string(rd)))
		default:
			out = append(out, "TYPE"+strconv.Itoa(int(typ)))
		}
		off += rdlen
	}
	if len(out) == 0 {
		return okWith("NODATA")
	}
	return okWith(strings.Join(out, " ") + " ttl:" + strconv.Itoa(int(minTTL)))
}

// --- TLS ---

func cmdTLS(a []string) error {
	addr, port, sni := a[0], a[1], a[2]
	if sni == "-" {
		sni = ""
	}
	raw, err := dialTCP(addr, port)
	if err != nil {
		return err
	}
	defer raw.Close()
	return tlsOver(raw, sni, a[3:])
}

// tlsOver makes the handshake of tls on a connected socket and reads the
// server's greeting; hold is tls's optional HOLD.
func tlsOver(raw net.Conn, sni string, hold []string) error {
	var verify string
	cfg := &tls.Config{
		ServerName:         sni,
		InsecureSkipVerify: true, // verified below against the tests' CA
		VerifyConnection: func(cs tls.ConnectionState) error {
			verify = verifyPeer(cs, sni)
			return nil
		},
	}
	c := tls.Client(raw, cfg)
	if err := c.Handshake(); err != nil {
		return netErr("handshake", err)
	}
	cn := ""
	if certs := c.ConnectionState().PeerCertificates; len(certs) > 0 {
		cn = certs[0].Subject.CommonName
	}
	br := bufio.NewReader(c)
	greeting, err := br.ReadString('\n')
	if err != nil {
		return netErr("read greeting", err)
	}
	summary := fmt.Sprintf("cn=%s verify=%s %s", cn, verify, strings.TrimSpace(greeting))
	if len(hold) > 0 {
		if err := holdOpen(raw, br, hold[0]); err != nil {
			var m okMsg
			if errors.As(err, &m) {
				return okWith(string(m) + " " + summary)
			}
			return err
		}
	}
	return okWith(summary)
}

// verifyPeer checks the chain against the tests' CA, if there is one.
func verifyPeer(cs tls.ConnectionState, name string) string {
	pem, err := os.ReadFile(caFile)
	if err != nil {
		return "noca"
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) || len(cs.PeerCertificates) == 0 {
		return "noca"
	}
	opts := x509.VerifyOptions{Roots: pool, DNSName: name, Intermediates: x509.NewCertPool()}
	for _, c := range cs.PeerCertificates[1:] {
		opts.Intermediates.AddCert(c)
	}
	if _, err := cs.PeerCertificates[0].Verify(opts); err != nil {
		return "fail"
	}
	return "ok"
}

// clientHello builds a TLS 1.3-capable ClientHello by hand: with the
// server name sni as is (even an IP literal, which crypto/tls never
// sends), and with an encrypted_client_hello extension when ech.
func clientHello(sni string, ech bool) []byte {
	ext := func(b []byte, typ uint16, data []byte) []byte {
		b = binary.BigEndian.AppendUint16(b, typ)
		b = binary.BigEndian.AppendUint16(b, uint16(len(data)))
		return append(b, data...)
	}
	random := func(n int) []byte {
		b := make([]byte, n)
		_, _ = rand.Read(b)
		return b
	}
	var exts []byte
	if sni != "" {
		entry := append([]byte{0}, binary.BigEndian.AppendUint16(nil, uint16(len(sni)))...)
		entry = append(entry, sni...)
		exts = ext(exts, 0x0000, append(binary.BigEndian.AppendUint16(nil, uint16(len(entry))), entry...))
	}
	exts = ext(exts, 0x000a, []byte{0, 4, 0x00, 0x1d, 0x00, 0x17}) // supported_groups: x25519, P-256
	exts = ext(exts, 0x000b, []byte{1, 0})                         // ec_point_formats
	exts = ext(exts, 0x000d, []byte{0, 6, 0x04, 0x03, 0x08, 0x04, 0x04, 0x01})
	exts = ext(exts, 0x002b, []byte{4, 0x03, 0x04, 0x03, 0x03}) // supported_versions
	share := append([]byte{0x00, 0x1d, 0x00, 0x20}, random(32)...)
	exts = ext(exts, 0x0033, append(binary.BigEndian.AppendUint16(nil, uint16(len(share))), share...))
	if ech {
		// ECHClientHello, outer: type 0, HKDF-SHA256 + AES-128-GCM, a
		// config id, an encapsulated key and a payload.
		e := []byte{0, 0x00, 0x01, 0x00, 0x01, 0x2a}
		e = append(e, 0x00, 0x20)
		e = append(e, random(32)...)
		e = append(e, 0x00, 0x80)
		e = append(e, random(128)...)
		exts = ext(exts, 0xfe0d, e)
	}
	body := []byte{0x03, 0x03}
	body = append(body, random(32)...)
	body = append(body, 32)
	body = append(body, random(32)...)
	suites := []byte{0x13, 0x01, 0x13, 0x02, 0x13, 0x03, 0xc0, 0x2f, 0xc0, 0x2b}
	body = binary.BigEndian.AppendUint16(body, uint16(len(suites)))
	body = append(body, suites...)
	body = append(body, 1, 0) // compression: null
	body = binary.BigEndian.AppendUint16(body, uint16(len(exts)))
	body = append(body, exts...)
	hs := append([]byte{0x01, 0, byte(len(body) >> 8), byte(len(body))}, body...)
	rec := []byte{0x16, 0x03, 0x01, byte(len(hs) >> 8), byte(len(hs))}
	return append(rec, hs...)
}

func cmdHello(a []string) error {
	addr, port, sni := a[0], a[1], a[2]
	if sni == "-" {
		sni = ""
	}
	ech := false
	if len(a) > 3 {
		if a[3] != "ech" {
			return failure{"USAGE", "hello ADDR PORT SNI [ech]"}
		}
		ech = true
	}
	c, err := dialTCP(addr, port)
	if err != nil {
		return err
	}
	defer c.Close()
	if _, err := c.Write(clientHello(sni, ech)); err != nil {
		return netErr("send ClientHello", err)
	}
	var hdr [5]byte
	if _, err := io.ReadFull(c, hdr[:]); err != nil {
		return netErr("read", err)
	}
	switch hdr[0] {
	case 0x16:
		return okWith("handshake")
	case 0x15:
		return okWith("alert")
	}
	return okWith(fmt.Sprintf("record %#x", hdr[0]))
}

// --- HTTP ---

func cmdHTTP(a []string) error {
	host2, path := "", "/"
	if len(a) > 3 && a[3] != "-" {
		host2 = a[3]
	}
	if len(a) > 4 {
		path = a[4]
	}
	return httpRequests(a[0], a[1], path, nil, a[2], host2)
}

func cmdHTTPHold(a []string) error {
	ended, err := until(a[3])
	if err != nil {
		return err
	}
	path := "/"
	if len(a) > 4 {
		path = a[4]
	}
	return httpRequests(a[0], a[1], path, func() {
		for !ended() {
			time.Sleep(pollEvery)
		}
	}, a[2], a[2])
}

// httpRequests sends a GET for each host (the second one, if any, once
// pause returns) on one connection and summarizes the responses.
func httpRequests(addr, port, path string, pause func(), host, host2 string) error {
	c, err := dialTCP(addr, port)
	if err != nil {
		return err
	}
	defer c.Close()
	br := bufio.NewReader(c)
	var parts []string
	for i, h := range []string{host, host2} {
		if i > 0 && h == "" {
			break
		}
		if i > 0 && pause != nil {
			pause()
			_ = c.SetDeadline(time.Now().Add(netTimeout))
		}
		fmt.Fprintf(c, "GET %s HTTP/1.1\r\nHost: %s\r\nUser-Agent: probe\r\n\r\n", path, h)
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			if i == 0 {
				return netErr("read response", err)
			}
			e := netErr("read response", err)
			parts = append(parts, "ERR "+describe(e))
			break
		}
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
		resp.Body.Close()
		line, _, _ := strings.Cut(strings.TrimSpace(string(body)), "\n")
		parts = append(parts, strconv.Itoa(resp.StatusCode)+" "+line)
	}
	return okWith(strings.Join(parts, " | "))
}

// --- TCP, UDP, ICMP ---

func cmdTCP(a []string) error {
	c, err := dialTCP(a[0], a[1])
	if err != nil {
		return err
	}
	defer c.Close()
	_ = c.SetReadDeadline(time.Now().Add(3 * time.Second))
	br := bufio.NewReader(c)
	banner, err := br.ReadString('\n')
	if err != nil {
		return netErr("read banner", err)
	}
	banner = strings.TrimSpace(banner)
	if len(a) > 2 {
		if err := holdOpen(c, br, a[2]); err != nil {
			var m okMsg
			if errors.As(err, &m) {
				return okWith(string(m) + " " + banner)
			}
			return err
		}
	}
	return okWith(banner)
}

// cmdTCPListen binds and listens on 127.0.0.1:PORT (Landlock's tcp_bind
// governs the bind) and, for SECONDS, greets every connection.
func cmdTCPListen(a []string) error {
	secs := 0
	if len(a) > 1 {
		n, err := atoiArg(a[1])
		if err != nil {
			return err
		}
		secs = n
	}
	l, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", a[0]))
	if err != nil {
		return netErr("listen", err)
	}
	defer l.Close()
	if secs == 0 {
		return okWith("listening on " + a[0])
	}
	fmt.Println("OK listening on " + a[0])
	_ = l.(*net.TCPListener).SetDeadline(time.Now().Add(time.Duration(secs) * time.Second))
	for {
		c, err := l.Accept()
		if err != nil {
			os.Exit(0) // the deadline: the OK was printed already
		}
		_, _ = c.Write([]byte("hello from " + a[0] + "\n"))
		c.Close()
	}
}

func cmdUDP(a []string) error {
	payload := "probe"
	if len(a) > 2 {
		payload = a[2]
	}
	c, err := net.DialTimeout("udp", net.JoinHostPort(a[0], a[1]), netTimeout)
	if err != nil {
		return netErr("dial", err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(1500 * time.Millisecond))
	if _, err := c.Write([]byte(payload)); err != nil {
		return netErr("send", err)
	}
	buf := make([]byte, 2048)
	n, err := c.Read(buf)
	if err != nil {
		return netErr("receive", err)
	}
	return okWith(strconv.Quote(string(buf[:n])))
}

// cmdICMP sends one echo request through an unprivileged ICMP socket
// (net.ipv4.ping_group_range), never a raw one.
func cmdICMP(a []string) error {
	ip := net.ParseIP(a[0])
	if ip == nil {
		return failure{"USAGE", "icmp needs an IP address"}
	}
	domain, proto, typ := unix.AF_INET, unix.IPPROTO_ICMP, byte(8)
	var sa unix.Sockaddr
	if ip4 := ip.To4(); ip4 != nil {
		sa = &unix.SockaddrInet4{Addr: [4]byte(ip4)}
	} else {
		domain, proto, typ = unix.AF_INET6, unix.IPPROTO_ICMPV6, 128
		sa = &unix.SockaddrInet6{Addr: [16]byte(ip.To16())}
	}
	fd, err := unix.Socket(domain, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, proto)
	if err != nil {
		return errSys("socket(icmp)", err)
	}
	defer unix.Close(fd)
	tv := unix.Timeval{Sec: 1, Usec: 500000}
	_ = unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv)
	msg := []byte{typ, 0, 0, 0, 0, 0, 0, 1, 'p', 'r', 'o', 'b', 'e'}
	if err := unix.Sendto(fd, msg, 0, sa); err != nil {
		return errSys("sendto", err)
	}
	buf := make([]byte, 512)
	if _, _, err := unix.Recvfrom(fd, buf, 0); err != nil {
		if errors.Is(err, unix.EAGAIN) {
			return failure{"ETIMEDOUT", "no echo reply"}
		}
		return errSys("recvfrom", err)
	}
	return okWith("reply")
}

// --- floods ---

// partialHello is the first size bytes of a ClientHello that announces
// 60 KiB and never sends them: a record of 16 KiB, the handshake header,
// and zeros.
func partialHello(size int) []byte {
	b := []byte{0x16, 0x03, 0x01, 0x40, 0x00, 0x01, 0x00, 0xf0, 0x00}
	return append(b, make([]byte, max(0, min(size, 5+1<<14)-len(b)))...)
}

func cmdPartialHellos(a []string) error {
	n, err := atoiArg(a[2])
	if err != nil {
		return err
	}
	hold, err := strconv.ParseFloat(a[3], 64)
	if err != nil || hold <= 0 {
		return failure{"USAGE", "HOLD must be a number of seconds"}
	}
	size := 9
	if len(a) > 4 {
		if size, err = atoiArg(a[4]); err != nil {
			return err
		}
	}
	hello := partialHello(size)
	var conns []net.Conn
	refused := 0
	for range n {
		c, err := net.DialTimeout("tcp", net.JoinHostPort(a[0], a[1]), netTimeout)
		if err != nil {
			refused++
			continue
		}
		if _, err := c.Write(hello); err != nil {
			c.Close()
			refused++
			continue
		}
		conns = append(conns, c)
	}
	// A refused connection is closed by the peer right after it was
	// accepted: give every one the same short while to be.
	closed := closedWithin(conns, time.Now().Add(2*time.Second))
	var held []net.Conn
	for i, c := range conns {
		if closed[i] {
			c.Close()
			refused++
		} else {
			held = append(held, c)
		}
	}
	fmt.Printf("OPEN held=%d refused=%d\n", len(held), refused)
	closedLater := 0
	for _, gone := range closedWithin(held, time.Now().Add(time.Duration(hold*float64(time.Second)))) {
		if gone {
			closedLater++
		}
	}
	for _, c := range held {
		c.Close()
	}
	return okWith(fmt.Sprintf("held=%d refused=%d closed=%d", len(held), refused, closedLater))
}

// closedWithin reads every connection until deadline, in parallel, and
// reports which ones the peer closed (EOF or reset) by then.
func closedWithin(conns []net.Conn, deadline time.Time) []bool {
	out := make([]bool, len(conns))
	done := make(chan struct{}, len(conns))
	for i, c := range conns {
		go func() {
			defer func() { done <- struct{}{} }()
			_ = c.SetReadDeadline(deadline)
			var b [1]byte
			_, err := c.Read(b[:])
			out[i] = err != nil && !errors.Is(err, os.ErrDeadlineExceeded)
		}()
	}
	for range conns {
		<-done
	}
	return out
}

// parallel runs job n times, 32 at a time, and counts its outcomes.
func parallel(n int, job func() string) map[string]int {
	jobs := make(chan struct{})
	results := make(chan string)
	for range 32 {
		go func() {
			for range jobs {
				results <- job()
			}
		}()
	}
	go func() {
		for range n {
			jobs <- struct{}{}
		}
		close(jobs)
	}()
	counts := map[string]int{}
	for range n {
		counts[<-results]++
	}
	return counts
}

func cmdFloodTLS(a []string) error {
	n, err := atoiArg(a[3])
	if err != nil {
		return err
	}
	hello := clientHello(a[2], false)
	counts := parallel(n, func() string {
		c, err := dialTCP(a[0], a[1])
		if err != nil {
			return "failed"
		}
		defer c.Close()
		if _, err := c.Write(hello); err != nil {
			return "closed"
		}
		var b [1]byte
		if _, err := c.Read(b[:]); err != nil {
			if errors.Is(err, os.ErrDeadlineExceeded) {
				return "failed"
			}
			return "closed"
		}
		return "answered"
	})
	return okWith(fmt.Sprintf("closed=%d answered=%d failed=%d", counts["closed"], counts["answered"], counts["failed"]))
}

func cmdFloodDNS(a []string) error {
	n, err := atoiArg(a[2])
	if err != nil {
		return err
	}
	server := a[0]
	if _, _, err := net.SplitHostPort(server); err != nil {
		server = net.JoinHostPort(server, "53")
	}
	counts := parallel(n, func() string {
		var id [2]byte
		_, _ = rand.Read(id[:])
		if _, err := exchangeUDP(server, buildQuery(binary.BigEndian.Uint16(id[:]), a[1], 1)); err != nil {
			return "lost"
		}
		return "answered"
	})
	return okWith(fmt.Sprintf("answered=%d lost=%d", counts["answered"], counts["lost"]))
}

// deviceDialer dials through the interface named iface whatever the
// routes say, as an unprivileged process may: SO_BINDTODEVICE on a socket
// not bound yet, or IP_UNICAST_IF / IPV6_UNICAST_IF.
func deviceDialer(how, iface string) (*net.Dialer, error) {
	if how != "bind" && how != "unicast-if" {
		return nil, failure{"USAGE", "HOW is bind or unicast-if"}
	}
	return &net.Dialer{Timeout: 1500 * time.Millisecond, Control: func(network, _ string, rc syscall.RawConn) error {
		var serr error
		err := rc.Control(func(fd uintptr) {
			if how == "bind" {
				serr = errSys("setsockopt(SO_BINDTODEVICE)", unix.SetsockoptString(int(fd), unix.SOL_SOCKET, unix.SO_BINDTODEVICE, iface))
				return
			}
			ifr, err := unix.NewIfreq(iface)
			if err != nil {
				serr = errSys("ifreq", err)
				return
			}
			if err := unix.IoctlIfreq(int(fd), unix.SIOCGIFINDEX, ifr); err != nil {
				serr = errSys("ioctl(SIOCGIFINDEX)", err)
				return
			}
			// Both options take the index in network byte order.
			index := ifr.Uint32()
			be := int(index>>24 | index>>8&0xff00 | index<<8&0xff0000 | index<<24)
			if strings.HasSuffix(network, "6") {
				serr = errSys("setsockopt(IPV6_UNICAST_IF)", unix.SetsockoptInt(int(fd), unix.IPPROTO_IPV6, unix.IPV6_UNICAST_IF, be))
				return
			}
			serr = errSys("setsockopt(IP_UNICAST_IF)", unix.SetsockoptInt(int(fd), unix.IPPROTO_IP, unix.IP_UNICAST_IF, be))
		})
		if err != nil {
			return err
		}
		return serr
	}}, nil
}

func cmdUDPDev(a []string) error {
	d, err := deviceDialer(a[0], a[1])
	if err != nil {
		return err
	}
	payload := "probe"
	if len(a) > 4 {
		payload = a[4]
	}
	c, err := d.Dial("udp", net.JoinHostPort(a[2], a[3]))
	if err != nil {
		return netErr("dial", err)
	}
	defer c.Close()
	if _, err := c.Write([]byte(payload)); err != nil {
		return netErr("send", err)
	}
	return okWith("SENT")
}

func cmdTCPDev(a []string) error {
	d, err := deviceDialer(a[0], a[1])
	if err != nil {
		return err
	}
	c, err := d.Dial("tcp", net.JoinHostPort(a[2], a[3]))
	if err != nil {
		return netErr("connect", err)
	}
	c.Close()
	return okWith("CONNECTED")
}
