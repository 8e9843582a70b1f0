package runtime

import (
	"errors"
	"fmt"
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

// stat resolves p inside the container: absolute symlinks and ".." stay
// within its root (RESOLVE_IN_ROOT), as they would for the container.
func (r *containerRoot) stat(p string) (*unix.Stat_t, error) {
	fd, err := unix.Openat2(r.fd, p, &unix.OpenHow{
		Flags:   unix.O_PATH | unix.O_CLOEXEC,
		Resolve: unix.RESOLVE_IN_ROOT | unix.RESOLVE_NO_MAGICLINKS,
	})
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
