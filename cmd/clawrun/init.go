package main

import (
	"os"

	"github.com/opencontainers/runc/libcontainer"
	// The nsenter constructor runs before the Go runtime in `clawrun init`
	// and joins the container's namespaces.
	_ "github.com/opencontainers/runc/libcontainer/nsenter"

	"github.com/clawrun/clawrun/egress/filter"
	"github.com/clawrun/clawrun/landlock/launcher"
)

// `clawrun init` is the container's first process inside its namespaces;
// libcontainer.Init never returns (it execs the user's process).
//
// The policy launcher is clawrun's own binary run inside the container
// right before the agent's command (see landlock/launcher); the egress
// filter's supervisor and worker run from clawrun-egress and
// clawrun-egress-worker, or from clawrun when those are not installed next
// to it (see egress/filter).
func init() {
	if len(os.Args) > 1 {
		switch os.Args[1] {
		case "init":
			libcontainer.Init()
		case launcher.Arg:
			launcher.Main()
		case filter.SupervisorArg:
			if len(os.Args) > 2 {
				filter.SupervisorMain(os.Args[2])
			}
		case filter.WorkerArg:
			if len(os.Args) > 2 {
				filter.WorkerMain(os.Args[2])
			}
		}
	}
}
