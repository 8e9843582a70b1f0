// Command startbench measures the wall time of `RUNTIME --root R run
// --bundle B ID` for several OCI runtimes and prints a markdown table.
//
// It exists (instead of a bash loop around `date +%s%N`) because forking
// date costs about a millisecond per sample, the same order as the
// differences we look for. Here the clock is read right around fork/exec
// and wait, with Go's monotonic clock.
//
// Usage:
//
//	startbench -bundle DIR -workdir DIR [flags] 'name|command prefix'...
//
// Each row is a display name and a command prefix split on blanks (no
// quoting); `--root R run --bundle B ID` is appended to it, so a row can
// carry global flags, e.g. 'clawrun+agent|/path/clawrun --policy agent-default'.
// A third field is the row's target: its median may be at most that many
// times the baseline's, judged on the ratio's confidence interval (PASS,
// within noise, FAIL); a row without one is not judged.
package main

import (
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	goruntime "runtime"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/clawrun/clawrun/test/bench/stats"
)

// row is one runtime configuration under test and its samples. Sample i of
// every row comes from round i, which is what pairs them for the ratio's
// confidence interval.
type row struct {
	*stats.Runtime
	version string // first line of `argv --version`, for the footnotes
	wall    []time.Duration
	cpu     []time.Duration // user+sys of the runtime and its reaped children
}

// diff is a difference of two rows the table's notes report with its
// interval, e.g. what one feature adds to a start.
type diff struct{ label, a, b string }

type options struct {
	bundle, workdir string
	runs, warmup    int
	baseline, ref   string
	out, raw        string
	fixed           bool
	seed            uint64
	gap             time.Duration
	notes           []string
	diffs           []diff
}

