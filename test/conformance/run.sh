#!/usr/bin/env bash
# run.sh: run the OCI runtime-tools validation suite against clawrun and
# against the reference runc (built from the same libcontainer), print a
# side-by-side table, and fail only where clawrun fails an assertion that
# runc passes. Tests that fail for runc too on this machine (cgroup knobs
# the kernel lacks, apparmor, hook timing the spec and runc disagree on, ...)
# do not fail the run.
#
# Usage: CLAWRUN=bin/clawrun bash test/conformance/run.sh   (as root)
# Environment:
#   CLAWRUN              runtime under test (default: bin/clawrun)
#   RUNC                 reference runtime (default: bin/runc-1.5.2)
#   CLAWRUN_CI_CACHE     where the built suite is kept (/var/cache/clawrun-ci)
#   CONFORMANCE_OUT      TAP logs, results and summary (/tmp/clawrun-conformance)
#   CONFORMANCE_TIMEOUT  seconds per test file (60)
#   CONFORMANCE_TESTS    space-separated test names to run (default: all)
#   CONFORMANCE_RETRIES  reruns of a test file that regressed (1), for both
#                        runtimes, so that the pair compared ran under the
#                        same conditions: the suite has sleep/poll-based
#                        tests that can flake under load, for either runtime
set -uo pipefail

PREFIX=conformance
# shellcheck source=test/conformance/common.sh
. "$(dirname "${BASH_SOURCE[0]}")/common.sh"
OUT=${CONFORMANCE_OUT:-/tmp/clawrun-conformance}
TIMEOUT=${CONFORMANCE_TIMEOUT:-60}
RETRIES=${CONFORMANCE_RETRIES:-1}

RT_MODULE=github.com/opencontainers/runtime-tools
RT_VERSION=v0.9.1-0.20251114084447-edf4cb3d2116

preconditions make unshare
# One run at a time per machine: the cgroup tests use fixed cgroup paths
# (/cgrouptest), and two runs must not build the suite into the same place.
lock conformance.lock 900
SUITE=$CACHE/runtime-tools-$RT_VERSION

# ---- obtain and build the suite (cached per version) -------------------------

# The build is complete when runtimetest and one .t per validation/<name>/<name>.go
# exist; the .built stamp is written last, so a half-done build is redone.
suite_built() {
	[ -f "$SUITE/.built" ] && [ -x "$SUITE/runtimetest" ] || return 1
	local src
	for src in "$SUITE"/validation/*/*.go; do
		case $src in */util/*) continue ;; esac
		[ -x "${src%.go}.t" ] || return 1
	done
}

build_suite() {
	local tmp=$SUITE.tmp.$$
	log "building runtime-tools $RT_VERSION validation suite in $SUITE"
	fetch_module "$RT_MODULE" "$RT_VERSION" Makefile "$tmp"
	# The module zip keeps only vendor/modules.txt, not the vendored code, and
	# its presence makes go default to -mod=vendor: build in module mode
	# instead (dependencies come from the module proxy, pinned by its go.sum).
	# CGO off: runtimetest runs inside the test rootfs and must be static.
	if ! (cd "$tmp" && GO111MODULE=on GOWORK=off GOFLAGS="-mod=readonly -buildvcs=false" CGO_ENABLED=0 \
		make -j"$(nproc)" GO="$GO" runtimetest validation-executables) >"$OUT/build.log" 2>&1; then
		tail -n 20 "$OUT/build.log" >&2
		rm -rf "$tmp"
		die "building the validation suite failed (full log: $OUT/build.log)"
	fi
	install_suite "$tmp"
}

suite_built || build_suite
suite_built || die "suite in $SUITE is incomplete after building"

# Test names: every validation/<name>/<name>.t (util is a library).
list=$(names "${CONFORMANCE_TESTS:-}" "$SUITE/validation/{}/{}.t") || exit 2
mapfile -t tests <<<"$list"

# ---- per-runtime sandbox -----------------------------------------------------
#
# Each runtime gets, under $OUT/<label>/:
#   runtime    the RUNTIME the suite calls: a wrapper that adds --root state/
#              (the suite has no option for that) and logs every call's
#              arguments to calls.log
#   state/     its --root, so leftovers of one runtime never meet the other
#   tmp/       TMPDIR of the test files: their bundles (ocitest*) land here
#   tap/       <test>.tap (stdout), <test>.err (stderr), <test>.res (parsed)

labels=("$ref" "$claw")
declare -A ROOTFLAG

setup_runtime() {
	local label=$1 bin=${BIN[$1]} d=$OUT/$1
	mkdir -p "$d/state"
	# Use a private --root when the runtime takes it (runc's global flag);
	# otherwise fall back to its default root and clean up by bundle path.
	ROOTFLAG[$label]=""
	if "$bin" --root "$d/state" list >/dev/null 2>&1; then
		ROOTFLAG[$label]="--root $d/state"
	else
		log "warning: $label does not accept --root; using its default state dir"
	fi
	teardown_runtime "$label" # what an interrupted earlier run left
	rm -rf "$d/tap" "$d/tmp" "$d/calls.log" "$d/results.tsv" "$d/times.tsv"
	mkdir -p "$d/tmp" "$d/tap"
	cat >"$d/runtime" <<-EOF
		#!/bin/sh
		printf '%s\\n' "\$*" >>'$d/calls.log'
		exec '$bin' ${ROOTFLAG[$label]} "\$@"
	EOF
	chmod +x "$d/runtime"
}

# Containers the tests left behind (crash, timeout, tests that never delete):
# kill and delete them so they cannot hold cgroups or mounts the next test
# needs. With a private root everything in it is ours; without one, only
# containers whose bundle is in our TMPDIR.
cleanup_containers() {
	local label=$1 bin=${BIN[$1]} d=$OUT/$1 ids
	# shellcheck disable=SC2086  # ROOTFLAG is "" or "--root DIR"
	if [ -n "${ROOTFLAG[$label]}" ]; then
		ids=$("$bin" ${ROOTFLAG[$label]} list -q 2>/dev/null)
	else
		ids=$("$bin" list 2>/dev/null | awk -v p="$d/tmp/" 'NR > 1 && index($4, p) == 1 { print $1 }')
	fi
	local id
	for id in $ids; do
		# shellcheck disable=SC2086
		"$bin" ${ROOTFLAG[$label]} delete -f "$id" >/dev/null 2>&1 ||
			log "warning: $label: cannot delete leftover container $id"
	done
}

# Cgroups the tests name (absolute /cgrouptest, relative testdir/cgrouptest/
# container) that a crashed container may leave: rmdir removes only empty ones.
cleanup_cgroups() {
	local cg
	find /sys/fs/cgroup -mindepth 2 -maxdepth 8 -type d -name cgrouptest 2>/dev/null | sort -r |
		while read -r cg; do
			rmdir "$cg/container" "$cg" 2>/dev/null
			case $cg in */testdir/cgrouptest) rmdir "${cg%/cgrouptest}" 2>/dev/null ;; esac
		done
	return 0
}

