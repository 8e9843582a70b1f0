package main

// sse: a streamed (text/event-stream) response read as it comes:
//
//	sse ADDR PORT SNI PATH RELEASE_PATH [header:NAME=VALUE...]
//	    GET https://SNI:PORT/PATH (connecting to ADDR:PORT) and read its
//	    events; once the first has arrived, GET RELEASE_PATH on another
//	    connection (the server holds the rest of the stream until then),
//	    then read the rest: "OK STATUS events=E1,E2,...". A proxy that
//	    buffered the stream would deliver nothing before the release: the
//	    probe then times out.

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net"
	"net/http"
	"os"
	"strings"
)

func init() {
	if commands == nil {
		commands = map[string]command{}
	}
	commands["sse"] = command{"ADDR PORT SNI PATH RELEASE_PATH [header:NAME=VALUE...]", 5, 16, cmdSSE}
}

func cmdSSE(a []string) error {
	addr, port, sni, path, release := a[0], a[1], a[2], a[3], a[4]
	roots, err := x509.SystemCertPool()
	if err != nil {
		roots = x509.NewCertPool()
	}
	if pem, err := os.ReadFile(caFile); err == nil {
		roots.AppendCertsFromPEM(pem)
	}
	newClient := func() *http.Client {
		return &http.Client{Timeout: netTimeout, Transport: &http.Transport{
			TLSClientConfig: &tls.Config{ServerName: sni, RootCAs: roots},
			DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
				return (&net.Dialer{Timeout: netTimeout}).DialContext(ctx, "tcp", net.JoinHostPort(addr, port))
			},
			DisableCompression: true,
		}}
	}
	base := "https://" + net.JoinHostPort(sni, port)
	req, err := http.NewRequest("GET", base+path, nil)
	if err != nil {
		return failure{"USAGE", err.Error()}
	}
	for _, h := range a[5:] {
		if field, ok := strings.CutPrefix(h, "header:"); ok {
			name, value, _ := strings.Cut(field, "=")
			req.Header.Add(name, value)
		}
	}
	resp, err := newClient().Do(req)
	if err != nil {
		return netErr("GET "+path, err)
	}
	defer resp.Body.Close()
	var events []string
	released := false
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		data, ok := strings.CutPrefix(sc.Text(), "data: ")
		if !ok {
			continue
		}
		events = append(events, data)
		if !released {
			released = true
			r, err := newClient().Get(base + release)
			if err != nil {
				return netErr("GET "+release, err)
			}
			r.Body.Close()
		}
	}
	if err := sc.Err(); err != nil {
		return netErr("reading the stream", err)
	}
	return okWith(fmt.Sprintf("%d events=%s", resp.StatusCode, strings.Join(events, ",")))
}