func main() {
	var o options
	flag.StringVar(&o.bundle, "bundle", "", "OCI bundle to run (required)")
	flag.StringVar(&o.workdir, "workdir", "", "scratch dir for the per-runtime --root dirs (required)")
	flag.IntVar(&o.runs, "runs", 40, "measured runs per row")
	flag.IntVar(&o.warmup, "warmup", 3, "unmeasured warm-up runs per row")
	flag.StringVar(&o.baseline, "baseline", "", "row the target ratio is computed against")
	flag.StringVar(&o.ref, "ref", "", "optional second reference row (informational ratio)")
	flag.StringVar(&o.out, "out", "", "also write the table to this file")
	flag.StringVar(&o.raw, "raw", "", "also write every sample to this file (CSV)")
	flag.BoolVar(&o.fixed, "fixed-order", false, "run the rows in the given order every round (default: shuffled per round)")
	flag.Uint64Var(&o.seed, "seed", 0, "seed for the per-round shuffle (0: from the clock)")
	flag.DurationVar(&o.gap, "gap", 0, "idle time before each run, untimed")
	flag.Func("note", "extra footnote line (repeatable)", func(s string) error { o.notes = append(o.notes, s); return nil })
	flag.Func("diff", "'label|row A|row B': report median(A) - median(B) (repeatable)", func(s string) error {
		f := strings.Split(s, "|")
		if len(f) != 3 {
			return fmt.Errorf("want 'label|row A|row B', got %q", s)
		}
		o.diffs = append(o.diffs, diff{strings.TrimSpace(f[0]), strings.TrimSpace(f[1]), strings.TrimSpace(f[2])})
		return nil
	})
	flag.Parse()

	if o.bundle == "" || o.workdir == "" || flag.NArg() == 0 {
		fatalf("usage: startbench -bundle DIR -workdir DIR [flags] 'name|command prefix'...")
	}
	if o.runs < 1 || o.warmup < 0 {
		fatalf("-runs must be >= 1 and -warmup >= 0")
	}
	if o.seed == 0 {
		o.seed = uint64(time.Now().UnixNano())
	}
	rows, err := stats.ParseRows(flag.Args(), o.workdir, func(rt *stats.Runtime) *row { return &row{Runtime: rt} })
	if err != nil {
		fatalf("%v", err)
	}
	names := []string{o.baseline, o.ref}
	for _, d := range o.diffs {
		names = append(names, d.a, d.b)
	}
	for _, name := range names {
		if name != "" && stats.FindRow(rows, name) == nil {
			fatalf("-baseline, -ref or -diff: %q is not one of the rows", name)
		}
	}
	load := stats.LoadAvg() // before we add our own load

	b := &bench{bundle: o.bundle, prefix: fmt.Sprintf("bench-%d", os.Getpid()), gap: o.gap}
	if b.log, err = os.CreateTemp(o.workdir, "run-*.log"); err != nil {
		fatalf("%v", err)
	}
	defer b.log.Close()

	// Every round runs each row once, so slow drifts of the machine (other
	// jobs, thermal and frequency changes, page cache) hit all rows alike.
	// Shuffling the order per round keeps any "runs right after X" effect
	// (e.g. the previous container's asynchronous cgroup or mount teardown)
	// from landing on one row more than on another; a fixed or rotated
	// order does not balance who precedes whom.
	rng := rand.New(rand.NewPCG(o.seed, 0))
	order := slices.Clone(rows)
	nextRound := func() []*row {
		if !o.fixed {
			rng.Shuffle(len(order), func(i, j int) { order[i], order[j] = order[j], order[i] })
		}
		return order
	}

	fmt.Fprintf(os.Stderr, "startbench: %d rows, %d warm-up + %d measured rounds\n", len(rows), o.warmup, o.runs)
	// Warm-up: page cache, binary loading, kernel caches. Results discarded.
	for i := 0; i < o.warmup; i++ {
		for _, r := range nextRound() {
			if _, _, err := b.runOnce(r); err != nil {
				fatalf("warm-up: %v", err)
			}
		}
	}

	progress := isTerminal(os.Stderr)
	var csv strings.Builder
	csv.WriteString("round,position,row,wall_ns,cpu_ns\n")
	busy0, busyOK := stats.MachineCPU()
	self0 := selfCPU()
	start := time.Now()
	for i := 0; i < o.runs; i++ {
		for pos, r := range nextRound() {
			wall, cpu, err := b.runOnce(r)
			if err != nil {
				fatalf("run %d/%d: %v", i+1, o.runs, err)
			}
			r.wall = append(r.wall, wall)
			r.cpu = append(r.cpu, cpu)
			fmt.Fprintf(&csv, "%d,%d,%q,%d,%d\n", i, pos, r.Name, wall.Nanoseconds(), cpu.Nanoseconds())
		}
		if progress {
			fmt.Fprintf(os.Stderr, "\rstartbench: round %d/%d", i+1, o.runs)
		}
	}
	elapsed := time.Since(start)
	// How busy the machine was apart from us: all CPU time used in the
	// interval minus what the runs and this driver used. Other jobs widen
	// the spread a lot (a runnable runtime waits for a CPU), so the table
	// says whether there were any.
	busy1, _ := stats.MachineCPU()
	others := busy1 - busy0 - (selfCPU() - self0)
	for _, r := range rows {
		for _, c := range r.cpu {
			others -= c
		}
	}
	if progress {
		fmt.Fprint(os.Stderr, "\r")
	}
	fmt.Fprintf(os.Stderr, "startbench: %d rounds x %d rows in %s\n",
		o.runs, len(rows), elapsed.Round(time.Millisecond))

	if o.raw != "" {
		if err := os.WriteFile(o.raw, []byte(csv.String()), 0o644); err != nil {
			fatalf("%v", err)
		}
	}
	for _, r := range rows {
		r.version = r.Version()
	}
	loadNote := fmt.Sprintf("Machine load: load average %s before the bench", load)
	if busyOK {
		loadNote += fmt.Sprintf("; CPU used by others during the measured runs: %.2f of %d CPUs "+
			"(other processes, and kernel work the exiting containers leave behind)",
			max(0, float64(others)/float64(elapsed)), goruntime.NumCPU())
	}
	o.notes = append(o.notes, loadNote+".")
	table := render(rows, &o)
	fmt.Print(table)
	if o.out != "" {
		if err := os.WriteFile(o.out, []byte(table), 0o644); err != nil {
			fatalf("%v", err)
		}
	}
}