teardown_runtime() {
	cleanup_containers "$1"
	cleanup_tmp "$1"
	cleanup_cgroups
}

# run_test LABEL TEST [SUFFIX]: run one test file, parse it into tap/TEST.res.
run_test() {
	local label=$1 t=$2 sfx=${3:-} d=$OUT/$1 rc t0=${EPOCHREALTIME/./}
	# The suite finds runtimetest and rootfs-<arch>.tar.gz in its cwd.
	(
		cd "$SUITE" &&
			RUNTIME=$d/runtime TMPDIR=$d/tmp exec timeout -k 5 "$TIMEOUT" \
				"./validation/$t/$t.t" </dev/null >"$d/tap/$t$sfx.tap" 2>"$d/tap/$t$sfx.err"
	)
	rc=$?
	echo "$rc" >"$d/tap/$t$sfx.rc"
	timed "$label" "$t$sfx" "$t0"
	teardown_runtime "$label"
	awk -v rc="$rc" -v limit="$TIMEOUT" -f "$here/tap.awk" "$d/tap/$t$sfx.tap" >"$d/tap/$t$sfx.res"
}

# retry_pair TEST N: keep both runtimes' logs of TEST as try N, then run
# TEST again for both (reference first, as in the main loop).
retry_pair() {
	local t=$1 n=$2 label ext
	for label in "$ref" "$claw"; do
		for ext in res tap err rc; do mv "$OUT/$label/tap/$t.$ext" "$OUT/$label/tap/$t.try$n.$ext"; done
		run_test "$label" "$t"
	done
}

# regressed CLAW.res REF.res: the keys REF passes that CLAW does not pass,
# as "KEY<TAB>CLAW-STATUS" (missing = the assertion never ran).
regressed() {
	awk -F '\t' 'FILENAME == ARGV[1] { st[$2] = $1; next }
		$1 == "pass" { s = ($2 in st) ? st[$2] : "missing"; if (s != "pass") printf "%s\t%s\n", $2, s }' "$1" "$2"
}

# ---- run ---------------------------------------------------------------------

for label in "${labels[@]}"; do setup_runtime "$label"; done
trap on_interrupt INT TERM
rm -f "$OUT/summary.txt" "$OUT/flaky.txt"
: >"$OUT/regressions.txt"

