package runtime

import (
	"errors"
	"os"
	"path/filepath"

	"github.com/opencontainers/runc/libcontainer"
)

// DefaultRoot is where container state lives unless --root says otherwise.
const DefaultRoot = "/run/clawrun"

// ErrEmptyID is returned when a command needs a container id and got
// none (an errdefs.ErrInvalidArgument).
var ErrEmptyID = invalidArgument(errors.New("container id cannot be empty"))

// Runtime is one state root and the global options that apply to every
// container under it.
type Runtime struct {
	// Root is the absolute directory holding one state dir per container.
	Root string
	// SystemdCgroup selects the systemd cgroup driver (cgroupsPath of the
	// form "slice:prefix:name").
	SystemdCgroup bool
	// Rootless forces (true/false) or auto-detects (nil) rootless cgroups.
	Rootless *bool
	// Policy holds the administrator's policy settings.
	Policy PolicyOptions
	// NotifySocket is clawrun's NOTIFY_SOCKET: containers started with it
	// get a socket of their own for sd_notify (see notify.go).
	NotifySocket string
}

// New validates root and returns a Runtime for it.
func New(root string, systemdCgroup bool, rootless *bool) (*Runtime, error) {
	abs, err := filepath.Abs(root)
	if err != nil {
		return nil, err
	}
	if abs == "/" {
		return nil, invalidArgument(errors.New("--root must not be /"))
	}
	return &Runtime{Root: abs, SystemdCgroup: systemdCgroup, Rootless: rootless}, nil
}

// load opens an existing container. A missing one is libcontainer's
// ErrNotExist, "container does not exist": runc's words, which
// containerd's shim matches to tell a gone container from a failure
// (and errdefs.ErrNotFound).
func (r *Runtime) load(id string) (_ *libcontainer.Container, err error) {
	defer classify(&err)
	if id == "" {
		return nil, ErrEmptyID
	}
	return libcontainer.Load(r.Root, id)
}

// rootlessCgroups reports whether cgroup errors must be tolerated.
func (r *Runtime) rootlessCgroups() bool {
	if r.Rootless != nil {
		return *r.Rootless
	}
	return os.Geteuid() != 0
}
