package main

// https: HTTP requests over TLS as an ordinary client makes them, trusting
// what the container's environment says (SSL_CERT_FILE, as Go reads it)
// and the tests' CA:
//
//	https ADDR PORT SNI h1|h2|plain HOST REQ...
//	    one connection to ADDR:PORT, TLS for SNI (plain: no TLS, HTTP/1.1
//	    in cleartext, issuer ""), then each REQ
//	    (METHOD:PATH, a POST carrying a small body, or the JSON of the
//	    last body:JSON before it; header:NAME=VALUE adds a field to the
//	    requests after it) with Host HOST, over
//	    HTTP/1.1 keep-alive or HTTP/2: "OK issuer=CN proto=P STATUS
//	    METHOD PATH conn=N | ...", conn numbering the connections used
//	    (1 throughout: the same one), issuer the CN of the certificate's
//	    issuer.

import (
	"cmp"
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptrace"
	"os"
	"strings"
	"sync"
)

func init() {
	if commands == nil {
		commands = map[string]command{}
	}
	commands["https"] = command{"ADDR PORT SNI h1|h2|plain HOST METHOD:PATH...", 6, 32, cmdHTTPS}
}

func cmdHTTPS(a []string) error {
	addr, port, sni, proto, host := a[0], a[1], a[2], a[3], a[4]
	roots, err := x509.SystemCertPool() // SSL_CERT_FILE, when set
	if err != nil {
		roots = x509.NewCertPool()
	}
	if pem, err := os.ReadFile(caFile); err == nil {
		roots.AppendCertsFromPEM(pem)
	}
	var (
		mu    sync.Mutex
		conns = map[net.Conn]int{}
	)
	tr := &http.Transport{
		TLSClientConfig: &tls.Config{ServerName: sni, RootCAs: roots},
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			return (&net.Dialer{Timeout: netTimeout}).DialContext(ctx, "tcp", net.JoinHostPort(addr, port))
		},
		MaxConnsPerHost:   1,
		ForceAttemptHTTP2: proto == "h2",
	}
	if proto != "h2" {
		tr.TLSNextProto = map[string]func(string, *tls.Conn) http.RoundTripper{} // HTTP/1.1 only
	}
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr, Timeout: netTimeout}
	var parts []string
	issuer, gotProto := "", ""
	header := http.Header{}
	jsonBody := ""
	for _, r := range a[5:] {
		if field, ok := strings.CutPrefix(r, "header:"); ok {
			name, value, _ := strings.Cut(field, "=")
			header.Add(name, value)
			continue
		}
		if b, ok := strings.CutPrefix(r, "body:"); ok {
			jsonBody = b
			continue
		}
		method, path, _ := strings.Cut(r, ":")
		var body io.Reader
		if method == "POST" || method == "PUT" {
			body = strings.NewReader(cmp.Or(jsonBody, "probe"))
		}
		scheme := "https"
		if proto == "plain" {
			scheme = "http"
		}
		req, err := http.NewRequest(method, scheme+"://"+net.JoinHostPort(sni, port)+path, body)
		if err != nil {
			return failure{"USAGE", err.Error()}
		}
		req.Host = host
		req.Header = header.Clone()
		if body != nil && jsonBody != "" {
			req.Header.Set("Content-Type", "application/json")
		}
		n := 0
		req = req.WithContext(httptrace.WithClientTrace(req.Context(), &httptrace.ClientTrace{
			GotConn: func(info httptrace.GotConnInfo) {
				mu.Lock()
				defer mu.Unlock()
				if conns[info.Conn] == 0 {
					conns[info.Conn] = len(conns) + 1
				}
				n = conns[info.Conn]
			},
		}))
		resp, err := client.Do(req)
		if err != nil {
			if len(parts) == 0 {
				return netErr(method+" "+path, err)
			}
			parts = append(parts, "ERR "+describe(netErr(method+" "+path, err)))
			break
		}
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<16))
		resp.Body.Close()
		if resp.TLS != nil && len(resp.TLS.PeerCertificates) > 0 {
			issuer = resp.TLS.PeerCertificates[0].Issuer.CommonName
		}
		gotProto = resp.Proto
		parts = append(parts, fmt.Sprintf("%d %s %s conn=%d", resp.StatusCode, method, path, n))
	}
	return okWith(fmt.Sprintf("issuer=%q proto=%s %s", issuer, gotProto, strings.Join(parts, " | ")))
}
