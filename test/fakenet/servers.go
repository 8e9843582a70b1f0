package fakenet

// The fake internet's servers. Each listens on a port of every address of
// the namespace (UDP: a socket per address, so that a reply leaves from
// the address the datagram was sent to) and records what it receives:
//
//	ServeHTTP     HTTP/1.1: "host=HOST local=IP path=PATH proto=PROTO" (the
//	              request's body read first), GET /download?bytes=N (N
//	              bytes), and a websocket upgrade on /ws (101, then an echo)
//	ServeTLS      TLS with a certificate for the SNI (from the net's CA, or
//	              one no one signed): speaks first ("hello sni=SNI
//	              local=IP"), or HTTP/1.1 and h2 inside, as ServeHTTP
//	ServeBanner   plain TCP: speaks first ("BANNER IP"), then echoes
//	ServeLaxHTTP  HTTP/1.1 as leniently as request smuggling needs
//	ServeUDPEcho  UDP: echoes each datagram

import (
	"bufio"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"
)

// connDeadline bounds every connection a server accepts itself.
const connDeadline = 3 * time.Minute

// serving notes sockets of the servers ("tcp", port, "udp", port, ...),
// which Flush drains.
func (n *Net) serving(protoPorts ...any) {
	n.servedMu.Lock()
	defer n.servedMu.Unlock()
	for i := 0; i+1 < len(protoPorts); i += 2 {
		n.served[fmt.Sprintf("%s/%d", protoPorts[i], protoPorts[i+1])] = true
	}
}

func (n *Net) isServed(proto string, port uint64) bool {
	n.servedMu.Lock()
	defer n.servedMu.Unlock()
	return n.served[proto+"/"+strconv.FormatUint(port, 10)]
}

// onClose registers what Close stops.
func (n *Net) onClose(f func()) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.stops = append(n.stops, f)
}

// listenTCP listens on port of every address of the namespace.
func (n *Net) listenTCP(port int) (net.Listener, error) {
	var l net.Listener
	err := n.InNS(func() error {
		var err error
		l, err = net.Listen("tcp", ":"+strconv.Itoa(port))
		return err
	})
	if err != nil {
		return nil, err
	}
	n.serving("tcp", port)
	n.onClose(func() { l.Close() })
	return l, nil
}

// serveTCP serves port with handle, which owns each connection.
func (n *Net) serveTCP(port int, handle func(net.Conn)) error {
	l, err := n.listenTCP(port)
	if err != nil {
		return err
	}
	go n.acceptLoop(l, handle)
	return nil
}

// acceptLoop records every connection and hands it to handle, which
// closes it.
func (n *Net) acceptLoop(l net.Listener, handle func(net.Conn)) {
	for {
		c, err := l.Accept()
		if errors.Is(err, net.ErrClosed) {
			return
		}
		if err != nil {
			time.Sleep(10 * time.Millisecond) // EMFILE and the like: back off rather than spin
			continue
		}
		n.record(Event{Kind: "accept", Local: c.LocalAddr().String(), Remote: c.RemoteAddr().String()})
		_ = c.SetDeadline(time.Now().Add(connDeadline))
		go handle(c)
	}
}

// --- HTTP ---

// ServeHTTP serves HTTP/1.1 on port.
func (n *Net) ServeHTTP(port int) error {
	l, err := n.listenTCP(port)
	if err != nil {
		return err
	}
	srv := n.httpServer()
	go func() { _ = srv.Serve(recordingListener{l, n}) }()
	return nil
}

// httpServer is an HTTP server of the net's, closed with it.
func (n *Net) httpServer() *http.Server {
	srv := &http.Server{Handler: http.HandlerFunc(n.serveHTTP), ReadHeaderTimeout: 10 * time.Second}
	n.onClose(func() { _ = srv.Close() })
	return srv
}

// recordingListener records every accepted connection.
type recordingListener struct {
	net.Listener
	n *Net
}

func (l recordingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err == nil {
		l.n.record(Event{Kind: "accept", Local: c.LocalAddr().String(), Remote: c.RemoteAddr().String()})
	}
	return c, err
}

