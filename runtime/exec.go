package runtime

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/opencontainers/runc/libcontainer"
	"github.com/opencontainers/runc/libcontainer/utils"
	"github.com/opencontainers/runtime-spec/specs-go"
)

// ExecOptions describe a process to start in a running container: either
// a whole process.json (ProcessFile), or the container's own process from
// its bundle with Args and the overrides below.
type ExecOptions struct {
	ProcessIO
	ProcessFile    string
	Args           []string
	Env            []string
	Cwd            string
	User           string // uid[:gid]
	AdditionalGIDs []int64
	Caps           []string
	Terminal       bool
	NoNewPrivs     *bool
	AppArmor       string
	ProcessLabel   string
	// Cgroups are sub-cgroups to run in: "[controller[,controller]:]path".
	Cgroups      []string
	IgnorePaused bool
}

// Exec starts a process in a running container. In the foreground it
// returns the process's exit status once it exits.
func (r *Runtime) Exec(id string, opts ExecOptions) (_ int, err error) {
	defer classify(&err)
	c, err := r.load(id)
	if err != nil {
		return -1, err
	}
	status, err := c.Status()
	if err != nil {
		return -1, err
	}
	if status == libcontainer.Stopped {
		return -1, failedPrecondition(errors.New("cannot exec in a stopped container"))
	}
	if status == libcontainer.Paused && !opts.IgnorePaused {
		return -1, failedPrecondition(errors.New("cannot exec in a paused container (use --ignore-paused to override)"))
	}
	p, err := execProcess(c, &opts)
	if err != nil {
		return -1, invalidArgument(err)
	}
	stateDir := filepath.Join(r.Root, id)
	conf, err := loadConfinement(stateDir)
	if err != nil {
		return -1, err
	}
	if conf != nil {
		// exec must not be a way around the policy: the process goes
		// through the launcher like the container's init.
		if err := conf.applyToExec(p, c.Config().Rootfs); err != nil {
			return -1, invalidArgument(err)
		}
	}
	sub, err := parseSubCgroups(opts.Cgroups)
	if err != nil {
		return -1, invalidArgument(err)
	}
	if opts.PidFile != "" {
		if opts.PidFile, err = filepath.Abs(opts.PidFile); err != nil {
			return -1, err
		}
	}
	run := &runner{
		ProcessIO:  opts.ProcessIO,
		container:  c,
		action:     actRun,
		subCgroups: sub,
		confine:    conf,
		stateDir:   stateDir,
	}
	return run.run(p)
}

func execProcess(c *libcontainer.Container, opts *ExecOptions) (*specs.Process, error) {
	if opts.ProcessFile != "" {
		data, err := os.ReadFile(opts.ProcessFile)
		if err != nil {
			return nil, err
		}
		var p specs.Process
		if err := json.Unmarshal(data, &p); err != nil {
			return nil, fmt.Errorf("%s: invalid JSON: %w", opts.ProcessFile, err)
		}
		return &p, ValidateProcess(&p)
	}
	bundle, ok := utils.SearchLabels(c.Config().Labels, "bundle")
	if !ok {
		return nil, errors.New("bundle not found in the container's labels")
	}
	spec, err := LoadSpec(bundle)
	if err != nil {
		return nil, err
	}
	p := spec.Process
	if len(opts.Args) == 0 {
		return nil, errors.New("exec needs a command (or -p process.json)")
	}
	p.Args = opts.Args
	if opts.Cwd != "" {
		p.Cwd = opts.Cwd
	}
	if opts.AppArmor != "" {
		p.ApparmorProfile = opts.AppArmor
	}
	if opts.ProcessLabel != "" {
		p.SelinuxLabel = opts.ProcessLabel
	}
	if len(opts.Caps) > 0 {
		if p.Capabilities == nil {
			p.Capabilities = &specs.LinuxCapabilities{}
		}
		for _, capName := range opts.Caps {
			p.Capabilities.Bounding = append(p.Capabilities.Bounding, capName)
			p.Capabilities.Effective = append(p.Capabilities.Effective, capName)
			p.Capabilities.Permitted = append(p.Capabilities.Permitted, capName)
			// With an inheritable set the capability is also made ambient,
			// so that it survives the execve of a non-root user's process.
			if p.Capabilities.Inheritable != nil {
				p.Capabilities.Ambient = append(p.Capabilities.Ambient, capName)
			}
		}
	}
	p.Env = append(p.Env, opts.Env...)
	p.Terminal = opts.Terminal
	if opts.NoNewPrivs != nil {
		p.NoNewPrivileges = *opts.NoNewPrivs
	}
	if opts.User != "" {
		uidStr, gidStr, hasGID := strings.Cut(opts.User, ":")
		uid, err := strconv.ParseUint(uidStr, 10, 32)
		if err != nil {
			return nil, fmt.Errorf("--user %q: bad uid", opts.User)
		}
		p.User.UID = uint32(uid)
		if hasGID {
			gid, err := strconv.ParseUint(gidStr, 10, 32)
			if err != nil {
				return nil, fmt.Errorf("--user %q: bad gid", opts.User)
			}
			p.User.GID = uint32(gid)
		}
	}
	for _, g := range opts.AdditionalGIDs {
		if g < 0 || g > 1<<32-1 {
			return nil, fmt.Errorf("--additional-gids: %d is not a valid gid", g)
		}
		p.User.AdditionalGids = append(p.User.AdditionalGids, uint32(g))
	}
	return p, ValidateProcess(p)
}

// parseSubCgroups reads --cgroup values: one bare path (cgroup v2 or all
// v1 controllers), or "ctrl[,ctrl]:path" entries.
func parseSubCgroups(args []string) (map[string]string, error) {
	if len(args) == 0 {
		return nil, nil
	}
	paths := make(map[string]string, len(args))
	for _, a := range args {
		ctrls, path, ok := strings.Cut(a, ":")
		if !ok {
			if len(args) != 1 {
				return nil, fmt.Errorf("--cgroup %s: missing <controller>: prefix", a)
			}
			paths[""] = a
			continue
		}
		for _, ctrl := range strings.Split(ctrls, ",") {
			if ctrl == "" {
				return nil, fmt.Errorf("--cgroup %s: empty controller name", a)
			}
			if _, dup := paths[ctrl]; dup {
				return nil, fmt.Errorf("--cgroup: controller %s given twice", ctrl)
			}
			paths[ctrl] = path
		}
	}
	return paths, nil
}
