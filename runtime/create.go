package runtime

import (
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/opencontainers/runc/libcontainer"
	"github.com/opencontainers/runc/libcontainer/specconv"
	"github.com/opencontainers/runtime-spec/specs-go"
)

// CreateOptions are the options of create and run.
type CreateOptions struct {
	ProcessIO
	ID     string
	Bundle string // default: the current directory
	// NoPivot uses MS_MOVE + chroot instead of pivot_root (rootfs on a ramdisk).
	NoPivot bool
	// NoNewKeyring keeps the caller's session keyring.
	NoNewKeyring bool
	// Keep leaves a stopped container behind after run (run only).
	Keep bool
	// NoSubreaper keeps clawrun from reaping reparented processes (run only).
	NoSubreaper bool
}

// Create creates a container whose init waits for Start.
func (r *Runtime) Create(opts CreateOptions) error {
	opts.Detach = true
	_, err := r.start(opts, actCreate)
	return err
}

// Run creates and starts a container. In the foreground it returns the
// container's exit status once it exits, and removes it unless Keep.
func (r *Runtime) Run(opts CreateOptions) (int, error) {
	return r.start(opts, actRun)
}

func (r *Runtime) start(opts CreateOptions, act action) (_ int, err error) {
	defer classify(&err)
	began := time.Now()
	if opts.ID == "" {
		return -1, ErrEmptyID
	}
	if opts.PidFile != "" {
		abs, err := filepath.Abs(opts.PidFile)
		if err != nil {
			return -1, err
		}
		opts.PidFile = abs
	}
	spec, err := r.loadBundle(opts.Bundle)
	if err != nil {
		return -1, invalidArgument(err)
	}
	stateDir := filepath.Join(r.Root, opts.ID)
	notify := newNotifySocket(r.NotifySocket, stateDir)
	if notify != nil {
		notify.setupSpec(spec)
	}
	// The policy rewrites the spec, so it comes before libcontainer's config.
	conf, err := r.confine(spec, opts.ID)
	if err != nil {
		return -1, invalidArgument(err)
	}
	c, err := r.createContainer(opts, spec)
	if err != nil {
		return -1, err
	}
	if err := prepareStateDir(stateDir, conf, notify, act); err != nil {
		_ = destroy(c, stateDir, filterStopGrace)
		return -1, err
	}
	if conf != nil && conf.Trust != nil {
		if err := conf.Trust.write(opts.ID, rootfsPath(spec)); err != nil {
			_ = destroy(c, stateDir, filterStopGrace)
			return -1, err
		}
	}
	defer notify.Close()
	run := &runner{
		confine:   conf,
		stateDir:  stateDir,
		ProcessIO: opts.ProcessIO,
		container: c,
		action:    act,
		init:      true,
		subreaper: !opts.NoSubreaper,
		destroy:   !opts.Keep,
		listenFDs: listenFDs(),
		began:     began,
	}
	if act == actRun {
		run.notify = notify
	}
	return run.run(spec.Process)
}

// prepareStateDir adds clawrun's files to a new container's state dir:
// the policy, the notify socket's directory, and for run its socket
// (start binds it for create, as runc does).
func prepareStateDir(stateDir string, conf *confinement, notify *notifySocket, act action) error {
	if conf != nil {
		if err := conf.save(stateDir); err != nil {
			return err
		}
	}
	if notify == nil {
		return nil
	}
	if err := notify.makeDir(); err != nil {
		return err
	}
	if act == actRun {
		return notify.listen()
	}
	return nil
}

// loadBundle makes bundle the working directory, as libcontainer resolves
// relative paths of the spec (root.path, mount sources) against it.
func (r *Runtime) loadBundle(bundle string) (*specs.Spec, error) {
	if bundle != "" {
		if err := os.Chdir(bundle); err != nil {
			return nil, fmt.Errorf("bundle %s: %w", bundle, err)
		}
	}
	wd, err := os.Getwd()
	if err != nil {
		return nil, err
	}
	return LoadSpec(wd)
}

func (r *Runtime) createContainer(opts CreateOptions, spec *specs.Spec) (*libcontainer.Container, error) {
	config, err := specconv.CreateLibcontainerConfig(&specconv.CreateOpts{
		CgroupName:       opts.ID,
		UseSystemdCgroup: r.SystemdCgroup,
		NoPivotRoot:      opts.NoPivot,
		NoNewKeyring:     opts.NoNewKeyring,
		Spec:             spec,
		RootlessEUID:     os.Geteuid() != 0,
		RootlessCgroups:  r.rootlessCgroups(),
	})
	if err != nil {
		return nil, invalidArgument(err)
	}
	// A taken id fails with libcontainer's ErrExist, "container with given
	// ID already exists", as in runc.
	return libcontainer.Create(r.Root, opts.ID, config)
}
