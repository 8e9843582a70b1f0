package integration

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// TestSoak runs create/start/exec/kill/delete cycles of containers under
// agent-default with an egress filter, first one after the other, then
// many at once, and proves that every cycle worked and that nothing is
// left afterwards: no process, filter, mount, network namespace, nft
// table, cgroup, state dir, record or file descriptor, and that the
// filters' memory does not grow with the number of cycles run.
//
// CLAWRUN_SOAK_CYCLES (default 100) is the number of cycles of each
// phase, CLAWRUN_SOAK_PARALLEL (default 50) how many run at once in the
// second; `make soak` runs 1,000.
func TestSoak(t *testing.T) {
	r, fn := egressRuntime(t)
	cycles := envInt(t, "CLAWRUN_SOAK_CYCLES", 100)
	parallel := envInt(t, "CLAWRUN_SOAK_PARALLEL", 50)
	b := fn.egressBundle(r, withPolicy("agent-default"),
		annotate(annEgress, "allowed.test:443"))

	s := &soak{r: r, fn: fn, bundle: b}
	before := s.takeHostCounts(t)

	// Sequential: the filter really decides in the first and last cycle.
	start := time.Now()
	for i := range cycles {
		s.cycle(i == 0 || i == cycles-1)
	}
	seq := time.Since(start)

	// Parallel: the same cycles, `parallel` at a time.
	start = time.Now()
	var wg sync.WaitGroup
	next := make(chan int)
	for range min(parallel, cycles) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range next {
				s.cycle(false)
			}
		}()
	}
	for i := range cycles {
		next <- i
	}
	close(next)
	wg.Wait()
	par := time.Since(start)

	t.Logf("soak: %d sequential cycles in %v (%v per cycle), %d cycles %d at a time in %v; %d failed",
		cycles, seq.Round(time.Millisecond), (seq / time.Duration(cycles)).Round(time.Millisecond),
		cycles, min(parallel, cycles), par.Round(time.Millisecond), len(s.failures))
	for i, f := range s.failures {
		if i == 10 {
			t.Errorf("... and %d more failures", len(s.failures)-10)
			break
		}
		t.Error(f)
	}

	waitFor(t, 15*time.Second, "no filter process left", func() bool { return len(filterProcs(r.root)) == 0 })
	s.checkNothingLeft(t, before, s.takeHostCounts(t))
	s.checkFlat(t)
}

// soak is the state of one soak run, shared by its workers.
type soak struct {
	r      *rtest
	fn     *fakeNet
	bundle string

	mu       sync.Mutex
	failures []string
	ids      []string
	netns    map[netnsID]bool
	rss      []int // the filter worker's RSS (KiB) in each cycle, in order
	fds      []int // and its open files
}

// run runs the runtime without failing the test: a worker goroutine may
// not stop it.
func (s *soak) run(args ...string) (result, error) {
	p, err := s.r.start(runOpts{Timeout: 60 * time.Second}, append(s.fn.globals(), args...)...)
	if err != nil {
		return result{}, err
	}
	return p.waitErrOK(60 * time.Second)
}

func (s *soak) fail(format string, args ...any) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.failures = append(s.failures, fmt.Sprintf(format, args...))
}

