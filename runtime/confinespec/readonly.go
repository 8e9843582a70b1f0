package confinespec

import (
	"path"
	"slices"
	"strings"

	"github.com/opencontainers/runtime-spec/specs-go"

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

// Under tells whether p is dir or beneath it (both clean and absolute).
func Under(p, dir string) bool {
	return p == dir || dir == "/" || strings.HasPrefix(p, dir+"/")
}

// writableEverywhere tells whether every layer lets the container write
// p: within a layer, a read-write rule on p or a directory above it.
func (v *mountView) writableEverywhere(p string) bool {
	for _, l := range v.layers {
		if !slices.ContainsFunc(l.readWrite, func(rw string) bool { return Under(p, rw) }) {
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
			if slices.ContainsFunc(l.readOnly, func(ro string) bool { return Under(m.dest, ro) }) {
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
	if p == "/" || Under(p, "/proc") {
		return false
	}
	for _, l := range v.layers {
		for _, rw := range l.readWrite {
			if rw != p && Under(rw, p) && v.writableEverywhere(rw) {
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
		if Under(p, m.dest) && (best == nil || len(m.dest) >= len(best.dest)) {
			best = m
		}
	}
	return best
}

// covered tells whether a read-only mount of a path above p, on the same
// mount (the spec's own readonlyPaths, or added ones), already holds p.
func (v *mountView) covered(p string, added []string) bool {
	for _, a := range append(slices.Clone(v.existing), added...) {
		if Under(p, a) && v.mountOf(p) == v.mountOf(a) {
			return true
		}
	}
	return false
}
