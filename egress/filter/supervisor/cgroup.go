package supervisor

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// The worker runs in a memory cgroup of its own, with a hard limit: its
// memory is not charged to the container whose traffic it handles (it
// runs outside the container's cgroup), so without one a container could
// grow it at will. The cgroup is the supervisor's, named after it, made
// next to the cgroup the filter was started in (cgroup v1: in it; v2: in
// its parent, since a v2 cgroup with processes cannot hand memory down),
// like a container's default cgroup.

// cgroupEnv tells the worker the cgroup to join before anything else.
const cgroupEnv = "_CLAWRUN_EGRESS_CGROUP"

const cgroupPrefix = "clawrun-egress-"

// memCgroup is a memory cgroup directory.
type memCgroup struct {
	dir string
	v2  bool
}

// newWorkerCgroup makes the supervisor's worker cgroup, with limit
// bytes of memory and no swap beyond it, after removing the empty ones
// of supervisors that are gone.
func newWorkerCgroup(limit int64) (*memCgroup, error) {
	parent, v2, err := memoryParent()
	if err != nil {
		return nil, fmt.Errorf("memory cgroup: %w", err)
	}
	removeStaleCgroups(parent)
	cg := &memCgroup{dir: filepath.Join(parent, cgroupPrefix+strconv.Itoa(os.Getpid())), v2: v2}
	if err := os.Mkdir(cg.dir, 0o755); err != nil && !errors.Is(err, os.ErrExist) {
		return nil, fmt.Errorf("memory cgroup: %w", err)
	}
	if err := cg.setLimit(limit); err != nil {
		cg.remove()
		return nil, fmt.Errorf("memory cgroup %s: %w", cg.dir, err)
	}
	return cg, nil
}

func (c *memCgroup) setLimit(limit int64) error {
	v := strconv.FormatInt(limit, 10)
	if c.v2 {
		if err := writeCgroupFile(c.dir, "memory.max", v); err != nil {
			return err
		}
		return writeOptional(c.dir, "memory.swap.max", "0")
	}
	if err := writeCgroupFile(c.dir, "memory.limit_in_bytes", v); err != nil {
		return err
	}
	// memory+swap, where swap accounting is on: no swap past the limit.
	return writeOptional(c.dir, "memory.memsw.limit_in_bytes", v)
}

// oomKills is how many of the cgroup's processes the kernel killed for
// want of memory (-1 when it cannot tell).
func (c *memCgroup) oomKills() int64 {
	file := "memory.oom_control"
	if c.v2 {
		file = "memory.events"
	}
	f, err := os.Open(filepath.Join(c.dir, file))
	if err != nil {
		return -1
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "oom_kill "); ok {
			n, err := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
			if err == nil {
				return n
			}
		}
	}
	return -1
}

// remove removes the cgroup once its processes are gone.
func (c *memCgroup) remove() {
	for range 50 {
		if err := unix.Rmdir(c.dir); err == nil || errors.Is(err, unix.ENOENT) || !errors.Is(err, unix.EBUSY) {
			return
		}
		time.Sleep(10 * time.Millisecond) // the last process is still exiting
	}
}

// JoinWorkerCgroup moves the calling worker into the cgroup its
// supervisor made for it (the worker's first thing: all its memory is
// charged there, under its limit).
func JoinWorkerCgroup() error {
	if dir := os.Getenv(cgroupEnv); dir != "" {
		return joinCgroup(dir)
	}
	return nil
}

// joinCgroup moves the calling process into dir.
func joinCgroup(dir string) error {
	if err := writeCgroupFile(dir, "cgroup.procs", "0"); err != nil {
		return fmt.Errorf("joining memory cgroup %s: %w", dir, err)
	}
	return nil
}

// memoryParent is the directory to make the worker's cgroup in.
func memoryParent() (string, bool, error) {
	parent, v2, err := memoryParentOf("self")
	if err != nil || !v2 {
		return parent, v2, err
	}
	return parent, true, delegateMemory(cgroupMount("cgroup2", ""), parent)
}

