package main

// The fake internet (test/fakenet), run by `egressbench serve` for the
// time of the bench: its namespace, linked to the host, where the filter
// dials from; the direct and the filtered client's namespaces, each with
// a route into it (and the inspected client's, whose container's policy
// has the filter terminate its TLS, and the uncounted client's, filtered
// as the filtered one's but by a filter without its counters); and its servers, on every address of
// the namespace:
//
//	:53 udp+tcp  NAME A -> the namespace's address; other names NXDOMAIN
//	:443 tls     HTTP/1.1 inside (as :8080 serves it), a certificate for
//	             the SNI from its CA
//	:8080 http   POST (reads the body, then 200), GET /download?bytes=N
//	             (N bytes), and a websocket upgrade on /ws (101, then
//	             echoes every byte)
//
// With -churn N, N more filtered clients' namespaces, for the connection
// churn phase (one container each).
//
// The CA goes to DIR/ca.pem for the clients; the addresses and the
// namespaces' names to the -env file, once everything serves. SIGTERM
// removes it all.

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/clawrun/clawrun/test/fakenet"
)

// The fake internet's blocks: its link to the host, then the clients'.
const (
	blockDirect    = 1
	blockFiltered  = 2
	blockInspected = 3
	blockUncounted = 4
	blockChurn     = 5 // and the -churn-1 after it
)

func serve(args []string) {
	fs := flag.NewFlagSet("serve", flag.ExitOnError)
	env := fs.String("env", "", "file that gets the addresses and names once everything serves (required)")
	dir := fs.String("dir", "", "directory for ca.pem (required)")
	name := fs.String("name", "bench.test", "the server's DNS name")
	life := fs.Duration("max-life", time.Hour, "exit after this long even if nobody stops us")
	churn := fs.Int("churn", 0, "more filtered clients' namespaces, for the connection churn phase")
	_ = fs.Parse(args)
	if *env == "" || *dir == "" {
		fatalf("serve: -env and -dir are required")
	}
	n, err := fakenet.Start(fakenet.Options{Blocks: blockChurn + *churn, Uncounted: true})
	if err != nil {
		fatalf("serve: %v", err)
	}
	vars, err := serveOn(n, *name, *dir, *churn)
	if err == nil {
		err = fakenet.WriteEnv(*env, vars)
	}
	if err != nil {
		_ = n.Close()
		fatalf("serve: %v", err)
	}
	if err := fakenet.Hold(n, *life); err != nil {
		fatalf("serve: %v", err)
	}
}

// serveOn starts the servers and the clients' namespaces, writes the CA,
// and returns what egress.sh needs to know.
func serveOn(n *fakenet.Net, name, dir string, churn int) (map[string]string, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	if err := os.WriteFile(filepath.Join(dir, "ca.pem"), n.CAPEM(), 0o644); err != nil {
		return nil, err
	}
	for _, start := range []func() error{
		func() error { return n.ServeDNS(53, fakenet.Names(map[string]string{name: n.Addr()})) },
		func() error { return n.ServeTLS(443, fakenet.TLSOptions{HTTP: true}) },
		func() error { return n.ServeHTTP(8080) },
	} {
		if err := start(); err != nil {
			return nil, err
		}
	}
	direct, err := n.AddClient(fakenet.ClientOptions{Name: "direct", Block: blockDirect})
	if err != nil {
		return nil, err
	}
	filtered, err := n.AddClient(fakenet.ClientOptions{Name: "filtered", Block: blockFiltered})
	if err != nil {
		return nil, err
	}
	inspected, err := n.AddClient(fakenet.ClientOptions{Name: "inspected", Block: blockInspected})
	if err != nil {
		return nil, err
	}
	uncounted, err := n.AddClient(fakenet.ClientOptions{Name: "uncounted", Block: blockUncounted})
	if err != nil {
		return nil, err
	}
	var churnNS []string
	for i := range churn {
		c, err := n.AddClient(fakenet.ClientOptions{Name: fmt.Sprintf("churn%d", i), Block: blockChurn + i})
		if err != nil {
			return nil, err
		}
		churnNS = append(churnNS, c.NS)
	}
	return map[string]string{
		"churn_ns":  strings.Join(churnNS, " "),
		"srv":       n.Addr(),
		"net":       n.NS,
		"if_host":   n.HostIf, // the link, the host's end
		"if_net":    n.NSIf,   // and the fake internet's
		"cd_ns":     direct.NS,
		"if_dc":     direct.If,     // the direct client's link, its end
		"if_dn":     direct.PeerIf, // and the fake internet's
		"cf_ns":     filtered.NS,
		"ci_ns":     inspected.NS,
		"cu_ns":     uncounted.NS,
		"upstreams": n.Prefix(0),
	}, nil
}
