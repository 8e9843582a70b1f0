// Command egressbench is the egress filter's benchmark (test/bench/egress.sh,
// part of `make bench`): every figure through clawrun's egress filter is
// measured against a direct connection to the same servers in the same run.
//
// One static binary plays every part:
//
//	egressbench pick-net                 print a free 198.19.N.0/24 block (N, N+1, N+2 unused)
//	egressbench serve -addr IP -dir DIR  the fake internet's servers, run inside its
//	                                     network namespace: DNS (:53), TLS (:443), bulk
//	                                     and echo over HTTP/1.1 (:8080)
//	egressbench client MODE [flags]      a measurement, run inside a container by
//	                                     `clawrun exec`; prints one JSON object
//	egressbench drive [flags]            the driver, on the host: starts the two
//	                                     containers, runs the clients interleaved,
//	                                     reads the filter's memory, prints the table
//
// egress.sh builds the namespaces, the veths and the bundles, starts the
// servers, runs the driver and removes everything again.
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
	case "pick-net":
		pickNet()
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
	fmt.Fprintln(os.Stderr, "usage: egressbench pick-net | serve [flags] | client latency|bulk|conns|dns [flags] | drive [flags]")
	os.Exit(2)
}

func fatalf(format string, a ...any) {
	fmt.Fprintf(os.Stderr, "egressbench: "+format+"\n", a...)
	os.Exit(1)
}
