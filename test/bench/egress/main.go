// Command egressbench is the egress filter's benchmark (test/bench/egress.sh,
// part of `make bench`): every figure through clawrun's egress filter is
// measured against a direct connection to the same servers in the same run.
//
// One static binary plays every part:
//
//	egressbench serve -env F -dir DIR    the fake internet (test/fakenet): its namespace,
//	                                     the clients' namespaces routed into it, and its
//	                                     servers: DNS (:53), HTTP/1.1 over TLS (:443, also
//	                                     bulk downloads), bulk
//	                                     and echo over HTTP/1.1 (:8080)
//	egressbench client MODE [flags]      a measurement, run inside a container by
//	                                     `clawrun exec`; prints one JSON object
//	egressbench drive [flags]            the driver, on the host: starts the three
//	                                     containers (direct, filtered, inspected),
//	                                     runs the clients interleaved, reads the
//	                                     filter's memory, prints the table
//
// egress.sh starts the fake internet, builds the bundles, runs the driver
// and removes everything again.
package main

import (
	"fmt"
	"os"
)

func main() {
	if len(os.Args) < 2 {
		usage()
	}
	args := os.Args[2:]
	switch os.Args[1] {
	case "serve":
		serve(args)
	case "client":
		client(args)
	case "drive":
		drive(args)
	default:
		usage()
	}
}

func usage() {
	fmt.Fprintln(os.Stderr, "usage: egressbench serve [flags] | client latency|keepalive|bulk|conns|dns [flags] | drive [flags]")
	os.Exit(2)
}

func fatalf(format string, a ...any) {
	fmt.Fprintf(os.Stderr, "egressbench: "+format+"\n", a...)
	os.Exit(1)
}