// cycle runs one container through its whole life. It reports failures
// instead of stopping the test: it may run on a worker goroutine.
func (s *soak) cycle(checkEgress bool) {
	r, fn := s.r, s.fn
	id := fmt.Sprintf("soak-%d-%d", os.Getpid(), idSeq.Add(1))
	s.mu.Lock()
	s.ids = append(s.ids, id)
	s.mu.Unlock()
	run := func(args ...string) (result, bool) {
		res, err := s.run(args...)
		if err != nil || res.Code != 0 {
			s.fail("%s: %v %s", id, err, res)
			return res, false
		}
		return res, true
	}
	defer func() {
		// Whatever failed below, the container goes.
		if res, err := s.run("delete", "-f", id); err != nil || res.Code != 0 {
			s.fail("%s: delete -f: %v %s", id, err, res)
		}
	}()
	if _, ok := run("create", "--bundle", s.bundle, id); !ok {
		return
	}
	if _, ok := run("start", id); !ok {
		return
	}
	s.recordNetnsAndRSS(id)
	// The floor holds in every cycle: a write to /usr/bin fails.
	res, ok := run("exec", id, "sh", "-c", "echo x > /usr/bin/soak 2>/dev/null && echo WROTE || echo DENIED")
	if !ok {
		return
	}
	if got := strings.TrimSpace(res.Stdout); got != "DENIED" {
		s.fail("%s: a write to /usr/bin: %q, want DENIED", id, got)
	}
	if checkEgress {
		c := &ectr{t: r.t, r: r, fn: fn, id: id, bundle: s.bundle, log: filepath.Join(fn.logDir, id+".egress.jsonl")}
		c.checks(fn.allowedTLS("allowed.test"), fn.deniedSNI("denied.test", fn.ip(hDenied), "denied.test"))
	}
	if _, ok := run("kill", id, "KILL"); !ok {
		return
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		res, _ := s.run("state", id)
		if strings.Contains(res.Stdout, `"status": "stopped"`) || strings.Contains(res.Stdout, `"status":"stopped"`) {
			break
		}
		if time.Now().After(deadline) {
			s.fail("%s: not stopped 10s after SIGKILL: %s", id, res)
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	if _, ok := run("delete", id); !ok {
		return
	}
}

// recordNetnsAndRSS notes the container's network namespace (to check that
// nothing holds it afterwards) and its filter worker's memory.
func (s *soak) recordNetnsAndRSS(id string) {
	dir := filepath.Join(s.r.root, id)
	data, err := os.ReadFile(filepath.Join(dir, "state.json"))
	if err != nil {
		s.fail("%s: %v", id, err)
		return
	}
	pid, err := initPid(data)
	if err != nil {
		s.fail("%s: %v", id, err)
		return
	}
	ns, err := netnsOf(pid)
	if err != nil {
		s.fail("%s: its network namespace: %v", id, err)
		return
	}
	rss, fds := 0, 0
	for _, p := range filterProcs(dir) {
		if cmdlineHas(p, "__egress-worker") {
			rss = rssKiB(p)
			if ents, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", p)); err == nil {
				fds = len(ents)
			}
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.netns == nil {
		s.netns = map[netnsID]bool{}
	}
	s.netns[ns] = true
	if rss > 0 {
		s.rss = append(s.rss, rss)
		s.fds = append(s.fds, fds)
	}
}

func (s *soak) checkNothingLeft(t *testing.T, before, after hostCounts) {
	t.Helper()
	// Namespace inodes are reused at once, by other programs' namespaces
	// too: only the soak's own processes (in its rootfs, or clawrun's and
	// its filters' with its --root) count.
	var held []string
	for _, h := range netnsHeld(s.netns) {
		var pid int
		if _, err := fmt.Sscanf(h, "process %d ", &pid); err == nil && s.ours(pid) {
			held = append(held, h)
		}
	}
	if len(held) > 0 {
		t.Errorf("network namespaces of the soak's containers are still held:\n  %s", strings.Join(held, "\n  "))
	}
	if pids := procsInRootfs(t, s.bundle); len(pids) > 0 {
		t.Errorf("processes left in the containers' rootfs: %v", pids)
	}
	ents, err := os.ReadDir(s.r.root)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range ents {
		t.Errorf("left under --root: %s", e.Name())
	}
	for _, id := range s.ids {
		for _, ctrl := range []string{"memory", "pids", "cpu"} {
			if dir := defaultCgroupDir(t, ctrl, id); exists(dir) {
				t.Errorf("%s: cgroup %s left", id, dir)
			}
		}
	}
	if len(after.mounts) > 0 {
		t.Errorf("mounts of the soak's containers left:\n  %s", strings.Join(after.mounts, "\n  "))
	}
	if len(after.files) > 0 {
		t.Errorf("open files of the soak's containers left:\n  %s", strings.Join(after.files, "\n  "))
	}
	if after.nftTables != before.nftTables {
		t.Errorf("the host's nftables tables changed: %q -> %q", before.nftTables, after.nftTables)
	}
	// Fewer is not a leak: what earlier tests left open (a server's
	// connection, a pipe) may close while the soak runs.
	if after.selfFDs > before.selfFDs {
		t.Errorf("the test's own open files grew: %d before, %d after", before.selfFDs, after.selfFDs)
	}
}

// checkFlat compares what a leak per cycle would grow: a filter started
// after many cycles must not be bigger or hold more files than the first.
func (s *soak) checkFlat(t *testing.T) {
	t.Helper()
	n := len(s.rss)
	if n < 10 {
		return
	}
	head, tail := n/10+1, n-n/10-1
	rss0, rss1 := median(s.rss[:head]), median(s.rss[tail:])
	fds0, fds1 := median(s.fds[:head]), median(s.fds[tail:])
	t.Logf("filter worker: RSS %d KiB in the first cycles, %d KiB in the last; open files %d -> %d (%d samples)",
		rss0, rss1, fds0, fds1, n)
	if rss1 > rss0+rss0/2 {
		t.Errorf("a filter worker's memory grows with the cycles run before it: %d KiB -> %d KiB", rss0, rss1)
	}
	if fds1 > fds0+2 {
		t.Errorf("a filter worker's open files grow with the cycles run before it: %d -> %d", fds0, fds1)
	}
}

// ours tells whether pid belongs to the soak: it runs in the soak's
// rootfs, or is clawrun or a filter working under the soak's --root.
func (s *soak) ours(pid int) bool {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	if err == nil && strings.Contains(string(data), s.r.root) {
		return true
	}
	var root, want unix.Stat_t
	return unix.Stat(fmt.Sprintf("/proc/%d/root", pid), &root) == nil &&
		unix.Stat(filepath.Join(s.bundle, "rootfs"), &want) == nil && root.Dev == want.Dev && root.Ino == want.Ino
}

// hostCounts is what the soak's containers hold on the host: mounts and
// open files that name their state, bundle or logs, the nftables tables
// of the host's namespace, the test's own open files.
type hostCounts struct {
	mounts    []string
	files     []string
	selfFDs   int
	nftTables string
}

func (s *soak) takeHostCounts(t *testing.T) hostCounts {
	t.Helper()
	var c hostCounts
	mine := func(text string) bool {
		return strings.Contains(text, s.r.root) || strings.Contains(text, s.bundle) ||
			strings.Contains(text, s.fn.logDir) || strings.Contains(text, "soak-"+strconv.Itoa(os.Getpid())+"-")
	}
	if data, err := os.ReadFile("/proc/self/mountinfo"); err == nil {
		for line := range strings.SplitSeq(string(data), "\n") {
			if mine(line) {
				c.mounts = append(c.mounts, line)
			}
		}
	}
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		fds, _ := os.ReadDir("/proc/" + e.Name() + "/fd")
		for _, fd := range fds {
			link, err := os.Readlink("/proc/" + e.Name() + "/fd/" + fd.Name())
			if err == nil && mine(link) {
				c.files = append(c.files, fmt.Sprintf("process %s fd %s -> %s", e.Name(), fd.Name(), link))
			}
		}
	}
	if fds, err := os.ReadDir("/proc/self/fd"); err == nil {
		c.selfFDs = len(fds)
	}
	out, err := runCmd(cmdTimeout, "nft", "list", "tables")
	if err != nil {
		t.Fatalf("nft list tables: %v", err)
	}
	c.nftTables = out
	return c
}

func envInt(t *testing.T, name string, def int) int {
	t.Helper()
	v := os.Getenv(name)
	if v == "" {
		return def
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 1 {
		t.Fatalf("%s=%q: want a positive number", name, v)
	}
	return n
}

func initPid(stateJSON []byte) (int, error) {
	const key = `"init_process_pid":`
	i := strings.Index(string(stateJSON), key)
	if i < 0 {
		return 0, errors.New("state.json has no init_process_pid")
	}
	rest := string(stateJSON[i+len(key):])
	end := strings.IndexAny(rest, ",}")
	if end < 0 {
		return 0, errors.New("state.json: bad init_process_pid")
	}
	return strconv.Atoi(strings.TrimSpace(rest[:end]))
}

func cmdlineHas(pid int, arg string) bool {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	return err == nil && slices.Contains(strings.Split(string(data), "\x00"), arg)
}

// rssKiB is a process's resident set (VmRSS), 0 when unknown.
func rssKiB(pid int) int {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	for line := range strings.SplitSeq(string(data), "\n") {
		if rest, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			n, _ := strconv.Atoi(strings.TrimSuffix(strings.TrimSpace(rest), " kB"))
			return n
		}
	}
	return 0
}

func median(v []int) int {
	s := slices.Clone(v)
	slices.Sort(s)
	return s[len(s)/2]
}

func exists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}
