package main

import (
	"os"

	"github.com/opencontainers/runc/libcontainer"
	// The nsenter constructor runs before the Go runtime in `clawrun init`
	// and joins the container's namespaces.
	_ "github.com/opencontainers/runc/libcontainer/nsenter"
)

// `clawrun init` is the container's first process inside its namespaces;
// libcontainer.Init never returns (it execs the user's process).
func init() {
	if len(os.Args) > 1 && os.Args[1] == "init" {
		libcontainer.Init()
	}
}
