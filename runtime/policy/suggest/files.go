package suggest

import (
	"fmt"
	"path"
	"slices"
	"strings"

	"github.com/clawrun/clawrun/runtime/policy"
)

// FileDenial is a file access the container's Landlock layers refused, as
// the kernel's audit reported it (clawrun audit's file denials).
type FileDenial struct {
	// Path is the refused path, as the container sees it ("" when the
	// denial is not of a path).
	Path string
	// Access are the rights refused ("fs.write_file").
	Access []string
}

// FileGrant is a path the suggestion adds to filesystem_policy, learned
// from Landlock denials.
type FileGrant struct {
	Path  string
	Write bool // read_write, else read_only
	// Because are the denials it lifts ("fs.write_file /work/out").
	Because []string
}

// readRights are the Landlock rights read_only grants; any other fs.
// right needs read_write.
var readRights = []string{"fs.read_file", "fs.read_dir", "fs.execute"}

// dirRights are the rights whose denial names the directory acted in
// (created in, listed), not a file in it.
var dirRights = []string{"fs.read_dir", "fs.make_reg", "fs.make_dir", "fs.make_sym", "fs.make_sock",
	"fs.make_fifo", "fs.make_char", "fs.make_block", "fs.remove_file", "fs.remove_dir", "fs.refer"}

// pseudoFS are the trees where a directory is too broad a grant (every
// device, every process, every kernel setting): only the path is.
var pseudoFS = []string{"/dev", "/proc", "/sys"}

// suggestFiles turns the Landlock denials of a container into grants for
// its own filesystem layer (own), never wider than the floor's (nil when
// the floor has no filesystem rules). Safe by construction:
//   - the grant is the narrowest sensible: the directory the denied path
//     is in (the path itself when it names a directory, or lies in /dev,
//     /proc or /sys, or its directory is /); never / itself;
//   - the floor must allow the grant (else the path alone, else nothing:
//     what the floor denies is not suggested);
//   - a write is never granted on a directory that is, or contains, one
//     the policy lists read_only (the path alone instead), nor inside a
//     read_only entry other than /: the policy made that tree read-only
//     on purpose, and lifting it is the operator's decision. (read_only /
//     is the usual "all readable" base, not such a statement.)
//
// Each denial not suggested is noted with why.
func suggestFiles(own policy.Layer, floor *policy.Layer, denials []FileDenial, notes *noteSet) []FileGrant {
	var grants []FileGrant
	for _, d := range denials {
		what := fmt.Sprintf("file %s (%s)", d.Path, strings.Join(d.Access, ","))
		write, ok := needsWrite(d.Access)
		switch {
		case d.Path == "" || !path.IsAbs(d.Path):
			notes.add(what, "not a path: not learned")
			continue
		case !ok:
			notes.add(what, "not a file access: not learned")
			continue
		}
		p := path.Clean(d.Path)
		grant, why := grantFor(own, floor, p, write, names(d.Access, dirRights))
		if grant == "" {
			notes.add(what, why)
			continue
		}
		grants = addGrant(grants, grant, write, strings.Join(d.Access, ",")+" "+p)
	}
	return coveredRemoved(grants)
}

// needsWrite says whether access needs read_write (true) or read_only;
// ok is false when no right of access is a file right.
func needsWrite(access []string) (write, ok bool) {
	for _, a := range access {
		if !strings.HasPrefix(a, "fs.") {
			continue
		}
		ok = true
		if !slices.Contains(readRights, a) {
			write = true
		}
	}
	return write, ok
}

// names reports whether any of access is in set.
func names(access, set []string) bool {
	return slices.ContainsFunc(access, func(a string) bool { return slices.Contains(set, a) })
}

// grantFor is the path to grant for a denial of p (p a directory when
// isDir), or "" and why none.
func grantFor(own policy.Layer, floor *policy.Layer, p string, write, isDir bool) (string, string) {
	if write {
		for _, ro := range own.ReadOnly {
			if ro != "/" && policy.Within(p, ro) {
				return "", fmt.Sprintf("the policy lists %s read_only: not widened (grant it by hand if the agent must write there)", ro)
			}
		}
	}
	why := "it would open /"
	for _, c := range candidates(p, isDir) {
		switch {
		case c == "/":
			continue
		case write && slices.ContainsFunc(own.ReadOnly, func(ro string) bool { return policy.Within(ro, c) }):
			why = fmt.Sprintf("%s holds a path the policy lists read_only", c)
		case floor != nil && !floor.Allows(c, write):
			why = "the floor policy denies it"
		case own.Allows(c, write):
			why = "the policy allows it already (the denial was of a right it does not grant)"
		default:
			return c, ""
		}
	}
	return "", why
}

// candidates are the grants that would lift a denial of p, widest
// sensible first: its directory, then p itself.
func candidates(p string, isDir bool) []string {
	if isDir || slices.ContainsFunc(pseudoFS, func(d string) bool { return policy.Within(p, d) }) {
		return []string{p}
	}
	return []string{path.Dir(p), p}
}

// addGrant adds (or upgrades) the grant of p.
func addGrant(grants []FileGrant, p string, write bool, because string) []FileGrant {
	for i := range grants {
		if grants[i].Path == p {
			grants[i].Write = grants[i].Write || write
			if !slices.Contains(grants[i].Because, because) {
				grants[i].Because = append(grants[i].Because, because)
			}
			return grants
		}
	}
	return append(grants, FileGrant{Path: p, Write: write, Because: []string{because}})
}

// coveredRemoved drops the grants another grant covers (a path inside a
// granted directory, with no more access), keeping their reasons, and
// sorts the rest by path.
func coveredRemoved(grants []FileGrant) []FileGrant {
	slices.SortFunc(grants, func(a, b FileGrant) int { return strings.Compare(a.Path, b.Path) })
	var out []FileGrant
	for _, g := range grants {
		i := slices.IndexFunc(out, func(o FileGrant) bool { return policy.Within(g.Path, o.Path) && (o.Write || !g.Write) })
		if i < 0 {
			out = append(out, g)
			continue
		}
		out[i].Because = append(out[i].Because, g.Because...)
	}
	return out
}

// withFileGrants is fs with the grants added.
func withFileGrants(fs policy.Filesystem, grants []FileGrant) policy.Filesystem {
	for _, g := range grants {
		if g.Write {
			fs.ReadWrite = append(fs.ReadWrite, g.Path)
		} else {
			fs.ReadOnly = append(fs.ReadOnly, g.Path)
		}
	}
	return fs
}
