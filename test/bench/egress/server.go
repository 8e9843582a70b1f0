package main

// The fake internet's servers. They run inside the fake internet's network
// namespace (`ip netns exec NS egressbench serve`), listen on every
// address there, and answer:
//
//	:53 udp+tcp  bench.test A -> -addr, AAAA -> no data; other names NXDOMAIN
//	:443 tls     one HTTP/1.1 request per connection, a small 200 response
//	:8080 http   POST /upload (reads Content-Length bytes, then 200),
//	             GET /download?bytes=N (N bytes), GET /echo with
//	             Connection: upgrade (101, then echoes every byte)
//
// The certificate of bench.test comes from a CA made at start, written to
// DIR/ca.pem for the clients; DIR/ready appears once everything listens.

import (
	"bufio"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"flag"
	"fmt"
	"io"
	"math/big"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/miekg/dns"
)

// tlsBody is the TLS server's whole response body.
const tlsBody = "hello from bench.test\n"

func serve(args []string) {
	fs := flag.NewFlagSet("serve", flag.ExitOnError)
	addr := fs.String("addr", "", "address bench.test resolves to (required)")
	dir := fs.String("dir", "", "directory for ca.pem and ready (required)")
	name := fs.String("name", "bench.test", "the server's DNS name")
	life := fs.Duration("max-life", 10*time.Minute, "exit after this long even if nobody stops us")
	_ = fs.Parse(args)
	ip := net.ParseIP(*addr).To4()
	if ip == nil || *dir == "" {
		fatalf("serve: -addr IPv4 and -dir are required")
	}
	if err := os.MkdirAll(*dir, 0o755); err != nil {
		fatalf("serve: %v", err)
	}
	cert, caPEM, err := makeCert(*name)
	if err != nil {
		fatalf("serve: certificate: %v", err)
	}
	tlsCfg := &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}

	tlsLn, err := net.Listen("tcp", ":443")
	if err != nil {
		fatalf("serve: %v", err)
	}
	bulkLn, err := net.Listen("tcp", ":8080")
	if err != nil {
		fatalf("serve: %v", err)
	}
	udp, err := net.ListenPacket("udp", ":53")
	if err != nil {
		fatalf("serve: %v", err)
	}
	dnsTCP, err := net.Listen("tcp", ":53")
	if err != nil {
		fatalf("serve: %v", err)
	}
	zone := &zone{name: dns.Fqdn(*name), ip: ip}
	for _, s := range []*dns.Server{{PacketConn: udp, Handler: zone}, {Listener: dnsTCP, Handler: zone}} {
		go func() {
			if err := s.ActivateAndServe(); err != nil {
				fatalf("serve: dns: %v", err)
			}
		}()
	}
	go acceptLoop(tlsLn, func(c net.Conn) { serveTLS(c, tlsCfg) })
	go acceptLoop(bulkLn, serveBulk)

	if err := writeFileAtomic(filepath.Join(*dir, "ca.pem"), caPEM); err != nil {
		fatalf("serve: %v", err)
	}
	if err := writeFileAtomic(filepath.Join(*dir, "ready"), []byte(strconv.Itoa(os.Getpid())+"\n")); err != nil {
		fatalf("serve: %v", err)
	}
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT, syscall.SIGHUP)
	select {
	case <-sigs:
	case <-time.After(*life):
		fmt.Fprintln(os.Stderr, "egressbench serve: -max-life reached, exiting")
	}
}

func writeFileAtomic(path string, data []byte) error {
	if err := os.WriteFile(path+".tmp", data, 0o644); err != nil {
		return err
	}
	return os.Rename(path+".tmp", path)
}

// makeCert makes a CA and a leaf for name signed by it (ECDSA P-256, as
// most of the web) and returns the leaf and the CA's PEM.
func makeCert(name string) (tls.Certificate, []byte, error) {
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return tls.Certificate{}, nil, err
	}
	now := time.Now()
	caTmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "clawrun egress bench CA"},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(24 * time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		return tls.Certificate{}, nil, err
	}
	ca, err := x509.ParseCertificate(caDER)
	if err != nil {
		return tls.Certificate{}, nil, err
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return tls.Certificate{}, nil, err
	}
	leafTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(2),
		Subject:      pkix.Name{CommonName: name},
		DNSNames:     []string{name},
		NotBefore:    now.Add(-time.Hour),
		NotAfter:     now.Add(24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, leafTmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		return tls.Certificate{}, nil, err
	}
	caPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER})
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}, caPEM, nil
}

