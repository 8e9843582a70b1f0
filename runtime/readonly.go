package runtime

import (
	"errors"
	"os"
	"path"
	"strconv"
	"strings"

	"github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/clawrun/clawrun/runtime/confinespec"
)

// rootfsResolver resolves paths as the container will see them, as far as
// the bundle shows it: a path beneath one of the spec's mounts is that
// mount's destination (resolved) and the rest as written, since the
// mount's contents are not in the root filesystem; any other path is
// resolved in the root filesystem, symlinks followed without leaving it,
// as far as it exists. It never fails: what it cannot resolve it returns
// cleaned, as written. done releases the root filesystem.
func rootfsResolver(rootfs string, mounts []specs.Mount) (resolve func(string) string, done func()) {
	root, err := openRoot(rootfs)
	if err != nil {
		return path.Clean, func() {}
	}
	top, err := os.Readlink("/proc/self/fd/" + strconv.Itoa(root.fd))
	if err != nil {
		root.Close()
		return path.Clean, func() {}
	}
	memo := map[string]string{}
	resolve = func(p string) string {
		p = path.Clean(p)
		if r, ok := memo[p]; ok {
			return r
		}
		var r string
		if m := mountAbove(p, mounts); m != "" {
			r = path.Join(resolve(m), strings.TrimPrefix(p, m))
		} else {
			r = root.resolveExisting(p, top)
		}
		memo[p] = r
		return r
	}
	return resolve, root.Close
}

// mountAbove is the deepest mount destination strictly above p ("" none).
func mountAbove(p string, mounts []specs.Mount) string {
	best := ""
	for _, m := range mounts {
		d := path.Clean(m.Destination)
		if d != p && confinespec.Under(p, d) && d != "/" && len(d) > len(best) {
			best = d
		}
	}
	return best
}

// resolveExisting resolves the longest existing part of p in the root
// (whose own path is top) and appends the rest as written.
func (r *containerRoot) resolveExisting(p, top string) string {
	fd, err := r.open(p, unix.O_PATH)
	switch {
	case errors.Is(err, unix.ENOENT) || errors.Is(err, unix.ENOTDIR):
		if p == "/" {
			return p
		}
		return path.Join(r.resolveExisting(path.Dir(p), top), path.Base(p))
	case err != nil:
		return p
	}
	defer unix.Close(fd)
	found, err := os.Readlink("/proc/self/fd/" + strconv.Itoa(fd))
	if err != nil {
		return p
	}
	switch {
	case top == "/":
		return found
	case found == top:
		return "/"
	}
	if rest, ok := strings.CutPrefix(found, top+"/"); ok {
		return "/" + rest
	}
	return p
}
