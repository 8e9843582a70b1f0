#!/bin/bash
# test/bench/run.sh: container start-up benchmark (`make bench`).
#
# Times `RUNTIME --root R run --bundle B ID` of /bin/true in one busybox
# bundle for clawrun and the reference runtimes, interleaved (each round
# runs every runtime once, in a shuffled order), and prints a markdown table
# (also written to $BENCH_OUT). The timing loop is a small Go program,
# startbench/, since forking `date` per sample would cost ~1 ms.
# Targets: clawrun's median <= 1.05 x runc-1.5.2's, under agent-default
# <= 1.3 x, each judged on the ratio's confidence interval (PASS, within
# noise, FAIL). Missing one is reported, not fatal (a benchmark is not a
# timed test); a failing run is fatal. A policy without rules measures
# what the in-container policy launcher alone adds to a start.
# Other jobs on the machine are the main noise: run it on a quiet machine,
# or raise BENCH_RUNS until the ratio's confidence interval is narrow.
#
# Environment:
#   CLAWRUN        clawrun binary (default: bin/clawrun)
#   BENCH_RUNS     measured runs per runtime (default 40, at least 30)
#   BENCH_WARMUP   warm-up runs per runtime (default 3)
#   BENCH_OUT      file the table is written to (default bench-results.md,
#                  in the current dir; empty: stdout only)
#   BENCH_RAW      if set, every sample is also written there as CSV
#   BENCH_ROWS     extra rows, one 'name|command prefix' per line, e.g.
#                  'clawrun+agent|/path/clawrun --policy agent-default'
#   BENCH_TARGET   clawrun's target ratio (default 1.05)
#   BENCH_SEED     seed of the per-round shuffle (default: from the clock)
#   BENCH_GAP      idle time before each run, e.g. 20ms (default 0)
#   BENCH_FIXED_ORDER=1  same order every round instead of shuffled
#   DEBIAN_RUNC    second reference (default /usr/sbin/runc; skipped if absent)
#   GO             go command used to build the drivers (default go)
#   BENCH_BURST_OUT    file the burst table is written to (default
#                      bench-burst.md; empty: stdout only)
#   BENCH_BURST_ROUNDS measured bursts per row (default 5; 0: no burst phase)
#
# The burst phase (burstbench/) then starts 100 long-running containers 8 at
# a time, as a node does when a batch of agent sandboxes lands on it: runc
# with no policy against clawrun with none and with agent-default plus an
# egress filter (target <= 1.3 x runc's time).
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
clawrun=${CLAWRUN:-$repo/bin/clawrun}
runc152=$repo/bin/runc-1.5.2
debian_runc=${DEBIAN_RUNC:-/usr/sbin/runc}
runs=${BENCH_RUNS:-40}
warmup=${BENCH_WARMUP:-3}
out=${BENCH_OUT-bench-results.md}
target=${BENCH_TARGET:-1.05}

die() { echo "bench: $*" >&2; exit 1; }

[ "$(id -u)" = 0 ] || die "must run as root (rootful runtimes, cgroups)"
[[ $runs =~ ^[0-9]+$ ]] && [ "$runs" -ge 30 ] || die "BENCH_RUNS must be a number >= 30 (got '$runs')"
[[ $warmup =~ ^[0-9]+$ ]] || die "BENCH_WARMUP must be a number (got '$warmup')"
[ -x "$clawrun" ] || die "$clawrun not found or not executable (make build)"
[ -x "$runc152" ] || die "$runc152 not found (make bin/runc-1.5.2)"

work=$(mktemp -d "${TMPDIR:-/tmp}/clawrun-bench.XXXXXX")
trap 'rm -rf "$work"' EXIT

# A policy without rules: no Landlock layer, no seccomp filter, no egress.
# The container still starts through the policy launcher (no_new_privs,
# its report to the runtime), so its row less clawrun's is the launcher's
# cost.
printf 'version: 1\nclawrun:\n  seccomp: {profile: none}\n' > "$work/no-rules.yaml"
"$clawrun" policy check "$work/no-rules.yaml" >/dev/null || die "the no-rule policy does not check"