func acceptLoop(ln net.Listener, handle func(net.Conn)) {
	for {
		c, err := ln.Accept()
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				continue
			}
			// EMFILE and the like: back off rather than spin.
			time.Sleep(10 * time.Millisecond)
			continue
		}
		go func() {
			defer c.Close()
			_ = c.SetDeadline(time.Now().Add(3 * time.Minute))
			handle(c)
		}()
	}
}

// serveTLS answers one request with a fixed response and closes.
func serveTLS(c net.Conn, cfg *tls.Config) {
	tc := tls.Server(c, cfg)
	defer tc.Close()
	br := bufio.NewReader(tc)
	if _, err := readHead(br); err != nil {
		return
	}
	resp := fmt.Sprintf("HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: %d\r\nConnection: close\r\n\r\n%s", len(tlsBody), tlsBody)
	_, _ = io.WriteString(tc, resp)
}

// head is the little of an HTTP request the servers need.
type head struct {
	method, target string
	contentLength  int64
	upgrade        bool
}

// readHead reads one request head (up to the empty line).
func readHead(br *bufio.Reader) (head, error) {
	var h head
	line, err := br.ReadString('\n')
	if err != nil {
		return h, err
	}
	f := strings.Fields(line)
	if len(f) != 3 {
		return h, fmt.Errorf("bad request line %q", line)
	}
	h.method, h.target = f[0], f[1]
	for {
		line, err := br.ReadString('\n')
		if err != nil {
			return h, err
		}
		line = strings.TrimRight(line, "\r\n")
		if line == "" {
			return h, nil
		}
		k, v, _ := strings.Cut(line, ":")
		v = strings.TrimSpace(v)
		switch strings.ToLower(k) {
		case "content-length":
			if h.contentLength, err = strconv.ParseInt(v, 10, 64); err != nil {
				return h, err
			}
		case "connection":
			h.upgrade = strings.Contains(strings.ToLower(v), "upgrade")
		}
	}
}

// bulkBuf is what /download sends (zeros: nothing on the path compresses).
var bulkBuf = make([]byte, 1<<20)

func serveBulk(c net.Conn) {
	br := bufio.NewReaderSize(c, 64<<10)
	h, err := readHead(br)
	if err != nil {
		return
	}
	switch {
	case h.method == "POST" && h.target == "/upload":
		buf := make([]byte, 1<<20)
		for left := h.contentLength; left > 0; {
			n, err := br.Read(buf[:min(int64(len(buf)), left)])
			left -= int64(n)
			if err != nil {
				return
			}
		}
		_, _ = io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
	case h.method == "GET" && strings.HasPrefix(h.target, "/download?bytes="):
		n, err := strconv.ParseInt(strings.TrimPrefix(h.target, "/download?bytes="), 10, 64)
		if err != nil || n < 0 {
			_, _ = io.WriteString(c, "HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
			return
		}
		if _, err := fmt.Fprintf(c, "HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\nContent-Length: %d\r\nConnection: close\r\n\r\n", n); err != nil {
			return
		}
		for n > 0 {
			m, err := c.Write(bulkBuf[:min(int64(len(bulkBuf)), n)])
			n -= int64(m)
			if err != nil {
				return
			}
		}
	case h.method == "GET" && h.target == "/echo" && h.upgrade:
		if _, err := io.WriteString(c, "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: echo\r\n\r\n"); err != nil {
			return
		}
		_, _ = io.Copy(c, br)
	default:
		_, _ = io.WriteString(c, "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
	}
}

// zone answers bench.test.
type zone struct {
	name string // FQDN, lower-case
	ip   net.IP
}

func (z *zone) ServeDNS(w dns.ResponseWriter, req *dns.Msg) {
	m := new(dns.Msg)
	m.SetReply(req)
	m.Authoritative = true
	if len(req.Question) != 1 {
		m.Rcode = dns.RcodeFormatError
		_ = w.WriteMsg(m)
		return
	}
	q := req.Question[0]
	soa := &dns.SOA{Hdr: dns.RR_Header{Name: z.name, Rrtype: dns.TypeSOA, Class: dns.ClassINET, Ttl: 300},
		Ns: "ns." + z.name, Mbox: "hostmaster." + z.name, Serial: 1, Refresh: 3600, Retry: 600, Expire: 86400, Minttl: 300}
	switch {
	case !strings.EqualFold(q.Name, z.name):
		m.Rcode = dns.RcodeNameError
	case q.Qtype == dns.TypeA:
		m.Answer = []dns.RR{&dns.A{Hdr: dns.RR_Header{Name: q.Name, Rrtype: dns.TypeA, Class: dns.ClassINET, Ttl: 300}, A: z.ip}}
	default:
		m.Ns = []dns.RR{soa} // no data
	}
	_ = w.WriteMsg(m)
}
