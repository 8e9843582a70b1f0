package integration

import (
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/clawrun/clawrun/test/bundle"
)

// TestPauseResume: a paused container's counter stops; resume restarts it.
func TestPauseResume(t *testing.T) {
	t.Parallel()
	r := newRuntime(t)
	b := r.bundle(bundle.Shell(`i=0; while :; do i=$((i+1)); echo $i > /dev/shm/c; sleep 0.05; done`))
	id := newID(t)
	st := r.runDetached(id, b)
	// /dev/shm is a tmpfs private to the container: read it through init's root.
	counterPath := filepath.Join("/proc", strconv.Itoa(st.Pid), "root/dev/shm/c")
	counter := func() int {
		n, _ := strconv.Atoi(strings.TrimSpace(readFile(counterPath)))
		return n
	}
	waitFor(t, 10*time.Second, "the counter to run", func() bool { return counter() > 2 })

	r.ok("pause", id)
	if st := r.state(id); st.Status != "paused" {
		t.Fatalf("after pause: %+v", st)
	}
	// exec into a paused container is refused (runc: unless --ignore-paused).
	if res := r.run("exec", id, "true"); res.Code == 0 {
		t.Errorf("exec into a paused container succeeded:\n%s", res)
	}
	c1 := counter()
	time.Sleep(600 * time.Millisecond) // ~12 increments if it were running
	if c2 := counter(); c2 != c1 {
		t.Fatalf("counter advanced while paused: %d → %d", c1, c2)
	}

	r.ok("resume", id)
	if st := r.state(id); st.Status != "running" {
		t.Fatalf("after resume: %+v", st)
	}
	waitFor(t, 10*time.Second, "the counter to advance after resume", func() bool { return counter() > c1 })

	// Cleanup force-deletes a paused container too.
	r.ok("pause", id)
	r.ok("delete", "-f", id)
	if pidAlive(st.Pid) {
		t.Errorf("init %d of a paused container alive after delete -f", st.Pid)
	}
	r.assertGone(id, b)
}

func psJSON(t *testing.T, r *rtest, id string) []int {
	t.Helper()
	res := r.ok("ps", "--format", "json", id)
	var pids []int
	if err := json.Unmarshal([]byte(res.Stdout), &pids); err != nil {
		t.Fatalf("ps --format json is not a JSON array of pids: %v\n%s", err, res)
	}
	return pids
}

// TestPs lists the container's processes, as JSON and as ps(1) table.
func TestPs(t *testing.T) {
	t.Parallel()
	r := newRuntime(t)
	b := r.bundle(bundle.Shell(sleeper))
	id := newID(t)
	st := r.runDetached(id, b)
	var pids []int
	// The shell forks its sleep right after starting.
	waitFor(t, 10*time.Second, "two processes in the container", func() bool {
		pids = psJSON(t, r, id)
		return len(pids) >= 2
	})
	if !slices.Contains(pids, st.Pid) {
		t.Fatalf("ps JSON %v lacks the init pid %d", pids, st.Pid)
	}
	for _, p := range pids {
		if !pidAlive(p) {
			t.Errorf("ps lists %d, which is not alive", p)
		}
	}

	res := r.ok("ps", id)
	lines := strings.Split(strings.TrimRight(res.Stdout, "\n"), "\n")
	header := strings.Fields(lines[0])
	col := slices.Index(header, "PID")
	if col < 0 {
		t.Fatalf("ps table has no PID column:\n%s", res)
	}
	var listed []int
	for _, l := range lines[1:] {
		f := strings.Fields(l)
		if len(f) <= col {
			t.Fatalf("short ps line %q", l)
		}
		p, err := strconv.Atoi(f[col])
		if err != nil {
			t.Fatalf("ps line %q: %v", l, err)
		}
		listed = append(listed, p)
	}
	if !slices.Contains(listed, st.Pid) {
		t.Fatalf("ps table lacks init %d:\n%s", st.Pid, res)
	}
	// Only the container's processes: the host's pid 1 is not one.
	if slices.Contains(listed, 1) {
		t.Fatalf("ps table lists host processes:\n%s", res)
	}
}

