package e2e

import (
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// testShimKilled: the shim of a confined container with an egress filter
// is SIGKILLed (the OOM killer, an operator, a crash). containerd cleans
// up after a dead shim by running the shim binary's delete, which runs
// `clawrun delete --force`: the container's processes, its egress filter,
// the filter's table and clawrun's state must all go, the namespace the
// container joined must take a new filtered container, and nothing must
// have got out meanwhile.
func testShimKilled(t *testing.T, c *ctrd, f *fakeNet) {
	e := &theEnv
	start := time.Now()
	const ns = "clawrun-e2e-shimkill"
	root := filepath.Join(shimRuncRoot, ns)
	must(t, c.ctr("-n", ns, "images", "import", e.image("busybox-oci.tar")))
	resolv := filepath.Join(c.dir, "shimkill-resolv.conf")
	writeFile(t, resolv, "nameserver "+f.Addr()+"\n", 0o644)

	netns := f.ctrNetns(t)
	runAgent := func(id string) {
		t.Helper()
		must(t, c.ctr("-n", ns, "run", "-d", "--runtime", "io.containerd.clawrun.v2",
			"--annotation", "run.clawrun.policy=agent-default", "--annotation", "run.clawrun.egress="+allowedHost+":80",
			"--with-ns", "network:"+netns.NetnsPath(),
			"--mount", "type=bind,src="+resolv+",dst=/etc/resolv.conf,options=rbind:ro",
			busyboxRef, id, "sh", "-c", loopScript))
	}
	remove := func(id string) {
		_ = c.ctr("-n", ns, "task", "rm", "-f", id)
		_ = c.ctr("-n", ns, "containers", "rm", id)
	}

	id := "e2e-shimkill"
	before := shimSockets()
	runAgent(id)
	defer remove(id)
	// A killed shim cannot remove its socket, and containerd leaves it
	// (with runc as well): the test does, once the shim is dead.
	defer removeDeadSockets(newEntries(before, shimSockets()))
	st := stateOf(t, root, id)
	expectStateConfined(t, st, "agent-default", true)
	supervisor := egressSupervisor(t, root, id)
	shim := shimOf(t, id)
	if shim == 0 {
		t.Fatalf("no containerd-shim-clawrun-v2 process for %s", id)
	}
	step(t, start, "agent running, shim and filter found")

	if err := syscall.Kill(shim, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	// containerd notices the dead shim and cleans up with clawrun.
	gone := waitFor(60*time.Second, func() bool {
		return !pidRuns(st.Pid) && !pidRuns(supervisor) && !contains(listIDs(t, root), id)
	})
	if !gone {
		t.Errorf("60 s after its shim was killed: init %d running %v, filter %d running %v, clawrun lists %v",
			st.Pid, pidRuns(st.Pid), supervisor, pidRuns(supervisor), listIDs(t, root))
	}
	if out := run("ip", "netns", "exec", netns.NS, "nft", "list", "tables"); strings.Contains(out.stdout, "clawrun") {
		t.Errorf("the filter's table is left in the namespace after the shim died:\n%s", out.stdout)
	}
	step(t, start, "cleaned up after the dead shim")
	remove(id)

	// The namespace takes a new confined, filtered container.
	id2 := "e2e-shimkill-2"
	runAgent(id2)
	defer remove(id2)
	denied := "denied-shimkill.example"
	r := c.ctr("-n", ns, "task", "exec", "--exec-id", "egress", id2, "sh", "-c", egressScript(denied, f.Addr()))
	expectEgress(t, f, "after a dead shim, a new container", denied, r.stdout+r.stderr)
	remove(id2)
	_ = c.ctr("-n", ns, "images", "rm", busyboxRef)
	_ = os.Remove(root)
	step(t, start, "a new container in the namespace is filtered")
}

// shimOf finds the containerd-shim-clawrun-v2 process serving container id.
func shimOf(t *testing.T, id string) int {
	t.Helper()
	ents, err := os.ReadDir("/proc")
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		data, err := os.ReadFile("/proc/" + e.Name() + "/cmdline")
		if err != nil {
			continue
		}
		args := strings.Split(strings.TrimRight(string(data), "\x00"), "\x00")
		if len(args) == 0 || filepath.Base(args[0]) != "containerd-shim-clawrun-v2" {
			continue
		}
		for i := range len(args) - 1 {
			if args[i] == "-id" && args[i+1] == id {
				return pid
			}
		}
	}
	return 0
}

// egressSupervisor is the pid of the egress filter of container id.
func egressSupervisor(t *testing.T, root, id string) int {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(root, id, "egress.json"))
	if err != nil {
		t.Fatalf("the egress filter's record of %s: %v", id, err)
	}
	const key = `"supervisor_pid":`
	i := strings.Index(string(data), key)
	if i < 0 {
		t.Fatalf("no supervisor_pid in %s", data)
	}
	rest := string(data[i+len(key):])
	n, err := strconv.Atoi(strings.TrimSpace(rest[:strings.IndexAny(rest, ",}")]))
	if err != nil {
		t.Fatalf("supervisor_pid in %s: %v", data, err)
	}
	return n
}

// pidRuns tells whether pid is alive (not a zombie).
func pidRuns(pid int) bool {
	data, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return false
	}
	i := strings.LastIndexByte(string(data), ')')
	return i >= 0 && i+2 < len(data) && data[i+2] != 'Z' && data[i+2] != 'X'
}

// shimSockets lists containerd's shim sockets.
func shimSockets() []string {
	ents, _ := os.ReadDir("/run/containerd/s")
	var out []string
	for _, e := range ents {
		out = append(out, filepath.Join("/run/containerd/s", e.Name()))
	}
	return out
}

func newEntries(before, after []string) []string {
	var out []string
	for _, a := range after {
		if !contains(before, a) {
			out = append(out, a)
		}
	}
	return out
}

// removeDeadSockets removes the sockets nothing listens on any more.
func removeDeadSockets(paths []string) {
	for _, p := range paths {
		if c, err := net.Dial("unix", p); err == nil {
			c.Close()
			continue
		}
		_ = os.Remove(p)
	}
}
