package integration

import (
	"fmt"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/clawrun/clawrun/test/bundle"
)

// TestPolicyState: the "clawrun" object of `state` tells what is really
// enforced: pending between create and start, then the launcher's report.
// It also covers CAP_NET_RAW, which a policy drops from every set.
func TestPolicyState(t *testing.T) {
	t.Parallel()
	policyRuntime(t)
	const netRaw = uint64(1) << unix.CAP_NET_RAW

	t.Run("agent-default", func(t *testing.T) {
		t.Parallel()
		r := policyRuntime(t)
		b := r.probeBundle(withPolicy("agent-default"), addCaps("CAP_NET_RAW"), bundle.Shell(sleeper))
		id := newID(t)
		r.create(id, b)

		st := r.fullState(id)
		c := st.Clawrun
		if st.Status != "created" || c.Policy != "agent-default" || !strings.HasPrefix(c.Digest, "sha256:") || len(c.Digest) != len("sha256:")+64 {
			t.Errorf("state after create: status %s, clawrun %s", st.Status, c)
		}
		if c.Landlock.Status != "pending" || c.Landlock.Compatibility != "best_effort" || c.Seccomp.Profile != "agent" || c.Seccomp.Loaded {
			t.Errorf("before start: want landlock pending (best_effort), seccomp agent not loaded yet; got %s", c)
		}
		if !c.Process.NoNewPrivileges || !slices.Equal(c.Process.DroppedCapabilities, []string{"CAP_NET_RAW"}) || c.Egress != "off" {
			t.Errorf("want no_new_privileges, CAP_NET_RAW dropped, egress off; got %s", c)
		}
		digest := c.Digest

		r.ok("start", id)
		st = r.fullState(id)
		c = st.Clawrun
		abi := hostLandlockABI()
		t.Logf("landlock ABI %d, layers %+v, skipped %v", c.Landlock.ABI, c.Landlock.Layers, c.skippedPaths())
		if st.Status != "running" || c.Landlock.Status != "enforced" || c.Landlock.ABI != abi || abi < 6 {
			t.Errorf("after start: want running, landlock enforced with the host's ABI %d (>= 6 for the scopes); got %s %s", abi, st.Status, c)
		}
		if !c.Seccomp.Loaded || c.Seccomp.Profile != "agent" || c.Digest != digest {
			t.Errorf("after start: want the agent profile loaded and the same digest; got %s", c)
		}
		if len(c.Landlock.Layers) != 1 || c.Landlock.Layers[0].Source != "agent-default" || c.Landlock.Layers[0].Rules == 0 || len(c.Landlock.Layers[0].Missing) > 0 {
			t.Errorf("want one complete agent-default layer; got %s", c)
		}
		// busybox has no /lib64: best_effort skips it, and says so.
		if !slices.Contains(c.skippedPaths(), "/lib64") {
			t.Errorf("landlock.skipped %v lacks /lib64", c.skippedPaths())
		}

		// CAP_NET_RAW is gone from the init and from exec'd processes.
		res := r.ok("exec", id, "sh", "-c", "cat /proc/self/status; echo ==; cat /proc/1/status")
		self, init, _ := strings.Cut(res.Stdout, "==")
		if capEff(t, self)&netRaw != 0 || capEff(t, init)&netRaw != 0 {
			t.Errorf("CAP_NET_RAW is effective under the policy:\n%s", res)
		}
		if capEff(t, init)&(1<<unix.CAP_KILL) == 0 {
			t.Errorf("the spec's other capabilities went too (no CAP_KILL):\n%s", res)
		}
	})

	t.Run("no-policy", func(t *testing.T) {
		t.Parallel()
		r := policyRuntime(t)
		b := r.probeBundle(addCaps("CAP_NET_RAW"), bundle.Args("cat", "/proc/self/status"))
		id := newID(t)
		res := r.create(id, b)
		if st := r.ok("state", id); strings.Contains(st.Stdout, `"clawrun"`) {
			t.Errorf("state of a container without a policy has a clawrun object:\n%s", st)
		}
		r.ok("start", id)
		r.waitStatus(id, "stopped")
		if capEff(t, readFile(res.StdoutPath))&netRaw == 0 {
			t.Errorf("baseline: CAP_NET_RAW is not effective without a policy: %q", readFile(res.StdoutPath))
		}
	})
}

// TestPolicyCapabilities: a confined container may not hold a capability
// that would let it undo the policy. The refusal names the capability and
// leaves nothing behind.
func TestPolicyCapabilities(t *testing.T) {
	t.Parallel()
	r := policyRuntime(t)
	b := r.probeBundle(withPolicy("agent-default"), bundle.Args("probe", "true"))
	orig := bundle.Load(t, b)
	// One bundle, edited per case: sequential.
	for _, capName := range []string{"CAP_SYS_ADMIN", "CAP_SYS_PTRACE", "CAP_SYS_MODULE", "CAP_DAC_READ_SEARCH", "CAP_NET_ADMIN", "CAP_BPF", "CAP_PERFMON"} {
		t.Run(capName, func(t *testing.T) {
			bundle.Save(t, b, orig)
			bundle.Edit(t, b, func(s *specs.Spec) {
				// Only in the bounding set: any set counts.
				s.Process.Capabilities.Bounding = append(s.Process.Capabilities.Bounding, capName)
			})
			for _, cmd := range []string{"create", "run"} {
				id := newID(t)
				r.track(id)
				res := r.run(cmd, "--bundle", b, id)
				assertFailure(t, res, capName)
				if !strings.Contains(res.Stderr, "policy") {
					t.Errorf("the error does not say that the policy refuses it:\n%s", res)
				}
				r.assertGone(id, b)
			}
		})
	}
	// Without the policy the same spec is fine: the refusal is the policy's.
	t.Run("no-policy", func(t *testing.T) {
		bundle.Save(t, b, orig)
		bundle.Edit(t, b, func(s *specs.Spec) {
			delete(s.Annotations, annPolicy)
			s.Process.Capabilities.Bounding = append(s.Process.Capabilities.Bounding, "CAP_SYS_ADMIN")
		})
		if res := r.runOnce(b); res.Stdout != "OK\n" {
			t.Errorf("without a policy: %s", res)
		}
	})
}