// TestList shows created and running containers of one --root.
func TestList(t *testing.T) {
	t.Parallel()
	r := newRuntime(t)

	// An empty root: just the header, nothing quiet.
	if res := r.ok("list", "-q"); res.Stdout != "" {
		t.Fatalf("list -q of an empty root:\n%s", res)
	}
	if res := r.ok("list"); strings.Join(strings.Fields(res.Stdout), " ") != "ID PID STATUS BUNDLE CREATED OWNER" {
		t.Fatalf("list of an empty root:\n%s", res)
	}

	b1 := r.bundle(bundle.Shell(sleeper))
	b2 := r.bundle(bundle.Shell(sleeper))
	id1, id2 := newID(t), newID(t)
	r.create(id1, b1)
	st1 := r.state(id1)
	st2 := r.runDetached(id2, b2)
	want := map[string]ctrState{id1: st1, id2: st2}

	res := r.ok("list")
	lines := strings.Split(strings.TrimRight(res.Stdout, "\n"), "\n")
	if got := strings.Join(strings.Fields(lines[0]), " "); got != "ID PID STATUS BUNDLE CREATED OWNER" {
		t.Fatalf("list header %q", lines[0])
	}
	if len(lines) != 3 {
		t.Fatalf("want 2 rows:\n%s", res)
	}
	for _, l := range lines[1:] {
		f := strings.Fields(l)
		if len(f) != 6 {
			t.Fatalf("row %q: want 6 columns", l)
		}
		w, ok := want[f[0]]
		if !ok {
			t.Fatalf("row for unknown id %q", l)
		}
		if f[1] != strconv.Itoa(w.Pid) || f[2] != w.Status || f[3] != w.Bundle || f[5] != "root" {
			t.Errorf("row %q, want pid %d status %s bundle %s owner root", l, w.Pid, w.Status, w.Bundle)
		}
		if _, err := time.Parse(time.RFC3339Nano, f[4]); err != nil {
			t.Errorf("CREATED %q: %v", f[4], err)
		}
	}

	res = r.ok("list", "-q")
	ids := strings.Fields(res.Stdout)
	slices.Sort(ids)
	if wantIDs := []string{id1, id2}; !slices.Equal(ids, func() []string { slices.Sort(wantIDs); return wantIDs }()) {
		t.Fatalf("list -q: %q, want %q", ids, wantIDs)
	}

	res = r.ok("list", "--format", "json")
	var states []ctrState
	if err := json.Unmarshal([]byte(res.Stdout), &states); err != nil {
		t.Fatalf("list --format json: %v\n%s", err, res)
	}
	if len(states) != 2 {
		t.Fatalf("want 2 entries:\n%s", res)
	}
	for _, s := range states {
		w := want[s.ID]
		if s.ID == "" || s.Pid != w.Pid || s.Status != w.Status || s.Bundle != w.Bundle || s.Owner != "root" {
			t.Errorf("list entry %+v, want %+v", s, w)
		}
	}
}

// TestUpdate changes cgroup limits of a running container.
func TestUpdate(t *testing.T) {
	t.Parallel()
	r := newRuntime(t)
	b := r.bundle(bundle.Shell(sleeper))
	id := newID(t)
	st := r.runDetached(id, b)
	pidsMax := filepath.Join(cgroupDirOf(t, st.Pid, "pids"), "pids.max")
	if v := readTrim(t, pidsMax); v == "20" || v == "30" {
		t.Fatalf("baseline pids.max is already %s", v)
	}

	r.ok("update", "--pids-limit", "30", id)
	if v := readTrim(t, pidsMax); v != "30" {
		t.Fatalf("after --pids-limit 30, pids.max = %s", v)
	}

	res := r.runWith(runOpts{Stdin: `{"pids":{"limit":20}}`}, "update", "-r", "-", id)
	if res.Code != 0 {
		t.Fatalf("update -r -:\n%s", res)
	}
	if v := readTrim(t, pidsMax); v != "20" {
		t.Fatalf("after -r - with pids.limit 20, pids.max = %s", v)
	}
	// The runtime's own view (stats) agrees.
	if ev := statsEvent(t, r, id); ev.Data.Pids.Limit != 20 {
		t.Errorf("events --stats pids.limit = %d, want 20", ev.Data.Pids.Limit)
	}

	memDir := cgroupDirOf(t, st.Pid, "memory")
	memFile := filepath.Join(memDir, "memory.limit_in_bytes")
	if _, v2 := procCgroupPath(t, st.Pid, "memory"); v2 {
		memFile = filepath.Join(memDir, "memory.max")
	}
	r.ok("update", "--memory", "64M", id)
	if v := readTrim(t, memFile); v != "67108864" {
		t.Fatalf("after --memory 64M, %s = %s", memFile, v)
	}
	// The limit holds: a fork bomb of 30 stays under 20 pids.
	// (forks past the limit fail; the exit status of the shell does not matter;
	// the sleeps must not hold the exec's stdout, or exec waits for them)
	r.run("exec", id, "sh", "-c", `for i in $(seq 30); do sleep 100 >/dev/null 2>&1 & done`)
	if n := psJSON(t, r, id); len(n) > 20 || len(n) < 10 {
		t.Errorf("%d processes in the container, want the limit 20 to be reached and hold", len(n))
	}
}

type statsEventT struct {
	Type string `json:"type"`
	ID   string `json:"id"`
	Data struct {
		Pids struct {
			Current uint64 `json:"current"`
			Limit   uint64 `json:"limit"`
		} `json:"pids"`
		Memory struct {
			Usage struct {
				Usage uint64 `json:"usage"`
			} `json:"usage"`
		} `json:"memory"`
		CPU json.RawMessage `json:"cpu"`
	} `json:"data"`
}