// bench holds what every run shares.
type bench struct {
	bundle string
	prefix string        // container id prefix, unique per bench process
	gap    time.Duration // untimed pause before each run
	n      int           // runs so far, for fresh container ids
	log    *os.File      // the runtime's stdout+stderr, shown if a run fails
}

// runOnce does one timed `run` of r with a fresh container id.
func (b *bench) runOnce(r *row) (wall, cpu time.Duration, err error) {
	// A plain file rather than a pipe for the child's output: Wait then has
	// no copying goroutines to wait for, and the log survives for the error.
	if err := b.log.Truncate(0); err != nil {
		return 0, 0, err
	}
	if _, err := b.log.Seek(0, io.SeekStart); err != nil {
		return 0, 0, err
	}
	b.n++
	id := fmt.Sprintf("%s-%d", b.prefix, b.n)
	cmd := r.Command("run", "--bundle", b.bundle, id)
	cmd.Stdout, cmd.Stderr = b.log, b.log // stdin stays /dev/null

	// Collect our own garbage now rather than during a measurement.
	goruntime.GC()
	time.Sleep(b.gap)

	t0 := time.Now()
	err = cmd.Run()
	wall = time.Since(t0) // monotonic: time.Now carries a monotonic reading

	if err != nil {
		msg, _ := os.ReadFile(b.log.Name())
		// Do not leave a half-made container (and its cgroups) behind.
		_ = r.Command("delete", "--force", id).Run()
		return 0, 0, fmt.Errorf("%s: %s: %v\n--- its output ---\n%s",
			r.Name, strings.Join(cmd.Args, " "), err, strings.TrimSpace(string(msg)))
	}
	if ru, ok := cmd.ProcessState.SysUsage().(*syscall.Rusage); ok {
		cpu = time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
	}
	return wall, cpu, nil
}

// ms formats a duration as milliseconds with 0.01 ms resolution.
func ms(d time.Duration) string { return fmt.Sprintf("%.2f", float64(d)/1e6) }

// plusMS is ms with a sign.
func plusMS(d time.Duration) string { return fmt.Sprintf("%+.2f", float64(d)/1e6) }