// serveHTTP records a request (kind http, or https inside TLS) and
// answers it.
func (n *Net) serveHTTP(w http.ResponseWriter, req *http.Request) {
	local := ""
	if a, ok := req.Context().Value(http.LocalAddrContextKey).(net.Addr); ok {
		local = a.String()
	}
	kind := "http"
	if req.TLS != nil {
		kind = "https"
	}
	n.record(Event{Kind: kind, Local: local, Remote: req.RemoteAddr, Name: req.Host, Path: req.URL.RequestURI(), Data: req.Method,
		Auth: req.Header.Get("Authorization")})
	switch {
	case req.URL.Path == "/ws" && strings.EqualFold(req.Header.Get("Upgrade"), "websocket"):
		echoUpgraded(w)
	case req.Method == http.MethodGet && req.URL.Path == "/download":
		download(w, req)
	default:
		discard(req.Body) // an upload
		fmt.Fprintf(w, "host=%s local=%s path=%s proto=%s\n", req.Host, HostOf(local), req.URL.RequestURI(), req.Proto)
	}
}

// discard reads r to its end in large reads (io.Discard's are 8 KiB), so
// that the server is never what limits an upload.
func discard(r io.Reader) {
	buf := make([]byte, 1<<20)
	for {
		if _, err := r.Read(buf); err != nil {
			return
		}
	}
}

