package runtime

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// containerRoot is the root directory of a running container process, as
// that process sees it (its mount namespace and root), for checks that
// must see the container's mounts rather than the bundle's rootfs.
type containerRoot struct{ fd int }

func openContainerRoot(pid int) (*containerRoot, error) {
	return openRoot("/proc/" + strconv.Itoa(pid) + "/root")
}

// openRoot opens a directory as a root, e.g. a bundle's root filesystem
// before the container exists (without the spec's mounts).
func openRoot(dir string) (*containerRoot, error) {
	fd, err := unix.Open(dir, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("open the container's root: %w", err)
	}
	return &containerRoot{fd: fd}, nil
}

func (r *containerRoot) Close() { unix.Close(r.fd) }

// open resolves p inside the root as the container would (RESOLVE_IN_ROOT:
// absolute symlinks and ".." stay within its root; no magic links) and
// opens it with flags. The one place clawrun looks up a path of a
// container from the outside.
func (r *containerRoot) open(p string, flags int) (int, error) {
	return unix.Openat2(r.fd, p, &unix.OpenHow{
		Flags:   uint64(flags) | unix.O_CLOEXEC,
		Resolve: unix.RESOLVE_IN_ROOT | unix.RESOLVE_NO_MAGICLINKS,
	})
}

// stat resolves p inside the container (see open).
func (r *containerRoot) stat(p string) (*unix.Stat_t, error) {
	fd, err := r.open(p, unix.O_PATH)
	if err != nil {
		return nil, err
	}
	defer unix.Close(fd)
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return nil, err
	}
	return &st, nil
}

// openInRootfs opens rel inside rootfs (see open) if it is a regular
// file; a missing file reads as empty (numeric ids still work).
func openInRootfs(rootfs, rel string) (*os.File, error) {
	root, err := openRoot(rootfs)
	if err != nil {
		return nil, err
	}
	defer root.Close()
	fd, err := root.open(rel, unix.O_RDONLY|unix.O_NONBLOCK|unix.O_NOCTTY)
	if errors.Is(err, unix.ENOENT) {
		return os.Open(os.DevNull)
	}
	if err != nil {
		return nil, fmt.Errorf("/%s: %w", rel, err)
	}
	f := os.NewFile(uintptr(fd), "/"+rel)
	st, err := f.Stat()
	if err != nil || !st.Mode().IsRegular() {
		f.Close()
		return nil, fmt.Errorf("/%s is not a regular file", rel)
	}
	return f, nil
}

// lookPath finds the command the way the container will: through the
// process's PATH, and it must be an executable regular file. The error
// reads like libcontainer's own.
func (r *containerRoot) lookPath(name string, env []string, cwd string) error {
	_, err := r.resolveCommand(name, env, cwd)
	return err
}

// resolveCommand is lookPath that also returns the command's absolute,
// clean path (symlinks are not followed: the container's exec will).
func (r *containerRoot) resolveCommand(name string, env []string, cwd string) (string, error) {
	abs := func(p string) string {
		if !path.IsAbs(p) {
			p = path.Join(cwd, p)
		}
		return path.Clean(p)
	}
	isExe := func(p string) bool {
		st, err := r.stat(abs(p))
		return err == nil && st.Mode&unix.S_IFMT == unix.S_IFREG && st.Mode&0o111 != 0
	}
	if strings.Contains(name, "/") {
		if isExe(name) {
			return abs(name), nil
		}
		return "", &exec.Error{Name: name, Err: errors.New("no such executable file in the container")}
	}
	pathVar := ""
	for _, kv := range env {
		if v, ok := strings.CutPrefix(kv, "PATH="); ok {
			pathVar = v
		}
	}
	for _, dir := range strings.Split(pathVar, ":") {
		if dir == "" {
			dir = "."
		}
		if p := path.Join(dir, name); isExe(p) {
			return abs(p), nil
		}
	}
	return "", &exec.Error{Name: name, Err: exec.ErrNotFound}
}
