// clawrun-egress is clawrun's egress filter as a program of its own:
// clawrun starts it at create for a container whose policy filters its
// network, and stops it at delete. It is not meant to be run by hand.
//
// It is the same code as `clawrun __egress-supervisor` and
// `clawrun __egress-worker` (the fallback when this binary is not installed
// next to clawrun), without the rest of clawrun, so that the two processes
// of every filter stay small.
package main

import (
	"fmt"
	"os"

	"github.com/clawrun/clawrun/egress/filter"
)

const usage = `clawrun-egress: clawrun's egress filter for one network namespace.

clawrun starts it when a container's policy has network_policies and stops
it when the container is deleted; it is not meant to be run by hand. Install
it in the same directory as clawrun (make install does).

Usage (by clawrun):
  clawrun-egress ` + filter.SupervisorArg + ` CONFIG   supervisor: rules, sockets, worker restarts
  clawrun-egress ` + filter.WorkerArg + ` CONFIG       worker: policy resolver and proxy
`

func main() {
	if len(os.Args) == 3 {
		switch os.Args[1] {
		case filter.SupervisorArg:
			filter.SupervisorMain(os.Args[2]) // never returns
		case filter.WorkerArg:
			filter.WorkerMain(os.Args[2]) // never returns
		}
	}
	fmt.Fprint(os.Stderr, usage)
	if len(os.Args) == 2 && (os.Args[1] == "--help" || os.Args[1] == "-h") {
		os.Exit(0)
	}
	os.Exit(2)
}
