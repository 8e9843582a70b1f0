// Command burstbench measures how long a runtime takes to start many
// long-running containers a few at a time, as a node does when a batch of
// agent sandboxes lands on it, and prints a markdown table.
//
// Usage:
//
//	burstbench -bundle DIR -workdir DIR -baseline NAME [flags] 'name|command prefix[|target]'...
//
// A round starts -count containers of the bundle with each row, -parallel
// at a time (`PREFIX --root R run -d --bundle B ID`, which returns once the
// container runs: for clawrun, once its egress filter is up), then deletes
// them all (`delete --force`), untimed for the target. The rows take turns
// in an order shuffled per round, so the teardown a burst leaves to the
// kernel lands on every row alike. A row's target is its median burst time
// at most that many times the baseline's, judged on the ratio's confidence
// interval (PASS, within noise, FAIL).
package main

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	goruntime "runtime"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/clawrun/clawrun/test/bench/stats"
)

type row struct {
	*stats.Runtime
	version string
	start   []time.Duration // wall time of each round's burst of starts
	cpu     []time.Duration // machine CPU used during it (every process and the kernel)
	remove  []time.Duration // wall time of deleting them again
}

type options struct {
	bundle, workdir, baseline, out string
	count, parallel                int
	rounds, warmup                 int
	settle                         time.Duration
	seed                           uint64
}

func main() {
	var o options
	flag.StringVar(&o.bundle, "bundle", "", "OCI bundle whose process keeps running (required)")
	flag.StringVar(&o.workdir, "workdir", "", "scratch dir for the per-row --root dirs and logs (required)")
	flag.StringVar(&o.baseline, "baseline", "", "row the ratios are computed against (required)")
	flag.StringVar(&o.out, "out", "", "also write the table to this file")
	flag.IntVar(&o.count, "count", 100, "containers per burst")
	flag.IntVar(&o.parallel, "parallel", 8, "starts (and deletes) at a time")
	flag.IntVar(&o.rounds, "rounds", 5, "measured rounds (a burst per row each)")
	flag.IntVar(&o.warmup, "warmup", 1, "unmeasured rounds first")
	flag.DurationVar(&o.settle, "settle", 2*time.Second, "idle time before each burst, untimed")
	flag.Uint64Var(&o.seed, "seed", 0, "seed of the per-round shuffle (0: from the clock)")
	flag.Parse()
	if o.bundle == "" || o.workdir == "" || o.baseline == "" || flag.NArg() == 0 {
		fatalf("usage: burstbench -bundle DIR -workdir DIR -baseline NAME [flags] 'name|command prefix[|target]'...")
	}
	if o.count < 1 || o.parallel < 1 || o.rounds < 1 || o.warmup < 0 {
		fatalf("-count, -parallel and -rounds must be >= 1, -warmup >= 0")
	}
	if o.seed == 0 {
		o.seed = uint64(time.Now().UnixNano())
	}
	rows, err := stats.ParseRows(flag.Args(), o.workdir, func(rt *stats.Runtime) *row { return &row{Runtime: rt} })
	if err != nil {
		fatalf("%v", err)
	}
	if stats.FindRow(rows, o.baseline) == nil {
		fatalf("-baseline %q is not one of the rows", o.baseline)
	}
	if _, ok := stats.MachineCPU(); !ok {
		fatalf("no cpuacct.usage in /sys/fs/cgroup: the machine's CPU time cannot be read")
	}
	load := stats.LoadAvg()

	rng := rand.New(rand.NewPCG(o.seed, 0))
	order := slices.Clone(rows)
	started := time.Now()
	for round := range o.warmup + o.rounds {
		rng.Shuffle(len(order), func(i, j int) { order[i], order[j] = order[j], order[i] })
		for _, r := range order {
			time.Sleep(o.settle)
			ids := make([]string, o.count)
			for i := range ids {
				ids[i] = fmt.Sprintf("burst-%d-%d-%d", os.Getpid(), round, i)
			}
			cpu0, _ := stats.MachineCPU()
			t0 := time.Now()
			startErr := r.each(ids, o.parallel, func(id string) []string { return []string{"run", "-d", "--bundle", o.bundle, id} })
			wall := time.Since(t0)
			cpu1, _ := stats.MachineCPU()
			if startErr == nil {
				startErr = r.allRunning(ids)
			}
			t1 := time.Now()
			delErr := r.each(ids, o.parallel, func(id string) []string { return []string{"delete", "--force", id} })
			removed := time.Since(t1)
			if err := errors.Join(startErr, delErr); err != nil {
				fatalf("round %d, %s: %v", round+1, r.Name, err)
			}
			if round >= o.warmup {
				r.start = append(r.start, wall)
				r.cpu = append(r.cpu, cpu1-cpu0)
				r.remove = append(r.remove, removed)
			}
			fmt.Fprintf(os.Stderr, "burstbench: round %d/%d (%s) %s: %d started in %s, deleted in %s\n",
				round+1, o.warmup+o.rounds, map[bool]string{true: "warm-up", false: "measured"}[round < o.warmup],
				r.Name, o.count, wall.Round(time.Millisecond), removed.Round(time.Millisecond))
		}
	}
	for _, r := range rows {
		r.version = r.Version()
	}
	table := render(rows, &o, load, time.Since(started))
	fmt.Print(table)
	if o.out != "" {
		if err := os.WriteFile(o.out, []byte(table), 0o644); err != nil {
			fatalf("%v", err)
		}
	}
}