start=$SECONDS
total=${#tests[@]} i=0
# Interleaved per test file (reference first), so load or machine state
# affects both runtimes alike and a regression can be retried right away.
for t in "${tests[@]}"; do
	i=$((i + 1))
	printf '[%d/%d] %s\n' "$i" "$total" "$t" >&2
	run_test "$ref" "$t"
	run_test "$claw" "$t"
	r=0
	while [ "$r" -lt "$RETRIES" ] && [ -n "$(regressed "$OUT/$claw/tap/$t.res" "$OUT/$ref/tap/$t.res")" ]; do
		r=$((r + 1))
		printf '[%d/%d] %s (retry %d for both runtimes)\n' "$i" "$total" "$t" "$r" >&2
		retry_pair "$t" "$r"
		if [ -z "$(regressed "$OUT/$claw/tap/$t.res" "$OUT/$ref/tap/$t.res")" ]; then
			echo "$t (no regression on retry $r; the try before: $OUT/{$claw,$ref}/tap/$t.try$r.tap)" >>"$OUT/flaky.txt"
		fi
	done
done
for label in "${labels[@]}"; do teardown_runtime "$label"; done
trap - INT TERM
elapsed=$((SECONDS - start))

# ---- report ------------------------------------------------------------------

for t in "${tests[@]}"; do
	awk -F '\t' -v t="$t" '{ print t "\t" $1 "\t" $2 }' "$OUT/$claw/tap/$t.res" >>"$OUT/$claw/results.tsv.new"
	awk -F '\t' -v t="$t" '{ print t "\t" $1 "\t" $2 }' "$OUT/$ref/tap/$t.res" >>"$OUT/$ref/results.tsv.new"
	regressed "$OUT/$claw/tap/$t.res" "$OUT/$ref/tap/$t.res" |
		awk -F '\t' -v t="$t" '{ print t "\t" $1 "\t" $2 }' >>"$OUT/regressions.txt"
done
for label in "${labels[@]}"; do mv "$OUT/$label/results.tsv.new" "$OUT/$label/results.tsv"; done

# Table: per test, pass/fail/skip for each runtime; "<<" marks clawrun
# failing assertions that the reference passes.
awk -F '\t' -v claw="$claw" -v ref="$ref" -v order="${tests[*]}" -v regf="$OUT/regressions.txt" -v cf="$OUT/$claw/results.tsv" '
	FILENAME == regf { reg[$1]++; next }
	{ side = (FILENAME == cf) ? "c" : "r"; n[side, $1, $2]++; tot[side, $2]++ }
	function centre(s,  w, l) {
		w = 15; s = " " s " "
		if (length(s) >= w) return s
		l = int((w - length(s)) / 2)
		s = substr("---------------", 1, l) s
		return s substr("---------------", 1, w - length(s))
	}
	function cell(side, t) { return sprintf("%5d %4d %4d", n[side, t, "pass"], n[side, t, "fail"], n[side, t, "skip"]) }
	END {
		split(order, ts, " ")
		printf "%-32s %s   %s\n", "", centre(claw), centre(ref)
		printf "%-32s %5s %4s %4s   %5s %4s %4s\n", "test", "pass", "fail", "skip", "pass", "fail", "skip"
		for (i = 1; i in ts; i++) {
			t = ts[i]
			mark = (t in reg) ? sprintf("  << %d regressed", reg[t]) : ""
			printf "%-32s %s   %s%s\n", t, cell("c", t), cell("r", t), mark
		}
		printf "%-32s %5d %4d %4d   %5d %4d %4d\n", "TOTAL", tot["c", "pass"], tot["c", "fail"], tot["c", "skip"],
			tot["r", "pass"], tot["r", "fail"], tot["r", "skip"]
		printf "\nconformance: %s %d/%d passed, %s %d/%d passed (skipped: %d, %d)\n",
			claw, tot["c", "pass"], tot["c", "pass"] + tot["c", "fail"],
			ref, tot["r", "pass"], tot["r", "pass"] + tot["r", "fail"], tot["c", "skip"], tot["r", "skip"]
	}' "$OUT/regressions.txt" "$OUT/$claw/results.tsv" "$OUT/$ref/results.tsv" | tee "$OUT/summary.txt"

{
	echo "conformance: ${#tests[@]} test files per runtime in ${elapsed}s ($(durations));" \
		"logs in $OUT/{$claw,$ref}/tap/"
	report_flaky
} | tee -a "$OUT/summary.txt"

# A reference that passes nothing means a broken machine or suite, not a
# clawrun that matches it.
if ! awk -F '\t' '$2 == "pass" { found = 1; exit } END { exit !found }' "$OUT/$ref/results.tsv"; then
	echo "conformance: ERROR: $ref passed no assertion; see $OUT/$ref/tap/*.err" | tee -a "$OUT/summary.txt"
	exit 2
fi
if [ -s "$OUT/regressions.txt" ]; then
	{
		echo "conformance: FAIL: $claw fails $(wc -l <"$OUT/regressions.txt") assertion(s) that $ref passes:"
		# At most 10 lines per test file here; all of them in regressions.txt.
		awk -F '\t' '++k[$1] <= 10 { printf "  %s: %s (%s)\n", $1, $2, $3 }
			k[$1] == 11 { printf "  %s: ...\n", $1 }' "$OUT/regressions.txt"
		echo "  full list: $OUT/regressions.txt"
	} | tee -a "$OUT/summary.txt"
	exit 1
fi
echo "conformance: OK: $claw passes every assertion that $ref passes" | tee -a "$OUT/summary.txt"
exit 0
