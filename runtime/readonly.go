package runtime

import (
	"errors"
	"os"
	"path"
	"slices"
	"strconv"
	"strings"

	"github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/clawrun/clawrun/runtime/policy"
)

// Landlock governs the contents of files and directories, not their
// metadata: under a read_only rule a root agent can still chmod, chown,
// setxattr and utimes. A read-only mount refuses all of it (EROFS), and
// every write too, so the plan's read-only paths become read-only mounts:
// libcontainer bind-mounts each path of linux.readonlyPaths onto itself,
// read-only, once the container's mounts are in place.
//
// A path is left to Landlock alone where a read-only mount would break
// the container or cannot be made:
//   - "/" itself: the container's root holds its writable paths and its
//     kernel filesystems (root.readonly makes it read-only, when wanted);
//   - a path with a path the plan lets the container write beneath it:
//     the mount would make that one read-only too;
//   - /proc and everything in it: libcontainer writes there after it
//     applies readonlyPaths (the process's security label), and procfs
//     is already guarded by runc's masked and read-only paths.
//
// Nothing is added where the mount holding the path is read-only already
// (root.readonly, a mount with "ro"), or where a path above it on the same
// mount is added.

// readOnlyMounts lists the paths of a plan's layers that should be made
// read-only mounts, sorted. resolve maps a path to the one it names in
// the container (symlinks followed): a read-only path is mounted where it
// leads, and a read-write path through a symlink, which Landlock does not
// grant, is not writable.
func readOnlyMounts(layers []policy.Layer, spec *specs.Spec, resolve func(string) string) []string {
	if len(layers) == 0 {
		return nil
	}
	v := newMountView(layers, spec, resolve)
	var out []string
	for _, c := range v.candidates() {
		if v.protectable(c) && !v.covered(c, out) {
			out = append(out, c)
		}
	}
	return out
}

// protectReadOnly makes the plan's read-only paths read-only mounts of
// the container and returns them.
func protectReadOnly(spec *specs.Spec, plan *policy.Plan) []string {
	if len(plan.Layers) == 0 {
		return nil
	}
	resolve, done := rootfsResolver(rootfsPath(spec), spec.Mounts)
	defer done()
	paths := readOnlyMounts(plan.Layers, spec, resolve)
	addReadonlyPaths(spec, paths)
	return paths
}

// addReadonlyPaths appends paths to the spec's linux.readonlyPaths.
func addReadonlyPaths(spec *specs.Spec, paths []string) {
	if len(paths) == 0 {
		return
	}
	if spec.Linux == nil {
		spec.Linux = &specs.Linux{}
	}
	for _, p := range paths {
		if !slices.Contains(spec.Linux.ReadonlyPaths, p) {
			spec.Linux.ReadonlyPaths = append(spec.Linux.ReadonlyPaths, p)
		}
	}
}

// mountView is a plan's paths and the spec's mounts, resolved.
type mountView struct {
	layers   []resolvedLayer
	mounts   []resolvedMount
	rootRO   bool
	existing []string // the spec's own readonlyPaths
}

type resolvedLayer struct{ readOnly, readWrite []string }

type resolvedMount struct {
	dest     string
	readOnly bool
}

func newMountView(layers []policy.Layer, spec *specs.Spec, resolve func(string) string) *mountView {
	v := &mountView{rootRO: spec.Root != nil && spec.Root.Readonly}
	all := func(paths []string) []string {
		out := make([]string, len(paths))
		for i, p := range paths {
			out[i] = resolve(p)
		}
		return out
	}
	// A read-write path that is, or passes through, a symlink gets no
	// Landlock rule (landlock.Restrict does not follow it): it makes
	// nothing writable, so it keeps nothing from being mounted read-only.
	realOnly := func(paths []string) []string {
		var out []string
		for _, p := range paths {
			if r := resolve(p); r == path.Clean(p) {
				out = append(out, r)
			}
		}
		return out
	}
	for _, l := range layers {
		v.layers = append(v.layers, resolvedLayer{readOnly: all(l.ReadOnly), readWrite: realOnly(l.ReadWrite)})
	}
	for _, m := range spec.Mounts {
		ro := slices.Contains(m.Options, "ro") || slices.Contains(m.Options, "rro")
		v.mounts = append(v.mounts, resolvedMount{dest: resolve(m.Destination), readOnly: ro})
	}
	if spec.Linux != nil {
		v.existing = all(spec.Linux.ReadonlyPaths)
	}
	return v
}

// under tells whether p is dir or beneath it.
func under(p, dir string) bool {
	return p == dir || dir == "/" || strings.HasPrefix(p, dir+"/")
}

// writableEverywhere tells whether every layer lets the container write
// p: within a layer, a read-write rule on p or a directory above it.
func (v *mountView) writableEverywhere(p string) bool {
	for _, l := range v.layers {
		if !slices.ContainsFunc(l.readWrite, func(rw string) bool { return under(p, rw) }) {
			return false
		}
	}
	return true
}

// candidates are the paths read-only in the plan: read_only in a layer
// and not writable in every layer, and the spec's mounts beneath them.
func (v *mountView) candidates() []string {
	var out []string
	add := func(p string) {
		if !v.writableEverywhere(p) && !slices.Contains(out, p) {
			out = append(out, p)
		}
	}
	for _, l := range v.layers {
		for _, p := range l.readOnly {
			add(p)
		}
	}
	for _, m := range v.mounts {
		for _, l := range v.layers {
			if slices.ContainsFunc(l.readOnly, func(ro string) bool { return under(m.dest, ro) }) {
				add(m.dest)
			}
		}
	}
	slices.Sort(out) // a directory before what is beneath it
	return out
}

// protectable tells whether a read-only mount on p is possible without
// breaking the container and adds something.
func (v *mountView) protectable(p string) bool {
	if p == "/" || under(p, "/proc") {
		return false
	}
	for _, l := range v.layers {
		for _, rw := range l.readWrite {
			if rw != p && under(rw, p) && v.writableEverywhere(rw) {
				return false
			}
		}
	}
	if m := v.mountOf(p); m != nil {
		return !m.readOnly
	}
	return !v.rootRO
}

// mountOf is the spec's mount that holds p (nil: the root filesystem).
func (v *mountView) mountOf(p string) *resolvedMount {
	var best *resolvedMount
	for i := range v.mounts {
		m := &v.mounts[i]
		if under(p, m.dest) && (best == nil || len(m.dest) >= len(best.dest)) {
			best = m
		}
	}
	return best
}

// covered tells whether a read-only mount of a path above p, on the same
// mount (the spec's own readonlyPaths, or added ones), already holds p.
func (v *mountView) covered(p string, added []string) bool {
	for _, a := range append(slices.Clone(v.existing), added...) {
		if under(p, a) && v.mountOf(p) == v.mountOf(a) {
			return true
		}
	}
	return false
}

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
		if d != p && under(p, d) && d != "/" && len(d) > len(best) {
			best = d
		}
	}
	return best
}

// resolveExisting resolves the longest existing part of p in the root
// (whose own path is top) and appends the rest as written.
func (r *containerRoot) resolveExisting(p, top string) string {
	fd, err := unix.Openat2(r.fd, p, &unix.OpenHow{
		Flags:   unix.O_PATH | unix.O_CLOEXEC,
		Resolve: unix.RESOLVE_IN_ROOT | unix.RESOLVE_NO_MAGICLINKS,
	})
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
