package landlock

import (
	"errors"
	"fmt"
	"slices"
	"strings"

	"golang.org/x/sys/unix"
)

// Policy paths are opened beneath a root directory (the launcher's own
// "/", or the container's root as the runtime sees it for Pin) and never
// through a symlink: an image, or an agent that may write the parent of a
// listed path, must not turn "read-write /tmp" into "read-write /" with
// /tmp -> /. Magic links (/proc/self/root, /proc/1/cwd, /proc/self/fd/N)
// are refused the same way.
const noSymlinks = unix.RESOLVE_IN_ROOT | unix.RESOLVE_NO_SYMLINKS | unix.RESOLVE_NO_MAGICLINKS

// maxWalk bounds the walk from a symlink's target up to the root, and
// maxLinks the symlinks followed to it (the kernel's limit).
const (
	maxWalk  = 4096
	maxLinks = 40
)

// pathRule is a policy path opened for its rule.
type pathRule struct {
	path   string
	rights uint64 // fitted to the file type
	fd     int
	id     FileID
}

// Pin resolves the paths of layer beneath root, a directory fd of the
// container's root, exactly as Restrict resolves them inside the
// container, and returns layer with Pinned set to the file each path is
// now (the zero FileID for a path that gets no rule). Restrict then gives
// a rule only to a path that is still the file it was. Nothing is
// enforced. With strict, a path that Restrict would refuse is an error.
func Pin(root int, layer Layer, strict bool) (Layer, error) {
	abi := ABI()
	if abi < 1 {
		return layer, nil
	}
	layer.Pinned = nil // what is there now
	rules, _, err := openPaths(root, layer, handledFS(abi), strict)
	defer closeRules(rules)
	if err != nil {
		return layer, err
	}
	pinned := map[string]FileID{}
	for _, p := range slices.Concat(layer.ReadOnly, layer.ReadWrite) {
		pinned[p] = FileID{}
	}
	for _, r := range rules {
		pinned[r.path] = r.id
	}
	layer.Pinned = pinned
	return layer, nil
}

// openRoot opens the calling process's root directory.
func openRoot() (int, error) {
	fd, err := unix.Open("/", unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return -1, fmt.Errorf("open /: %w", err)
	}
	return fd, nil
}

// openPaths opens every path of layer beneath root for its rule. A path
// that cannot be opened, is or passes through a symlink, or is not the
// file it was pinned to is skipped with the reason (in the layer's order);
// under strict the first skipped path that is not a covered symlink is an
// error. The caller closes the rules.
func openPaths(root int, layer Layer, handled uint64, strict bool) ([]pathRule, []SkippedPath, error) {
	var rules []pathRule
	var skipped []SkippedPath
	links := map[int]uint64{} // index in skipped of a symlinked path: its rights
	add := func(path string, rights uint64) {
		r, reason, isLink := openPath(root, path, rights, layer.Pinned)
		switch {
		case reason == "":
			rules = append(rules, r)
		case isLink:
			links[len(skipped)] = rights
			fallthrough
		default:
			skipped = append(skipped, SkippedPath{Path: path, Reason: reason})
		}
	}
	for _, p := range layer.ReadOnly {
		add(p, readOnly&handled)
	}
	for _, p := range layer.ReadWrite {
		add(p, handled)
	}
	// Symlinks last: whether one is covered depends on all the rules.
	for i, rights := range links {
		s := &skipped[i]
		if by := coveredBy(root, s.Path, rights, rules); len(by) > 0 {
			s.Covered = true
			s.Reason += ": not followed; its target is already granted by " + strings.Join(by, ", ")
		} else {
			s.Reason += ": not followed (a policy path gets no rule through a symlink; list the real path)"
		}
	}
	if strict {
		for _, s := range skipped {
			if !s.Covered {
				return rules, skipped, fmt.Errorf("path %s: %s", s.Path, s.Reason)
			}
		}
	}
	return rules, skipped, nil
}

// openPath opens path beneath root without following symlinks. It returns
// the rule, or why there is none; isLink when path is, or passes
// through, a symlink (the reason then names it).
func openPath(root int, path string, rights uint64, pinned map[string]FileID) (r pathRule, reason string, isLink bool) {
	fd, err := unix.Openat2(root, path, &unix.OpenHow{Flags: unix.O_PATH | unix.O_CLOEXEC, Resolve: noSymlinks})
	switch {
	case errors.Is(err, unix.ENOENT):
		return r, reasonAbsent, false
	case errors.Is(err, unix.ELOOP):
		if link, ok := firstSymlink(root, path); ok {
			return r, link, true
		}
		return r, err.Error(), false
	case err != nil:
		return r, err.Error(), false
	}
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		unix.Close(fd)
		return r, err.Error(), false
	}
	id := FileID{Dev: st.Dev, Ino: st.Ino}
	if len(pinned) > 0 && pinned[path] != id {
		unix.Close(fd)
		if pinned[path] == (FileID{}) {
			return r, "got no rule when the container was created (it was missing or a symlink then)", false
		}
		return r, "replaced since the container was created (it is another file now)", false
	}
	if st.Mode&unix.S_IFMT != unix.S_IFDIR {
		// Files (e.g. /dev/null) take only file rights.
		rights &^= dirOnly
	}
	return pathRule{path: path, rights: rights, fd: fd, id: id}, "", false
}