func render(rows []*row, o *options) string {
	base, ref := stats.FindRow(rows, o.baseline), stats.FindRow(rows, o.ref)
	rng := rand.New(rand.NewPCG(o.seed, 1))
	var sb strings.Builder
	w := func(format string, a ...any) { fmt.Fprintf(&sb, format, a...) }

	// Columns as (header, alignment); the ratio columns exist only when
	// their reference row does.
	head := []string{"runtime", "runs", "median ms", "p10–p90 ms", "min ms", "CPU ms"}
	align := []string{"---", "--:", "--:", "--:", "--:", "--:"}
	if base != nil {
		head = append(head, fmt.Sprintf("vs %s (95%% CI)", base.Name), "target", "verdict", "CPU vs "+base.Name)
		align = append(align, "--:", "--:", "---", "--:")
	}
	if ref != nil {
		head = append(head, "vs "+ref.Name)
		align = append(align, "--:")
	}
	line := func(cells []string) { w("| %s |\n", strings.Join(cells, " | ")) }
	line(head)
	line(align)

	for _, r := range rows {
		s := slices.Clone(r.wall)
		slices.Sort(s)
		med := stats.Quantile(s, 0.5)
		cells := []string{r.Name, fmt.Sprint(len(s)), ms(med),
			ms(stats.Quantile(s, 0.1)) + "–" + ms(stats.Quantile(s, 0.9)), ms(s[0]), ms(stats.Median(r.cpu))}
		if base == r {
			cells = append(cells, "—", "—", "—", "—")
		} else if base != nil {
			ratio := float64(med) / float64(stats.Median(base.wall))
			lo, hi := stats.RatioCI(r.wall, base.wall, 2000, rng)
			target, verdict := "—", "—"
			if r.Target > 0 {
				target = fmt.Sprintf("≤ %.2f", r.Target)
				verdict = stats.Verdict(lo, hi, r.Target, true)
			}
			cells = append(cells, fmt.Sprintf("%.3f (%.2f–%.2f)", ratio, lo, hi), target, verdict,
				fmt.Sprintf("%.3f", float64(stats.Median(r.cpu))/float64(stats.Median(base.cpu))))
		}
		if ref == r {
			cells = append(cells, "—")
		} else if ref != nil {
			cells = append(cells, fmt.Sprintf("%.3f", float64(med)/float64(stats.Median(ref.wall))))
		}
		line(cells)
	}
	if len(o.diffs) > 0 {
		w("\n")
	}
	for _, d := range o.diffs {
		a, b := stats.FindRow(rows, d.a), stats.FindRow(rows, d.b)
		wlo, whi := stats.DiffCI(a.wall, b.wall, 2000, rng)
		clo, chi := stats.DiffCI(a.cpu, b.cpu, 2000, rng)
		w("- %s (%s − %s): %s ms wall (95%% CI %s … %s), %s ms CPU (95%% CI %s … %s).\n", d.label, a.Name, b.Name,
			plusMS(stats.Median(a.wall)-stats.Median(b.wall)), plusMS(wlo), plusMS(whi),
			plusMS(stats.Median(a.cpu)-stats.Median(b.cpu)), plusMS(clo), plusMS(chi))
	}

	orderNote := fmt.Sprintf("order shuffled per round, seed %d", o.seed)
	if o.fixed {
		orderNote = "fixed order"
	}
	w("\nWall time of `RUNTIME --root R run --bundle B ID` of `/bin/true` in one busybox bundle:\n")
	w("%d warm-up + %d measured runs per runtime, interleaved (%s), fresh container id each run",
		o.warmup, len(rows[0].wall), orderNote)
	if o.gap > 0 {
		w(", %s idle before each run", o.gap)
	}
	w(".\nRatios and differences are of medians; their CIs are paired bootstraps over rounds. A target is judged on the CI:\n")
	w("%s when all of it meets the target, %s when all of it misses, %s when it straddles the target.\n", stats.Pass, stats.Fail, stats.WithinNoise)
	w("CPU: median user+sys time of the runtime and its children, less sensitive than wall time to other load on the machine.\n\n")
	w("Machine: %s, %d CPUs, kernel %s, %s, %s.\n\n",
		stats.CPUModel(), goruntime.NumCPU(), stats.Kernel(), cgroupMode(), time.Now().UTC().Format("2006-01-02 15:04 MST"))
	for _, r := range rows {
		w("- %s: `%s` (%s)\n", r.Name, strings.Join(r.Argv, " "), r.version)
	}
	for _, n := range o.notes {
		w("- %s\n", n)
	}
	return sb.String()
}

// selfCPU returns the user+sys time of this process itself.
func selfCPU() time.Duration {
	var ru syscall.Rusage
	if syscall.Getrusage(syscall.RUSAGE_SELF, &ru) != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// cgroupMode tells v2, v1 with a v2 hierarchy beside it (hybrid), or plain
// v1: a container's start cost differs between them.
func cgroupMode() string {
	if _, err := os.Stat("/sys/fs/cgroup/cgroup.controllers"); err == nil {
		return "cgroup v2"
	}
	if _, err := os.Stat("/sys/fs/cgroup/unified"); err == nil {
		return "cgroup v1 (hybrid)"
	}
	return "cgroup v1"
}

// isTerminal reports whether f is a character device (most likely a
// terminal), where a self-overwriting progress line makes sense.
func isTerminal(f *os.File) bool {
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}

func fatalf(format string, a ...any) {
	fmt.Fprintf(os.Stderr, "\nstartbench: "+format+"\n", a...)
	os.Exit(1)
}
