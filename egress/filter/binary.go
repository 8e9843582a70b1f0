package filter

import (
	"os"
	"path/filepath"
)

// HelperName is the filter's own binary, installed next to clawrun. It
// holds only the filter (no libcontainer, no policy language, no CLI), so
// each of a filter's two processes pages in a few MiB of program instead
// of clawrun's whole binary: that is most of a filter's memory.
const HelperName = "clawrun-egress"

// Binary is the executable to start a filter from: HelperName in the
// directory of the running clawrun binary when it is installed there,
// else clawrun's own binary (which runs the same code). Only that
// directory is searched, never $PATH: the filter runs as root.
func Binary() string {
	self, err := os.Executable()
	if err == nil {
		helper := filepath.Join(filepath.Dir(self), HelperName)
		if fi, err := os.Stat(helper); err == nil && fi.Mode().IsRegular() && fi.Mode().Perm()&0o111 != 0 {
			return helper
		}
	}
	return "/proc/self/exe"
}