func statsEvent(t *testing.T, r *rtest, id string) statsEventT {
	t.Helper()
	res := r.ok("events", "--stats", id)
	lines := strings.Split(strings.TrimSpace(res.Stdout), "\n")
	if len(lines) != 1 {
		t.Fatalf("events --stats: want exactly one JSON object:\n%s", res)
	}
	var ev statsEventT
	if err := json.Unmarshal([]byte(lines[0]), &ev); err != nil {
		t.Fatalf("events --stats: %v\n%s", err, res)
	}
	if ev.Type != "stats" || ev.ID != id {
		t.Fatalf("events --stats: type %q id %q, want stats %s", ev.Type, ev.ID, id)
	}
	return ev
}

// TestEvents: --stats prints one stats object; --interval streams them.
func TestEvents(t *testing.T) {
	t.Parallel()
	r := newRuntime(t)
	b := r.bundle(bundle.Shell(sleeper))
	id := newID(t)
	r.runDetached(id, b)

	ev := statsEvent(t, r, id)
	if ev.Data.Pids.Current < 1 || ev.Data.Memory.Usage.Usage == 0 || len(ev.Data.CPU) == 0 {
		t.Fatalf("stats data lacks pids/memory/cpu: %+v", ev)
	}

	p := r.startBG(runOpts{}, "events", "--interval", "1s", id)
	waitFor(t, 8*time.Second, "two stats events at a 1s interval", func() bool {
		return strings.Count(p.stdout(), "\n") >= 2
	})
	p.cancel()
	res, _ := p.waitErrOK(cmdTimeout)
	for _, l := range strings.Split(strings.TrimSpace(res.Stdout), "\n") {
		var e statsEventT
		if err := json.Unmarshal([]byte(l), &e); err != nil || e.Type != "stats" || e.ID != id || e.Data.Pids.Current < 1 {
			t.Errorf("event line %q (%v)", l, err)
		}
	}
}

// TestPreserveFDs: --preserve-fds 1 hands the runtime's fd 3 to the container.
func TestPreserveFDs(t *testing.T) {
	t.Parallel()
	r := newRuntime(t)
	b := r.bundle(bundle.Shell(`cat <&3`))
	f := fdFile(t, "hello-fd3\n")

	id := newID(t)
	r.track(id)
	res := r.runWith(runOpts{Files: []*os.File{f}}, "run", "--preserve-fds", "1", "--bundle", b, id)
	if res.Code != 0 || res.Stdout != "hello-fd3\n" {
		t.Fatalf("the container did not read fd 3:\n%s", res)
	}

	// Without the flag the fd is not leaked into the container.
	f2 := fdFile(t, "hello-fd3\n")
	id2 := newID(t)
	r.track(id2)
	res = r.runWith(runOpts{Files: []*os.File{f2}}, "run", "--bundle", b, id2)
	if res.Code == 0 || strings.Contains(res.Stdout, "hello") {
		t.Fatalf("fd 3 reached the container without --preserve-fds:\n%s", res)
	}
}

func fdFile(t *testing.T, content string) *os.File {
	t.Helper()
	p := filepath.Join(t.TempDir(), "fd")
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	return f
}

// TestListenFDs: systemd socket activation. When LISTEN_PID is the runtime's
// own pid, its LISTEN_FDS fds (from 3) go to the container, which sees
// LISTEN_FDS=n and LISTEN_PID=1 (itself).
func TestListenFDs(t *testing.T) {
	t.Parallel()
	r := newRuntime(t)
	b := r.bundle(bundle.Shell(`echo "fds=$LISTEN_FDS pid=$LISTEN_PID"; cat <&3`))

	wrap := func(listenPid string) []string {
		// exec keeps the shell's pid, so $$ is the runtime's pid.
		return []string{"/bin/sh", "-c", `export LISTEN_PID=` + listenPid + ` LISTEN_FDS=1; exec "$@"`, "sh"}
	}

	id := newID(t)
	r.track(id)
	res := r.runWith(runOpts{Files: []*os.File{fdFile(t, "activated\n")}, Prefix: wrap("$$")}, "run", "--bundle", b, id)
	if res.Code != 0 || res.Stdout != "fds=1 pid=1\nactivated\n" {
		t.Fatalf("socket activation: want LISTEN_FDS=1 LISTEN_PID=1 and fd 3 readable:\n%s", res)
	}

	// LISTEN_PID of another process: the fds are not for the runtime.
	id2 := newID(t)
	r.track(id2)
	res = r.runWith(runOpts{Files: []*os.File{fdFile(t, "activated\n")}, Prefix: wrap("1")}, "run", "--bundle", b, id2)
	if res.Code == 0 || !strings.HasPrefix(res.Stdout, "fds= pid=\n") || strings.Contains(res.Stdout, "activated") {
		t.Fatalf("LISTEN_PID not ours must pass nothing:\n%s", res)
	}
}
