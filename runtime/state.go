package runtime

import (
	"errors"
	"fmt"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"syscall"
	"time"

	"github.com/opencontainers/runc/libcontainer"
	"github.com/opencontainers/runc/libcontainer/utils"
)

// State is what `clawrun state` and `clawrun list` print: runc's state
// document, field for field, so that its readers parse it unchanged.
type State struct {
	Version        string            `json:"ociVersion"`
	ID             string            `json:"id"`
	InitProcessPid int               `json:"pid"`
	Status         string            `json:"status"`
	Bundle         string            `json:"bundle"`
	Rootfs         string            `json:"rootfs"`
	Created        time.Time         `json:"created"`
	Annotations    map[string]string `json:"annotations,omitempty"`
	Owner          string            `json:"owner"`
	// Clawrun says what is really enforced (absent: no policy applies).
	Clawrun *Confinement `json:"clawrun,omitempty"`
}

// State reports one container.
func (r *Runtime) State(id string) (_ *State, err error) {
	defer classify(&err)
	c, err := r.load(id)
	if err != nil {
		return nil, err
	}
	return stateOf(r.Root, c)
}

func stateOf(root string, c *libcontainer.Container) (*State, error) {
	status, err := c.Status()
	if err != nil {
		return nil, err
	}
	st, err := c.State()
	if err != nil {
		return nil, err
	}
	pid := st.BaseState.InitProcessPid
	if status == libcontainer.Stopped {
		pid = 0
	}
	bundle, annotations := utils.Annotations(st.Config.Labels)
	var report *Confinement
	stateDir := filepath.Join(root, c.ID())
	if conf, err := loadConfinement(stateDir); err != nil {
		return nil, err
	} else if conf != nil {
		report = confinementState(conf, stateDir)
	}
	return &State{
		Clawrun:        report,
		Version:        st.BaseState.Config.Version,
		ID:             st.BaseState.ID,
		InitProcessPid: pid,
		Status:         status.String(),
		Bundle:         bundle,
		Rootfs:         st.BaseState.Config.Rootfs,
		Created:        st.BaseState.Created,
		Annotations:    annotations,
	}, nil
}

// List reports every container under the root. A container whose state
// cannot be read is reported on stderr and skipped, as runc does.
func (r *Runtime) List(rootIsDefault bool) ([]State, error) {
	entries, err := os.ReadDir(r.Root)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) && rootIsDefault {
			return nil, nil
		}
		return nil, err
	}
	var out []State
	for _, e := range entries {
		if !e.IsDir() {
			continue
		}
		info, err := e.Info()
		if err != nil {
			continue // removed meanwhile
		}
		c, err := libcontainer.Load(r.Root, e.Name())
		if err != nil {
			fmt.Fprintf(os.Stderr, "load container %s: %v\n", e.Name(), err)
			continue
		}
		st, err := stateOf(r.Root, c)
		if err != nil {
			fmt.Fprintf(os.Stderr, "state of %s: %v\n", e.Name(), err)
			continue
		}
		st.Owner = ownerName(info.Sys().(*syscall.Stat_t).Uid)
		out = append(out, *st)
	}
	return out, nil
}

func ownerName(uid uint32) string {
	id := strconv.Itoa(int(uid))
	if u, err := user.LookupId(id); err == nil {
		return u.Username
	}
	return "#" + id
}
