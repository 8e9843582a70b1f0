// Package landlock applies a clawrun Landlock layer to the calling thread.
//
// It is deliberately small: Restrict opens each path of a layer as the
// process sees it, never through a symlink (see paths.go), adds one rule
// per path with the rights that fit the file type, and enforces the
// ruleset on the current OS thread only. The caller (the in-container
// launcher) then execve's from that same thread, after which it is the
// only thread, so no multi-thread synchronisation (and none of its side
// effects) is needed. Pin resolves the paths the same way from outside,
// so that later calls of Restrict refuse paths that became other files.
//
// Restrict reports exactly what the kernel accepted: the ABI used, which
// paths were skipped and why. A caller never has to trust what was asked.
package landlock

import (
	"errors"
	"fmt"
	"sort"

	"golang.org/x/sys/unix"
)

// Rights by ABI version: what each version adds to the handled sets.
var fsRightsByABI = []uint64{
	1: unix.LANDLOCK_ACCESS_FS_EXECUTE | unix.LANDLOCK_ACCESS_FS_WRITE_FILE | unix.LANDLOCK_ACCESS_FS_READ_FILE | unix.LANDLOCK_ACCESS_FS_READ_DIR |
		unix.LANDLOCK_ACCESS_FS_REMOVE_DIR | unix.LANDLOCK_ACCESS_FS_REMOVE_FILE | unix.LANDLOCK_ACCESS_FS_MAKE_CHAR | unix.LANDLOCK_ACCESS_FS_MAKE_DIR |
		unix.LANDLOCK_ACCESS_FS_MAKE_REG | unix.LANDLOCK_ACCESS_FS_MAKE_SOCK | unix.LANDLOCK_ACCESS_FS_MAKE_FIFO | unix.LANDLOCK_ACCESS_FS_MAKE_BLOCK |
		unix.LANDLOCK_ACCESS_FS_MAKE_SYM,
	2: unix.LANDLOCK_ACCESS_FS_REFER,
	3: unix.LANDLOCK_ACCESS_FS_TRUNCATE,
	5: unix.LANDLOCK_ACCESS_FS_IOCTL_DEV,
}

const (
	// Rights that only make sense on a directory.
	dirOnly = unix.LANDLOCK_ACCESS_FS_READ_DIR | unix.LANDLOCK_ACCESS_FS_REMOVE_DIR | unix.LANDLOCK_ACCESS_FS_REMOVE_FILE |
		unix.LANDLOCK_ACCESS_FS_MAKE_CHAR | unix.LANDLOCK_ACCESS_FS_MAKE_DIR | unix.LANDLOCK_ACCESS_FS_MAKE_REG | unix.LANDLOCK_ACCESS_FS_MAKE_SOCK |
		unix.LANDLOCK_ACCESS_FS_MAKE_FIFO | unix.LANDLOCK_ACCESS_FS_MAKE_BLOCK | unix.LANDLOCK_ACCESS_FS_MAKE_SYM | unix.LANDLOCK_ACCESS_FS_REFER
	// Read-only means read and execute, as in OpenShell.
	readOnly = unix.LANDLOCK_ACCESS_FS_EXECUTE | unix.LANDLOCK_ACCESS_FS_READ_FILE | unix.LANDLOCK_ACCESS_FS_READ_DIR
)

// Layer is one ruleset: paths as the calling process sees them.
type Layer struct {
	ReadOnly          []string
	ReadWrite         []string
	ScopeSignals      bool
	ScopeAbstractUnix bool
	TCPBind           []uint16 // nil: TCP bind not restricted
	TCPConnect        []uint16 // nil: TCP connect not restricted
	// Pinned is what each path was when the container was created (see
	// Pin); when set, a path gets a rule only while it is that same file.
	Pinned map[string]FileID `json:",omitempty"`
}

// FileID identifies a file by device and inode.
type FileID struct {
	Dev uint64 `json:"dev"`
	Ino uint64 `json:"ino"`
}

// Result is what the kernel really enforced for one layer.
type Result struct {
	ABI     int           `json:"abi"`
	Rules   int           `json:"rules"`
	Skipped []SkippedPath `json:"skipped,omitempty"`
	// Missing lists features the layer asked for that this kernel's ABI
	// lacks (e.g. "scope_signals" below ABI 6).
	Missing []string `json:"missing_features,omitempty"`
}

// SkippedPath is a path that got no rule.
type SkippedPath struct {
	Path   string `json:"path"`
	Reason string `json:"reason"`
	// Covered: the path is a symlink whose target other rules of the
	// same layer already grant with at least its rights (/bin -> usr/bin
	// beside /usr), so skipping it leaves nothing out.
	Covered bool `json:"covered,omitempty"`
}

// reasonAbsent is the reason of a path that does not exist: skipping it
// weakens nothing, since there is nothing there to reach.
const reasonAbsent = "does not exist"