# The rows, in table order: 'name|command prefix[|target]'. The driver
# appends `--root R run --bundle B ID`, so a prefix may carry global flags.
# Add rows here (or through BENCH_ROWS) to benchmark more configurations.
# Every row gets its ratio to $base (judged against its target, if it has
# one) and to $ref (informational).
base=runc-1.5.2
ref="runc-1.1.5 (Debian)"
launcher="clawrun + policy without rules"
agent="clawrun + agent-default"
rows=(
	"clawrun|$clawrun|$target"
	"$launcher|$clawrun --policy $work/no-rules.yaml"
	# The agent policy: Landlock (agent-default) + the agent seccomp
	# profile, applied by the in-container launcher.
	"$agent|$clawrun --policy agent-default|1.3"
	"$base|$runc152"
)
diffs=(
	-diff "the policy launcher|$launcher|clawrun"
	-diff "agent-default's Landlock and seccomp rules|$agent|$launcher"
)
notes=()
if [ -x "$debian_runc" ]; then
	rows+=("$ref|$debian_runc")
	refarg=(-ref "$ref")
else
	notes+=(-note "Debian runc ($debian_runc) not installed: row skipped.")
	refarg=()
fi
if [ -n "${BENCH_ROWS:-}" ]; then
	while IFS= read -r line; do
		[ -n "$line" ] && rows+=("$line")
	done <<<"$BENCH_ROWS"
fi
if [ "$(readlink -f "$clawrun")" = "$(readlink -f "$runc152")" ]; then
	notes+=(-note "CLAWRUN is runc-1.5.2 itself: this run only validates the bench (expect a ratio near 1).")
fi

# Build the driver outside the measurement; it needs only the standard library.
(cd "$repo" && CGO_ENABLED=0 "${GO:-go}" build -o "$work/startbench" ./test/bench/startbench)

# One bundle for every runtime. Its spec comes from the reference runc, so
# no runtime gets a config tailored by its own `spec` command.
RUNTIME=$runc152 bash "$repo/test/mkbundle.sh" "$work/bundle" /bin/true >/dev/null

args=(-bundle "$work/bundle" -workdir "$work" -runs "$runs" -warmup "$warmup"
	-baseline "$base" "${diffs[@]}" "${refarg[@]}" "${notes[@]}")
[ -n "$out" ] && args+=(-out "$out")
[ -n "${BENCH_RAW:-}" ] && args+=(-raw "$BENCH_RAW")
[ -n "${BENCH_SEED:-}" ] && args+=(-seed "$BENCH_SEED")
[ -n "${BENCH_GAP:-}" ] && args+=(-gap "$BENCH_GAP")
[ "${BENCH_FIXED_ORDER:-0}" = 1 ] && args+=(-fixed-order)

start=$(date +%s%N)
"$work/startbench" "${args[@]}" "${rows[@]}"
echo "bench: done in $(( ($(date +%s%N) - start) / 1000000 )) ms${out:+, table written to $out}" >&2

burst_rounds=${BENCH_BURST_ROUNDS:-5}
[[ $burst_rounds =~ ^[0-9]+$ ]] || die "BENCH_BURST_ROUNDS must be a number (got '$burst_rounds')"
[ "$burst_rounds" -gt 0 ] || exit 0
burst_out=${BENCH_BURST_OUT-bench-burst.md}
# A sandbox: agent-default's files and system calls, and egress through the
# filter to one name (the filter runs whether or not anything connects).
{
	cat "$repo/runtime/policy/presets/agent-default.yaml"
	printf 'network_policies:\n  bench:\n    endpoints:\n      - { host: bench.test, port: 443 }\n'
} >"$work/sandbox.yaml"
"$clawrun" policy check "$work/sandbox.yaml" >/dev/null || die "the sandbox policy does not check"
(cd "$repo" && CGO_ENABLED=0 "${GO:-go}" build -o "$work/burstbench" ./test/bench/burstbench)
RUNTIME=$runc152 bash "$repo/test/mkbundle.sh" "$work/sleep-bundle" sleep 3600 >/dev/null
burst_args=(-bundle "$work/sleep-bundle" -workdir "$work" -baseline "$base" -rounds "$burst_rounds")
[ -n "$burst_out" ] && burst_args+=(-out "$burst_out")
[ -n "${BENCH_SEED:-}" ] && burst_args+=(-seed "$BENCH_SEED")
"$work/burstbench" "${burst_args[@]}" "$base|$runc152" "clawrun|$clawrun" \
	"clawrun + agent-default, egress filter|$clawrun --policy $work/sandbox.yaml|1.3"
