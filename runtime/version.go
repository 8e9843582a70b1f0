package runtime

import (
	"fmt"
	"io"
	goruntime "runtime"

	"github.com/opencontainers/runc/libcontainer/seccomp"
	"github.com/opencontainers/runtime-spec/specs-go"
)

// Version and Commit are set at link time by the Makefile.
var (
	Version = "0.0.0-dev"
	Commit  = "unknown"
)

// LibcontainerVersion is the runc release whose libcontainer clawrun wraps.
const LibcontainerVersion = "1.5.2"

// PrintVersion writes the version block in the layout dockerd and
// containerd parse from runc: "<name> version X", "commit: ...",
// "spec: ...", then informational lines.
func PrintVersion(w io.Writer) {
	fmt.Fprintln(w, "clawrun version", Version)
	fmt.Fprintln(w, "commit:", Commit)
	fmt.Fprintln(w, "spec:", specs.Version)
	fmt.Fprintln(w, "libcontainer:", LibcontainerVersion)
	fmt.Fprintln(w, "go:", goruntime.Version())
	if major, minor, micro := seccomp.Version(); major+minor+micro > 0 {
		fmt.Fprintf(w, "libseccomp: %d.%d.%d\n", major, minor, micro)
	}
}