// memoryParentOf is the directory where the process proc ("self" or a
// pid) makes its worker's cgroup, and whether it is cgroup v2's.
func memoryParentOf(proc string) (string, bool, error) {
	own, err := os.ReadFile("/proc/" + proc + "/cgroup")
	if err != nil {
		return "", false, err
	}
	if mnt := cgroupMount("cgroup", "memory"); mnt != "" {
		if p, ok := ownCgroup(string(own), "memory"); ok {
			return filepath.Join(mnt, p), false, nil
		}
	}
	mnt := cgroupMount("cgroup2", "")
	if mnt == "" {
		return "", false, errors.New("no memory controller: neither cgroup v1's nor a cgroup2 mount")
	}
	if c, _ := os.ReadFile(filepath.Join(mnt, "cgroup.controllers")); !hasWord(string(c), "memory") {
		return "", false, fmt.Errorf("the memory controller is not available in %s", mnt)
	}
	p, ok := ownCgroup(string(own), "")
	if !ok {
		return "", false, fmt.Errorf("no cgroup2 entry in /proc/%s/cgroup", proc)
	}
	return filepath.Join(mnt, filepath.Dir(p)), true, nil
}

// supervisorCgroup is the worker cgroup of the supervisor pid, for its
// killer to remove (a supervisor removes its own when it stops).
func supervisorCgroup(pid int) (*memCgroup, bool) {
	parent, v2, err := memoryParentOf(strconv.Itoa(pid))
	if err != nil {
		return nil, false
	}
	return &memCgroup{dir: filepath.Join(parent, cgroupPrefix+strconv.Itoa(pid)), v2: v2}, true
}

// delegateMemory enables the memory controller from the mount down to
// dir's children.
func delegateMemory(mnt, dir string) error {
	rel, err := filepath.Rel(mnt, dir)
	if err != nil {
		return err
	}
	cur := mnt
	parts := []string{}
	if rel != "." {
		parts = strings.Split(rel, "/")
	}
	for i := 0; ; i++ {
		if c, _ := os.ReadFile(filepath.Join(cur, "cgroup.subtree_control")); !hasWord(string(c), "memory") {
			if err := writeCgroupFile(cur, "cgroup.subtree_control", "+memory"); err != nil {
				return fmt.Errorf("enabling memory in %s: %w", cur, err)
			}
		}
		if i == len(parts) {
			return nil
		}
		cur = filepath.Join(cur, parts[i])
	}
}

// cgroupMount is the mount point of a cgroup file system of type fstype
// ("cgroup" with controller among its options, or "cgroup2").
func cgroupMount(fstype, controller string) string {
	data, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return ""
	}
	for line := range strings.SplitSeq(string(data), "\n") {
		pre, post, ok := strings.Cut(line, " - ")
		if !ok {
			continue
		}
		pf, qf := strings.Fields(pre), strings.Fields(post)
		if len(pf) < 5 || len(qf) < 3 || qf[0] != fstype {
			continue
		}
		if controller == "" || hasWord(strings.ReplaceAll(qf[2], ",", " "), controller) {
			return pf[4]
		}
	}
	return ""
}

// ownCgroup is the path of the controller's line of /proc/self/cgroup
// ("" selects the cgroup2 line).
func ownCgroup(procCgroup, controller string) (string, bool) {
	for line := range strings.SplitSeq(strings.TrimSpace(procCgroup), "\n") {
		parts := strings.SplitN(line, ":", 3)
		if len(parts) != 3 {
			continue
		}
		if controller == "" && parts[0] == "0" && parts[1] == "" {
			return parts[2], true
		}
		if controller != "" && hasWord(strings.ReplaceAll(parts[1], ",", " "), controller) {
			return parts[2], true
		}
	}
	return "", false
}

// removeStaleCgroups removes the worker cgroups in parent whose
// supervisor is gone (killed before it could); a cgroup that still has
// processes cannot be removed, and is not.
func removeStaleCgroups(parent string) {
	ents, _ := os.ReadDir(parent)
	for _, e := range ents {
		pid, err := strconv.Atoi(strings.TrimPrefix(e.Name(), cgroupPrefix))
		if !e.IsDir() || !strings.HasPrefix(e.Name(), cgroupPrefix) || err != nil || IsSupervisor(pid) {
			continue
		}
		_ = unix.Rmdir(filepath.Join(parent, e.Name()))
	}
}

func hasWord(s, w string) bool {
	for f := range strings.FieldsSeq(s) {
		if f == w {
			return true
		}
	}
	return false
}

func writeCgroupFile(dir, name, value string) error {
	return os.WriteFile(filepath.Join(dir, name), []byte(value), 0o644)
}

// writeOptional writes a file that only some kernels have.
func writeOptional(dir, name, value string) error {
	if err := writeCgroupFile(dir, name, value); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	return nil
}
