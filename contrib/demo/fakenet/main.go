// Command fakenet is the demo's stand-in for the internet (the demo machine
// is offline): test/fakenet's network namespace with a DNS server that
// answers every name with the namespace's address, an HTTP server (:80)
// and an HTTPS one (:443, a certificate for every name from the fake
// internet's own CA, written to -ca) that say which Host they were asked
// for, a UDP echo on 443 (where QUIC would go), and the agent's namespace
// with a route into it. It records everything the servers receive in -log
// (an HTTPS request with the Authorization it carried), writes the
// addresses to -env once they serve, and removes it all when it is told
// to stop (SIGTERM).
package main

import (
	"flag"
	"log"
	"os"
	"time"

	"github.com/clawrun/clawrun/test/fakenet"
)

func main() {
	env := flag.String("env", "", "file that gets the addresses once the fake internet serves (shell assignments; required)")
	logFile := flag.String("log", "", "file that records everything the fake internet receives (required)")
	caFile := flag.String("ca", "", "file that gets the CA of the HTTPS server's certificates (required)")
	life := flag.Duration("max-life", time.Hour, "stop after this long even if nobody says so")
	flag.Parse()
	if *env == "" || *logFile == "" || *caFile == "" {
		log.Fatal("fakenet: -env, -log and -ca are required")
	}
	events, err := os.OpenFile(*logFile, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		log.Fatal(err)
	}
	n, err := fakenet.Start(fakenet.Options{Blocks: 2, Log: events})
	if err != nil {
		log.Fatal(err)
	}
	agent, err := serve(n)
	if err == nil {
		err = os.WriteFile(*caFile, n.CAPEM(), 0o644)
	}
	if err == nil {
		err = fakenet.WriteEnv(*env, map[string]string{
			"fake":       n.Addr(),      // every name's address
			"fake_range": n.Prefix(0),   // the egress filter's allowed_upstream_ranges
			"agent_ns":   agent.NS,      // the agent's network namespace
			"agent_gw":   agent.Gateway, // its gateway: the fake internet again
		})
	}
	if err != nil {
		_ = n.Close()
		log.Fatal(err)
	}
	if err := fakenet.Hold(n, *life); err != nil {
		log.Fatal(err)
	}
}

// serve starts the servers and the agent's namespace.
func serve(n *fakenet.Net) (*fakenet.Client, error) {
	for _, err := range []error{
		n.ServeDNS(53, fakenet.AnyName(n.Addr())),
		n.ServeHTTP(80),
		n.ServeTLS(443, fakenet.TLSOptions{HTTP: true}),
		n.ServeUDPEcho(443),
	} {
		if err != nil {
			return nil, err
		}
	}
	return n.AddClient(fakenet.ClientOptions{Name: "agent", Block: 1})
}