// Degraded reports whether the layer enforces other than it asked for: a
// missing kernel feature, or a path that exists but got no rule and is
// not covered by other rules.
func (r Result) Degraded() bool {
	if len(r.Missing) > 0 {
		return true
	}
	for _, s := range r.Skipped {
		if s.Reason != reasonAbsent && !s.Covered {
			return true
		}
	}
	return false
}

// ABI returns the Landlock ABI version of the running kernel (0: none).
func ABI() int {
	v, err := abiVersion()
	if err != nil {
		return 0
	}
	return v
}

// handledFS returns every filesystem right the given ABI knows.
func handledFS(abi int) uint64 {
	var all uint64
	for v := 1; v <= abi && v < len(fsRightsByABI); v++ {
		all |= fsRightsByABI[v]
	}
	return all
}

// Restrict enforces layer on the calling thread. The caller must have set
// no_new_privs and must keep the goroutine locked to its OS thread until it
// execs. With strict, any skipped path (except a covered symlink) or
// missing feature is an error and nothing is enforced.
func Restrict(layer Layer, strict bool) (Result, error) {
	abi := ABI()
	res := Result{ABI: abi}
	if abi < 1 {
		if strict {
			return res, errors.New("landlock is not available on this kernel")
		}
		return res, nil
	}
	handled := handledFS(abi)
	attr := unix.LandlockRulesetAttr{Handled_access_fs: handled}
	if layer.ScopeSignals || layer.ScopeAbstractUnix {
		if abi >= 6 {
			if layer.ScopeSignals {
				attr.Scoped |= unix.LANDLOCK_SCOPE_SIGNAL
			}
			if layer.ScopeAbstractUnix {
				attr.Scoped |= unix.LANDLOCK_SCOPE_ABSTRACT_UNIX_SOCKET
			}
		} else {
			res.Missing = append(res.Missing, "scope (needs ABI 6)")
		}
	}
	if layer.TCPBind != nil || layer.TCPConnect != nil {
		if abi >= 4 {
			if layer.TCPBind != nil {
				attr.Handled_access_net |= unix.LANDLOCK_ACCESS_NET_BIND_TCP
			}
			if layer.TCPConnect != nil {
				attr.Handled_access_net |= unix.LANDLOCK_ACCESS_NET_CONNECT_TCP
			}
		} else {
			res.Missing = append(res.Missing, "tcp ports (needs ABI 4)")
		}
	}
	if strict && len(res.Missing) > 0 {
		return res, fmt.Errorf("landlock ABI %d lacks %v", abi, res.Missing)
	}
	root, err := openRoot()
	if err != nil {
		return res, err
	}
	defer unix.Close(root)
	rules, skipped, err := openPaths(root, layer, handled, strict)
	defer closeRules(rules)
	res.Skipped = skipped
	if err != nil {
		return res, err
	}
	fd, err := createRuleset(&attr)
	if err != nil {
		return res, fmt.Errorf("landlock_create_ruleset: %w", err)
	}
	defer unix.Close(fd)
	for _, r := range rules {
		if err := addPathRule(fd, r.rights, r.fd); err != nil {
			return res, fmt.Errorf("landlock_add_rule %s: %w", r.path, err)
		}
		res.Rules++
	}
	for _, port := range sortedPorts(layer.TCPBind) {
		if attr.Handled_access_net&unix.LANDLOCK_ACCESS_NET_BIND_TCP != 0 {
			if err := addPortRule(fd, unix.LANDLOCK_ACCESS_NET_BIND_TCP, port); err != nil {
				return res, fmt.Errorf("tcp_bind %d: %w", port, err)
			}
			res.Rules++
		}
	}
	for _, port := range sortedPorts(layer.TCPConnect) {
		if attr.Handled_access_net&unix.LANDLOCK_ACCESS_NET_CONNECT_TCP != 0 {
			if err := addPortRule(fd, unix.LANDLOCK_ACCESS_NET_CONNECT_TCP, port); err != nil {
				return res, fmt.Errorf("tcp_connect %d: %w", port, err)
			}
			res.Rules++
		}
	}
	// This thread only (see the package comment); no TSYNC flag.
	if err := restrictSelf(fd, restrictFlags(abi)); err != nil {
		return res, fmt.Errorf("landlock_restrict_self: %w", err)
	}
	return res, nil
}

// restrictFlags asks the kernel to log the denials of the program the
// launcher execs (by default only the restricting executable's are), so
// that the host's audit log, when the host turns audit on, shows what the
// agent was refused. Kernels before ABI 7 reject the flag.
func restrictFlags(abi int) uintptr {
	if abi >= 7 {
		return unix.LANDLOCK_RESTRICT_SELF_LOG_NEW_EXEC_ON
	}
	return 0
}

func sortedPorts(ports []uint16) []uint16 {
	out := append([]uint16(nil), ports...)
	sort.Slice(out, func(i, j int) bool { return out[i] < out[j] })
	return out
}
