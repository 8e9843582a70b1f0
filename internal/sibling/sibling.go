// Package sibling finds clawrun's helper programs, installed in the same
// directory as the running binary. Only that directory is searched, never
// $PATH: clawrun runs as root, and a helper found elsewhere could be
// anyone's.
package sibling

import (
	"os"
	"path/filepath"
)

// Find returns the path of the executable regular file name in the
// directory of the running binary, and whether there is one.
func Find(name string) (string, bool) {
	self, err := os.Executable()
	if err != nil {
		return "", false
	}
	p := filepath.Join(filepath.Dir(self), name)
	fi, err := os.Stat(p)
	if err != nil || !fi.Mode().IsRegular() || fi.Mode().Perm()&0o111 == 0 {
		return "", false
	}
	return p, true
}