// echoUpgraded accepts a websocket upgrade (101) and echoes what follows.
func echoUpgraded(w http.ResponseWriter) {
	c, brw, err := w.(http.Hijacker).Hijack()
	if err != nil {
		return
	}
	defer c.Close()
	_, _ = io.WriteString(c, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n")
	_, _ = io.Copy(c, brw)
}

// zeros is what /download sends: nothing on the path compresses it.
var zeros = make([]byte, 1<<20)

// download sends ?bytes=N bytes.
func download(w http.ResponseWriter, req *http.Request) {
	size, err := strconv.ParseInt(req.URL.Query().Get("bytes"), 10, 64)
	if err != nil || size < 0 {
		http.Error(w, "bytes: want a number", http.StatusBadRequest)
		return
	}
	w.Header().Set("Content-Type", "application/octet-stream")
	w.Header().Set("Content-Length", strconv.FormatInt(size, 10))
	for size > 0 {
		k, err := w.Write(zeros[:min(int64(len(zeros)), size)])
		size -= int64(k)
		if err != nil {
			return
		}
	}
}

// --- TLS ---

// TLSOptions shape a TLS server.
type TLSOptions struct {
	// HTTP serves HTTP/1.1 and h2 inside, as ServeHTTP does (but for the
	// events' kind: https). Without it, the server speaks first, "hello
	// sni=SNI local=IP", then reads until the client is done.
	HTTP bool
	// Unsigned: the certificate for the SNI is signed by no one, rather
	// than by CA.
	Unsigned bool
	// Handler, with HTTP, answers the requests instead of the echo; it
	// records what its test needs (Record).
	Handler http.Handler
}

// ServeTLS serves TLS on port: a handshake with a certificate for the SNI,
// recorded, then what o says.
func (n *Net) ServeTLS(port int, o TLSOptions) error {
	l, err := n.listenTCP(port)
	if err != nil {
		return err
	}
	n.ServeTLSOn(l, o)
	return nil
}

// ServeTLSOn is ServeTLS on a listener of the caller's (on the host, say),
// recorded as the net's own.
func (n *Net) ServeTLSOn(l net.Listener, o TLSOptions) {
	cfg := &tls.Config{
		MinVersion: tls.VersionTLS12,
		GetCertificate: func(h *tls.ClientHelloInfo) (*tls.Certificate, error) {
			return n.certs.leaf(h.ServerName, !o.Unsigned, false)
		},
	}
	after := greet
	if o.HTTP {
		cfg.NextProtos = []string{"h2", "http/1.1"}
	}
	// Both configurations are complete before the first handshake: a
	// tls.Config is not to be changed once in use.
	legacy := rsaKeyExchangeConfig(cfg, &n.certs, !o.Unsigned)
	cfg.GetConfigForClient = func(h *tls.ClientHelloInfo) (*tls.Config, error) {
		if len(h.SignatureSchemes) > 0 {
			return nil, nil
		}
		return legacy, nil
	}
	if o.HTTP {
		q := &connQueue{addr: l.Addr(), c: make(chan net.Conn), done: make(chan struct{})}
		n.onClose(func() { q.Close() })
		srv := n.httpServer()
		if o.Handler != nil {
			srv.Handler = o.Handler
		}
		// Offers h2 to the connections it is handed; a copy, since Serve
		// adds to the configuration it is given.
		srv.TLSConfig = cfg.Clone()
		go func() { _ = srv.Serve(q) }()
		after = q.push
	}
	go n.acceptLoop(l, func(c net.Conn) { n.handshake(c, cfg, after) })
}

// rsaKeyExchangeConfig is cfg for a TLS 1.2 client that sends no
// signature_algorithms (busybox's ssl_client): RFC 5246 lets it mean
// SHA-1 signatures, which Go refuses (RFC 9155), so the handshake uses
// RSA key exchange, where the server signs nothing, with an RSA leaf.
func rsaKeyExchangeConfig(cfg *tls.Config, c *certs, signed bool) *tls.Config {
	legacy := cfg.Clone()
	legacy.GetConfigForClient = nil
	legacy.MaxVersion = tls.VersionTLS12
	legacy.CipherSuites = []uint16{tls.TLS_RSA_WITH_AES_128_GCM_SHA256, tls.TLS_RSA_WITH_AES_256_GCM_SHA384,
		tls.TLS_RSA_WITH_AES_128_CBC_SHA, tls.TLS_RSA_WITH_AES_256_CBC_SHA}
	legacy.GetCertificate = func(h *tls.ClientHelloInfo) (*tls.Certificate, error) { return c.leaf(h.ServerName, signed, true) }
	return legacy
}

// handshake completes a TLS handshake with cfg, records it and hands the
// connection to after.
func (n *Net) handshake(c net.Conn, cfg *tls.Config, after func(tc *tls.Conn, sni string)) {
	tc := tls.Server(c, cfg)
	if err := tc.Handshake(); err != nil {
		n.record(Event{Kind: "tls-fail", Local: c.LocalAddr().String(), Remote: c.RemoteAddr().String(), Data: err.Error()})
		c.Close()
		return
	}
	sni := tc.ConnectionState().ServerName
	n.record(Event{Kind: "tls", Local: c.LocalAddr().String(), Remote: c.RemoteAddr().String(), Name: sni})
	after(tc, sni)
}

func greet(tc *tls.Conn, sni string) {
	defer tc.Close()
	fmt.Fprintf(tc, "hello sni=%s local=%s\n", sni, HostOf(tc.LocalAddr().String()))
	_, _ = io.Copy(io.Discard, tc)
}

// connQueue is a listener of connections accepted (and handshaken)
// elsewhere, for an HTTP server.
type connQueue struct {
	addr net.Addr
	c    chan net.Conn
	done chan struct{}
	once sync.Once
}

func (q *connQueue) push(tc *tls.Conn, _ string) {
	select {
	case q.c <- tc:
	case <-q.done:
		tc.Close()
	}
}

func (q *connQueue) Accept() (net.Conn, error) {
	select {
	case c := <-q.c:
		return c, nil
	case <-q.done:
		return nil, net.ErrClosed
	}
}

func (q *connQueue) Close() error {
	q.once.Do(func() { close(q.done) })
	return nil
}

func (q *connQueue) Addr() net.Addr { return q.addr }

// --- plain TCP ---

// ServeBanner serves port with a server that speaks first, "BANNER IP",
// then echoes what it receives.
func (n *Net) ServeBanner(port int, banner string) error {
	return n.serveTCP(port, func(c net.Conn) {
		defer c.Close()
		fmt.Fprintf(c, "%s %s\n", banner, HostOf(c.LocalAddr().String()))
		_, _ = io.Copy(c, c)
	})
}

// ServeLaxHTTP serves port with a keep-alive HTTP/1.1 server as lenient as
// the servers request smuggling relies on: it takes bare LF line ends,
// joins folded lines, reads '_' as '-' in field names, keeps the last of
// repeated fields, prefers Transfer-Encoding to Content-Length, and
// ignores the body of a GET, HEAD or DELETE (which it then reads as the
// next request). It records every request it reads and answers each with
// "lax METHOD TARGET".
func (n *Net) ServeLaxHTTP(port int) error {
	return n.serveTCP(port, n.handleLax)
}

func (n *Net) handleLax(c net.Conn) {
	defer c.Close()
	br := bufio.NewReader(c)
	line := func() (string, bool) {
		l, err := br.ReadString('\n')
		return strings.TrimRight(l, "\r\n"), err == nil
	}
	for {
		first, ok := line()
		if !ok {
			return
		}
		f := strings.Fields(first)
		if len(f) < 2 {
			continue
		}
		hdr, ok := laxHeader(line)
		if !ok {
			return
		}
		n.record(Event{Kind: "http", Local: c.LocalAddr().String(), Remote: c.RemoteAddr().String(), Name: hdr["host"], Path: f[1], Data: f[0]})
		if !laxSkipBody(br, line, f[0], hdr) {
			return
		}
		body := fmt.Sprintf("lax %s %s\n", f[0], f[1])
		fmt.Fprintf(c, "HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s", len(body), body)
	}
}

// laxHeader reads a header up to its empty line, leniently.
func laxHeader(line func() (string, bool)) (map[string]string, bool) {
	hdr := map[string]string{}
	last := ""
	for {
		l, ok := line()
		if !ok {
			return nil, false
		}
		if l == "" {
			return hdr, true
		}
		if (l[0] == ' ' || l[0] == '\t') && last != "" {
			hdr[last] += " " + strings.TrimSpace(l)
			continue
		}
		if k, v, ok := strings.Cut(l, ":"); ok {
			last = strings.ReplaceAll(strings.ToLower(strings.TrimSpace(k)), "_", "-")
			hdr[last] = strings.TrimSpace(v)
		}
	}
}

// laxSkipBody reads past a request's body as the lax server frames it.
func laxSkipBody(br *bufio.Reader, line func() (string, bool), method string, hdr map[string]string) bool {
	switch {
	case strings.Contains(strings.ToLower(hdr["transfer-encoding"]), "chunked"):
		for {
			size, ok := line()
			if !ok {
				return false
			}
			size, _, _ = strings.Cut(size, ";")
			k, _ := strconv.ParseInt(strings.TrimSpace(size), 16, 64)
			if k == 0 {
				for l, ok := line(); ok && l != ""; l, ok = line() {
				}
				return true
			}
			_, _ = io.CopyN(io.Discard, br, k+2)
		}
	case method == "GET" || method == "HEAD" || method == "DELETE":
	default:
		k, _ := strconv.ParseInt(hdr["content-length"], 10, 64)
		_, _ = io.CopyN(io.Discard, br, k)
	}
	return true
}

// --- UDP ---

// ServeUDPEcho echoes every datagram to port, on every address of the
// namespace.
func (n *Net) ServeUDPEcho(port int) error {
	var conns []net.PacketConn
	err := n.InNS(func() error {
		for _, a := range n.addrs() {
			c, err := net.ListenPacket("udp", net.JoinHostPort(a, strconv.Itoa(port)))
			if err != nil {
				return err
			}
			conns = append(conns, c)
		}
		return nil
	})
	n.onClose(func() {
		for _, c := range conns {
			c.Close()
		}
	})
	if err != nil {
		return err
	}
	n.serving("udp", port)
	for _, c := range conns {
		go n.echoUDP(c)
	}
	return nil
}

func (n *Net) echoUDP(c net.PacketConn) {
	buf := make([]byte, 2048)
	for {
		k, from, err := c.ReadFrom(buf)
		if err != nil {
			return
		}
		n.record(Event{Kind: "udp", Local: c.LocalAddr().String(), Remote: from.String(), Data: string(buf[:k])})
		_, _ = c.WriteTo(buf[:k], from)
	}
}