// firstSymlink finds the first component of path, beneath root, that is a
// symlink (or a magic link), and names it: "symlink LINK -> TARGET".
func firstSymlink(root int, path string) (string, bool) {
	prefix := ""
	for _, c := range strings.Split(strings.Trim(path, "/"), "/") {
		prefix += "/" + c
		fd, err := unix.Openat2(root, prefix, &unix.OpenHow{Flags: unix.O_PATH | unix.O_NOFOLLOW | unix.O_CLOEXEC, Resolve: noSymlinks})
		if err != nil {
			return "", false
		}
		target, isLink := symlinkTarget(fd)
		unix.Close(fd)
		if isLink {
			return "symlink " + prefix + " -> " + target, true
		}
	}
	return "", false
}

// symlinkTarget tells whether fd (an O_PATH|O_NOFOLLOW fd) is a symlink,
// and what it points to; a magic link of another process may not be
// readable: "?" then.
func symlinkTarget(fd int) (string, bool) {
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil || st.Mode&unix.S_IFMT != unix.S_IFLNK {
		return "", false
	}
	buf := make([]byte, unix.PathMax)
	n, err := unix.Readlinkat(fd, "", buf)
	if err != nil {
		return "?", true
	}
	return string(buf[:n]), true
}

// inRoot resolves a symlink's target as the container does: absolute
// symlinks and ".." stay within root; magic links are not followed.
const inRoot = unix.RESOLVE_IN_ROOT | unix.RESOLVE_NO_MAGICLINKS

// coveredBy returns the paths of rules that already grant the target of
// the symlinked path with at least rights, or nil. The target is resolved
// beneath root as the container resolves it and compared by identity, as
// Landlock does: an access is allowed if rules on the file or on any
// directory above it grant it, so the walk goes up from the target to the
// root adding up the rights of the rules it meets.
func coveredBy(root int, path string, rights uint64, rules []pathRule) []string {
	g := grants{rules: rules, want: rights}
	fd, err := unix.Openat2(root, path, &unix.OpenHow{Flags: unix.O_PATH | unix.O_CLOEXEC, Resolve: inRoot})
	if err != nil {
		return nil
	}
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		unix.Close(fd)
		return nil
	}
	if st.Mode&unix.S_IFMT != unix.S_IFDIR {
		// A file (/dev/ptmx -> pts/ptmx) has no "..": a rule on the file
		// itself, then the walk from the directory that holds it.
		unix.Close(fd)
		g.want &^= dirOnly
		if g.add(FileID{Dev: st.Dev, Ino: st.Ino}) {
			return g.by
		}
		if fd, err = dirOfTarget(root, path); err != nil {
			return nil
		}
	}
	defer func() { unix.Close(fd) }()
	rootID, err := fileID(root)
	if err != nil {
		return nil
	}
	for range maxWalk {
		id, err := fileID(fd)
		switch {
		case err != nil:
			return nil
		case g.add(id):
			return g.by
		case id == rootID:
			return nil
		}
		parent, err := unix.Openat(fd, "..", unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
		if err != nil {
			return nil
		}
		unix.Close(fd)
		fd = parent
	}
	return nil
}

// grants adds up the rights that rules give the files of a walk.
type grants struct {
	rules []pathRule
	want  uint64
	have  uint64
	by    []string
}

// add counts the rules on id and tells whether want is now granted.
func (g *grants) add(id FileID) bool {
	for _, r := range g.rules {
		if r.id == id {
			g.have |= r.rights
			g.by = append(g.by, r.path)
		}
	}
	return g.have&g.want == g.want
}

// dirOfTarget opens the directory that holds the file path resolves to,
// following the chain of symlinks to the file's last name.
func dirOfTarget(root int, path string) (int, error) {
	for range maxLinks {
		dir := path[:strings.LastIndexByte(path, '/')+1]
		fd, err := unix.Openat2(root, path, &unix.OpenHow{Flags: unix.O_PATH | unix.O_NOFOLLOW | unix.O_CLOEXEC, Resolve: inRoot})
		if err != nil {
			return -1, err
		}
		target, isLink := symlinkTarget(fd)
		unix.Close(fd)
		switch {
		case !isLink:
			return unix.Openat2(root, dir, &unix.OpenHow{Flags: unix.O_PATH | unix.O_DIRECTORY | unix.O_CLOEXEC, Resolve: inRoot})
		case strings.HasPrefix(target, "/"):
			path = target
		default:
			// Not path.Join: ".." must be resolved, not cleaned away.
			path = dir + target
		}
	}
	return -1, unix.ELOOP
}

func fileID(fd int) (FileID, error) {
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return FileID{}, err
	}
	return FileID{Dev: st.Dev, Ino: st.Ino}, nil
}

func closeRules(rules []pathRule) {
	for _, r := range rules {
		unix.Close(r.fd)
	}
}
