// clawrun-egress-worker is the worker of clawrun's egress filter (its
// policy resolver and transparent proxy) as a program of its own: the
// filter's supervisor, clawrun-egress, starts it on the sockets it holds
// and restarts it when it dies. It is not meant to be run by hand.
//
// It is the same code as `clawrun __egress-worker` (the fallback when
// these programs are not installed next to clawrun), without the rest of
// clawrun, so that the worker stays small.
package main

import (
	"fmt"
	"os"

	"github.com/clawrun/clawrun/egress/filter"
)

const usage = `clawrun-egress-worker: the worker of clawrun's egress filter (policy
resolver and proxy) for one network namespace.

The filter's supervisor, clawrun-egress, starts it; it is not meant to be
run by hand. Install it in the same directory as clawrun (make install
does).

Usage (by clawrun-egress):
  clawrun-egress-worker ` + filter.WorkerArg + ` CONFIG
`

func main() {
	if len(os.Args) == 3 && os.Args[1] == filter.WorkerArg {
		filter.WorkerMain(os.Args[2]) // never returns
	}
	fmt.Fprint(os.Stderr, usage)
	if len(os.Args) == 2 && (os.Args[1] == "--help" || os.Args[1] == "-h") {
		os.Exit(0)
	}
	os.Exit(2)
}
