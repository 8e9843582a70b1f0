// clawrun-launch is clawrun's policy launcher on its own (see
// landlock/launcher): the process that applies a policy's Landlock layers
// and seccomp filter inside the container, then execs the agent's
// command. It links the launcher alone (no libcontainer, no libseccomp, no
// policy language, no cgo), so each confined start pays a few hundred
// kilobytes of program instead of clawrun's whole binary. clawrun passes
// it into the container as a sealed copy, never by a path; it is not run
// by hand.
package main

import (
	"fmt"
	"os"

	"github.com/clawrun/clawrun/landlock/launcher"
)

func main() {
	if len(os.Args) > 1 && os.Args[1] == launcher.Arg {
		launcher.Main()
	}
	fmt.Fprintf(os.Stderr, "%s: clawrun's policy launcher; clawrun runs it inside containers, it is not run by hand\n", launcher.HelperName)
	os.Exit(2)
}