// TestPolicyInterruptedStart: `start` killed (SIGKILL) at any point, from
// before it lets the container go to after the agent runs, leaves `state`
// true. Once the agent runs, state and list say what the launcher
// enforced, whoever was alive to record it; until then no agent runs, and
// a new start still starts it, confined.
func TestPolicyInterruptedStart(t *testing.T) {
	t.Parallel()
	r := policyRuntime(t)
	b := r.probeBundle(withPolicy("agent-default"), bundle.Shell(sleeper))

	// How long an undisturbed start takes here, to spread the kills over it.
	var took []time.Duration
	for range 3 {
		id := newID(t)
		r.create(id, b)
		begin := time.Now()
		r.ok("start", id)
		took = append(took, time.Since(begin))
		r.ok("delete", "-f", id)
	}
	slices.Sort(took)
	t.Logf("start takes %v (runs %v)", took[1], took)

	const kills = 16
	seen := map[initFate]int{}
	for i := range kills {
		delay := time.Duration(float64(took[1]) * 1.3 * float64(i) / kills)
		id := newID(t)
		out := r.create(id, b).StdoutPath
		pid := r.state(id).Pid
		initExe, err := os.Readlink(fmt.Sprintf("/proc/%d/exe", pid))
		if err != nil {
			t.Fatal(err)
		}
		p, err := r.start(runOpts{}, "start", id)
		if err != nil {
			t.Fatal(err)
		}
		time.Sleep(delay)
		_ = p.cmd.Process.Kill()
		<-p.done
		p.cancel()

		fate := settledFate(t, pid, initExe)
		seen[fate]++
		c := r.fullState(id).Clawrun
		switch fate {
		case agentRuns:
			if c.Landlock.Status != "enforced" || !c.Seccomp.Loaded || c.Landlock.ABI != hostLandlockABI() {
				t.Errorf("start killed after %v: the agent runs but state says %s", delay, c)
			}
			if row := listRow(t, r, id); !strings.Contains(row, "landlock:enforced") {
				t.Errorf("start killed after %v: the agent runs but list says %q", delay, row)
			}
		case waitsForStart:
			if c.Landlock.Status != "pending" || c.Seccomp.Loaded || strings.Contains(readFile(out), "started") {
				t.Errorf("start killed after %v: the init waits for start, but state says %s and the agent printed %q", delay, c, readFile(out))
			}
			r.ok("start", id)
			if c := r.fullState(id).Clawrun; c.Landlock.Status != "enforced" || !c.Seccomp.Loaded {
				t.Errorf("start after an interrupted start: state says %s", c)
			}
		case initGone:
			if strings.Contains(readFile(out), "started") {
				t.Errorf("start killed after %v: the init is gone, but the agent ran", delay)
			}
		}
		r.ok("delete", "-f", id)
	}
	t.Logf("outcomes over %d kills: %d agent running, %d init waiting for start, %d init gone",
		kills, seen[agentRuns], seen[waitsForStart], seen[initGone])
}

// initFate is where a container's init ends up once nothing drives it.
type initFate int

const (
	agentRuns     initFate = iota // it exec'd the container's command
	waitsForStart                 // blocked on the exec fifo until a start opens it
	initGone                      // it exited
)

// settledFate waits until the init of a created container whose start
// was interrupted is in a state it cannot leave by itself.
func settledFate(t *testing.T, pid int, initExe string) initFate {
	t.Helper()
	var fate initFate
	waitFor(t, 10*time.Second, fmt.Sprintf("init %d to run the agent, wait for start or exit", pid), func() bool {
		exe, err := os.Readlink(fmt.Sprintf("/proc/%d/exe", pid))
		switch {
		case err != nil || !pidAlive(pid):
			fate = initGone
		case exe != initExe:
			fate = agentRuns
		case strings.TrimSpace(readFile(fmt.Sprintf("/proc/%d/wchan", pid))) == "wait_for_partner":
			// Opening the exec fifo for writing, with no reader.
			fate = waitsForStart
		default:
			return false
		}
		return true
	})
	return fate
}

// listRow is the `list` table row of container id.
func listRow(t *testing.T, r *rtest, id string) string {
	t.Helper()
	for line := range strings.SplitSeq(r.ok("list").Stdout, "\n") {
		if f := strings.Fields(line); len(f) > 0 && f[0] == id {
			return line
		}
	}
	t.Fatalf("list has no row for %s", id)
	return ""
}
