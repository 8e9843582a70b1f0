// clawrun-egress is the supervisor of clawrun's egress filter as a
// program of its own: clawrun starts it at create for a container whose
// policy filters its network, and stops it at delete. It starts the
// filter's worker from clawrun-egress-worker, next to it. Neither is
// meant to be run by hand.
//
// It is the same code as `clawrun __egress-supervisor` (the fallback
// when these programs are not installed next to clawrun), without the
// rest of clawrun and without the worker's: a supervisor, which only
// installs the rules and sockets and watches its worker, stays small.
package main

import (
	"fmt"
	"os"
	"path/filepath"

	"github.com/clawrun/clawrun/egress/filter/supervisor"
)

const usage = `clawrun-egress: the supervisor of clawrun's egress filter for one network
namespace.

clawrun starts it when a container's policy has network_policies and stops
it when the container is deleted; it is not meant to be run by hand. It
starts the filter's worker from ` + supervisor.WorkerName + ` in its own directory.
Install both in the same directory as clawrun (make install does).

Usage (by clawrun):
  clawrun-egress ` + supervisor.SupervisorArg + ` CONFIG   supervisor: rules, sockets, worker restarts
`

func main() {
	if len(os.Args) == 3 && os.Args[1] == supervisor.SupervisorArg {
		supervisor.Main(os.Args[2], workerProgram()) // never returns
	}
	fmt.Fprint(os.Stderr, usage)
	if len(os.Args) == 2 && (os.Args[1] == "--help" || os.Args[1] == "-h") {
		os.Exit(0)
	}
	os.Exit(2)
}

// workerProgram is the worker's program in this program's directory
// (the supervisor fails to start, saying so, when it is not there).
func workerProgram() string {
	self, err := os.Executable()
	if err != nil {
		return supervisor.WorkerName // fails to open, with the name in the error
	}
	return filepath.Join(filepath.Dir(self), supervisor.WorkerName)
}
