package stats

import (
	"fmt"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
)

// Runtime is one row of a start benchmark: a display name, the command
// prefix the runtime's arguments are appended to (so a row can carry
// global flags, e.g. 'clawrun --policy agent-default'), its own --root,
// so that runtimes never see each other's state, and its target ratio to
// the baseline (0: not judged).
type Runtime struct {
	Name   string
	Argv   []string
	Root   string
	Target float64
}

// ParseRuntimes reads rows written 'name|command prefix[|target]' (the
// prefix split on blanks, no quoting). Each command is resolved now, so
// that a missing binary fails before any measurement, and gets a --root
// directory of its own under workdir.
func ParseRuntimes(specs []string, workdir string) ([]*Runtime, error) {
	var rts []*Runtime
	for _, s := range specs {
		f := strings.Split(s, "|")
		if len(f) < 2 || len(f) > 3 || strings.TrimSpace(f[0]) == "" || len(strings.Fields(f[1])) == 0 {
			return nil, fmt.Errorf("bad row %q: want 'name|command prefix[|target]'", s)
		}
		r := &Runtime{Name: strings.TrimSpace(f[0]), Argv: strings.Fields(f[1])}
		if len(f) == 3 {
			v, err := strconv.ParseFloat(strings.TrimSpace(f[2]), 64)
			if err != nil {
				return nil, fmt.Errorf("bad row %q: target %q is not a number", s, f[2])
			}
			r.Target = v
		}
		if slices.ContainsFunc(rts, func(o *Runtime) bool { return o.Name == r.Name }) {
			return nil, fmt.Errorf("duplicate row name %q", r.Name)
		}
		path, err := exec.LookPath(r.Argv[0])
		if err != nil {
			return nil, fmt.Errorf("row %q: %v", r.Name, err)
		}
		r.Argv[0] = path
		if r.Root, err = os.MkdirTemp(workdir, "root-"); err != nil {
			return nil, err
		}
		rts = append(rts, r)
	}
	return rts, nil
}

// Command is `PREFIX --root ROOT ARGS...`.
func (r *Runtime) Command(args ...string) *exec.Cmd {
	full := append(slices.Clone(r.Argv[1:]), "--root", r.Root)
	return exec.Command(r.Argv[0], append(full, args...)...)
}

// Version is the first line of `PREFIX --version`, or "?".
func (r *Runtime) Version() string {
	out, err := exec.Command(r.Argv[0], append(slices.Clone(r.Argv[1:]), "--version")...).Output()
	line, _, _ := strings.Cut(string(out), "\n")
	if err != nil || line == "" {
		return "?"
	}
	return strings.TrimSpace(line)
}

// ParseRows is ParseRuntimes with each Runtime made into a benchmark's
// own row type by wrap.
func ParseRows[R any](specs []string, workdir string, wrap func(*Runtime) R) ([]R, error) {
	rts, err := ParseRuntimes(specs, workdir)
	if err != nil {
		return nil, err
	}
	rows := make([]R, len(rts))
	for i, rt := range rts {
		rows[i] = wrap(rt)
	}
	return rows, nil
}

// Row is a benchmark's row type: one that embeds *Runtime.
type Row interface{ runtime() *Runtime }

func (r *Runtime) runtime() *Runtime { return r }

// FindRow is the row of rows named name, or R's zero value (nil) when
// there is none.
func FindRow[R Row](rows []R, name string) R {
	for _, r := range rows {
		if r.runtime().Name == name {
			return r
		}
	}
	var none R
	return none
}