// each runs `PREFIX --root R ARGS(id)` for every id, parallel at a time,
// and returns the first failure with the runtime's output.
func (r *row) each(ids []string, parallel int, args func(id string) []string) error {
	next := make(chan string)
	var (
		mu    sync.Mutex
		first error
		wg    sync.WaitGroup
	)
	for range parallel {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for id := range next {
				if err := r.run(args(id)...); err != nil {
					mu.Lock()
					if first == nil {
						first = err
					}
					mu.Unlock()
				}
			}
		}()
	}
	for _, id := range ids {
		next <- id
	}
	close(next)
	wg.Wait()
	return first
}

// run runs one command of the row. Its output goes to a file, not a pipe: a
// detached container keeps its stdio open, and `run -d` would never be seen
// to finish by a reader waiting for EOF.
func (r *row) run(args ...string) error {
	log, err := os.CreateTemp(filepath.Dir(r.Root), "out-*.log") // beside the root, not in it
	if err != nil {
		return err
	}
	defer os.Remove(log.Name())
	defer log.Close()
	cmd := r.Command(args...)
	cmd.Stdout, cmd.Stderr = log, log
	if err := cmd.Run(); err != nil {
		out, _ := os.ReadFile(log.Name())
		return fmt.Errorf("%s: %v: %s", strings.Join(cmd.Args, " "), err, strings.TrimSpace(string(out)))
	}
	return nil
}

// allRunning checks that every container of the burst is running: a start
// that returned early, or a container that died, is a failed run, not a
// fast one.
func (r *row) allRunning(ids []string) error {
	out, err := r.Command("list", "--format", "json").Output()
	if err != nil {
		return fmt.Errorf("list: %v", err)
	}
	var list []struct{ ID, Status string }
	if err := json.Unmarshal(out, &list); err != nil {
		return fmt.Errorf("list: %v", err)
	}
	running := 0
	for _, c := range list {
		if c.Status == "running" && slices.Contains(ids, c.ID) {
			running++
		}
	}
	if running != len(ids) {
		return fmt.Errorf("%d of %d containers running after the burst: %s", running, len(ids), out)
	}
	return nil
}

func render(rows []*row, o *options, load string, took time.Duration) string {
	base := stats.FindRow(rows, o.baseline)
	rng := rand.New(rand.NewPCG(o.seed, 1))
	var sb strings.Builder
	w := func(format string, a ...any) { fmt.Fprintf(&sb, format, a...) }
	w("#### A burst of sandboxes\n\n")
	w("| %d containers started, %d at a time | median s | min–max s | per container ms | machine CPU s | vs %s (95%% CI) | target | verdict | then deleted, median s |\n",
		o.count, o.parallel, base.Name)
	w("| --- | --: | --: | --: | --: | --: | --: | --- | --: |\n")
	for _, r := range rows {
		s := slices.Sorted(slices.Values(r.start))
		med := stats.Median(r.start)
		ratio, target, verdict := "—", "—", "—"
		if r != base {
			lo, hi := stats.RatioCI(r.start, base.start, 2000, rng)
			ratio = fmt.Sprintf("%.2f (%.2f … %.2f)", float64(med)/float64(stats.Median(base.start)), lo, hi)
			if r.Target > 0 {
				target = fmt.Sprintf("≤ %.2f", r.Target)
				verdict = stats.Verdict(lo, hi, r.Target, true)
			}
		}
		w("| %s | %.2f | %.2f–%.2f | %.1f | %.2f | %s | %s | %s | %.2f |\n", r.Name, med.Seconds(),
			s[0].Seconds(), s[len(s)-1].Seconds(), float64(med.Milliseconds())/float64(o.count),
			stats.Median(r.cpu).Seconds(), ratio, target, verdict, stats.Median(r.remove).Seconds())
	}
	w("\nA burst: %d long-running containers (busybox `sleep`) of one bundle started with `RUNTIME --root R run -d --bundle B ID`, "+
		"%d at a time; it ends when the last `run -d` returns (clawrun's returns once the container's egress filter is up), "+
		"and every container is then checked running. They are then deleted (`delete --force`, %d at a time; not part of the target). "+
		"%d warm-up + %d measured rounds, each row once per round in an order shuffled per round (seed %d), %s idle before each burst. "+
		"Ratios are of medians, their CIs paired bootstraps over rounds. "+
		"Machine CPU: all CPU time the machine used during the burst (cpuacct of the root cgroup: every process, the filters and the kernel included).\n\n",
		o.count, o.parallel, o.parallel, o.warmup, o.rounds, o.seed, o.settle)
	w("Machine: %s, %d CPUs, kernel %s, %s; load average %s before, %s after; the bursts took %s.\n\n",
		stats.CPUModel(), goruntime.NumCPU(), stats.Kernel(), time.Now().UTC().Format("2006-01-02 15:04 MST"),
		load, stats.LoadAvg(), took.Round(time.Second))
	for _, r := range rows {
		w("- %s: `%s` (%s)\n", r.Name, strings.Join(r.Argv, " "), r.version)
	}
	return sb.String()
}

func fatalf(format string, a ...any) {
	fmt.Fprintf(os.Stderr, "\nburstbench: "+format+"\n", a...)
	os.Exit(1)
}
