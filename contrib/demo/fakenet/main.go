// Command fakenet is the demo's stand-in for the internet, run inside a
// network namespace of its own (the demo machine is offline): a DNS server
// that answers every name with this host's address and logs each query,
// and an HTTP server that says which Host it was asked for.
//
// fakenet -pick prints N such that 198.18.N.0/24 and 198.18.N+1.0/24 are
// free on the host (test/netblock, as the integration tests pick theirs);
// the demo holds netblock's lock file from then until its addresses are up.
package main

import (
	"flag"
	"fmt"
	"log"
	"net"
	"net/http"
	"os"
	"strings"

	"github.com/miekg/dns"

	"github.com/clawrun/clawrun/test/netblock"
)

func main() {
	addr := flag.String("addr", "198.18.0.2", "address every name resolves to")
	queries := flag.String("query-log", "", "file that records every DNS query received")
	pick := flag.Bool("pick", false, "print N: 198.18.N.0/24 and 198.18.N+1.0/24 are free on the host")
	flag.Parse()
	if *pick {
		n, err := netblock.Pick("198.18", 10, 20, 2, 256)
		if err != nil {
			log.Fatal(err)
		}
		fmt.Println(n)
		return
	}

	var qlog *os.File
	if *queries != "" {
		f, err := os.OpenFile(*queries, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
		if err != nil {
			log.Fatal(err)
		}
		qlog = f
	}
	ip := net.ParseIP(*addr).To4()
	dns.HandleFunc(".", func(w dns.ResponseWriter, req *dns.Msg) {
		m := new(dns.Msg)
		m.SetReply(req)
		m.Authoritative = true
		for _, q := range req.Question {
			if qlog != nil {
				fmt.Fprintf(qlog, "%s %s\n", strings.TrimSuffix(q.Name, "."), dns.TypeToString[q.Qtype])
			}
			if q.Qtype == dns.TypeA {
				m.Answer = append(m.Answer, &dns.A{Hdr: dns.RR_Header{Name: q.Name, Rrtype: dns.TypeA, Class: dns.ClassINET, Ttl: 60}, A: ip})
			}
		}
		_ = w.WriteMsg(m)
	})
	for _, proto := range []string{"udp", "tcp"} {
		srv := &dns.Server{Addr: ":53", Net: proto}
		go func() { log.Fatal(srv.ListenAndServe()) }()
	}
	// UDP echo on 443 (where QUIC would go).
	go func() {
		// Bound to the address clients use, so that replies come from it.
		pc, err := net.ListenPacket("udp", net.JoinHostPort(*addr, "443"))
		if err != nil {
			log.Fatal(err)
		}
		buf := make([]byte, 2048)
		for {
			n, from, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			_, _ = pc.WriteTo(buf[:n], from)
		}
	}()
	http.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "hello from %s\n", r.Host)
	})
	log.Fatal(http.ListenAndServe(":80", nil))
}
