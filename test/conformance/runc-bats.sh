#!/usr/bin/env bash
# runc-bats.sh: run runc's own integration suite (tests/integration/*.bats of
# the runc module clawrun's libcontainer comes from) against that runc and
# against clawrun, compare per test, and fail only where clawrun fails a
# test that runc passes on this machine. Tests that runc fails here too
# (cgroup knobs the kernel lacks, ...) or that assert the binary's own name
# or version (EXCLUDED below) do not fail the run.
#
# The suite is obtained from the Go module proxy and built once into the CI
# cache: its helper programs (tests/cmd/...) and, in place of the busybox
# and Debian images it would download, tarballs of the busybox-static root
# filesystem test/mkbundle.sh makes and of test/mkdebian.sh's Debian.
#
# Usage: CLAWRUN=bin/clawrun bash test/conformance/runc-bats.sh   (as root)
# Environment:
#   CLAWRUN          runtime under test (default: bin/clawrun)
#   RUNC             reference runtime (default: bin/runc-1.5.2)
#   CLAWRUN_CI_CACHE where the built suite is kept (/var/cache/clawrun-ci)
#   RUNC_BATS_OUT    TAP logs, results and summary (/tmp/clawrun-runc-bats)
#   RUNC_BATS_TIMEOUT  seconds per .bats file and runtime (900)
#   RUNC_BATS_FILES  space-separated .bats names to run, e.g. "exec kill"
#                    (default: all)
#   RUNC_BATS_RETRIES  reruns, for both runtimes, of the tests of a file that
#                    regressed (1): some tests poll with sleeps and can flake
#                    under load
set -uo pipefail

PREFIX=runc-bats
# shellcheck source=test/conformance/common.sh
. "$(dirname "${BASH_SOURCE[0]}")/common.sh"
OUT=${RUNC_BATS_OUT:-/tmp/clawrun-runc-bats}
TIMEOUT=${RUNC_BATS_TIMEOUT:-900}
RETRIES=${RUNC_BATS_RETRIES:-1}

RUNC_MODULE=github.com/opencontainers/runc
RUNC_VERSION=v1.5.2
# Bump when what build_suite puts in the cache changes (images, helpers).
LAYOUT=2

# Tests that assert the binary's own name or version, not behaviour: clawrun
# is not runc. "FILE<TAB>TEST<TAB>why".
EXCLUDED=$(
	cat <<-'EOF'
		version	runc version	asserts "runc version X.Y.Z" and a "commit:" line
		help	runc -h	asserts the line "runc - Open Container Initiative runtime"
		help	runc command -h	asserts that each command's help names the binary "runc <command>"
	EOF
)

preconditions bats jq gawk gcc script tini
# One run at a time per machine: the suite uses fixed cgroup paths
# (/runc-cgroups-integration-test) and one build must not race another.
lock runc-bats.lock 1800
SUITE=$CACHE/runc-integration-$RUNC_VERSION-$LAYOUT

# ---- obtain and build the suite (cached per version) -------------------------

ARCH=$("$GO" env GOARCH)
BATS_DIR=$SUITE/tests/integration

suite_built() {
	[ -f "$SUITE/.built" ]
}

# busybox_image TAR: the busybox-static root filesystem of test/mkbundle.sh,
# with the users of the busybox image the suite expects (no uid 1000) and,
# like that image, no /proc or /sys (tests replace them with symlinks).
busybox_image() {
	local tar=$1 tmp
	tmp=$(mktemp -d) || return 1
	RUNTIME=$RUNC bash "$repo/test/mkbundle.sh" "$tmp/b" >/dev/null || { rm -rf "$tmp"; return 1; }
	rmdir "$tmp/b/rootfs/proc" "$tmp/b/rootfs/sys" || { rm -rf "$tmp"; return 1; }
	cat >"$tmp/b/rootfs/etc/passwd" <<-'EOF'
		root:x:0:0:root:/root:/bin/sh
		daemon:x:1:1:daemon:/usr/sbin:/bin/false
		bin:x:2:2:bin:/bin:/bin/false
		sys:x:3:3:sys:/dev:/bin/false
		nobody:x:65534:65534:nobody:/home:/bin/false
	EOF
	cat >"$tmp/b/rootfs/etc/group" <<-'EOF'
		root:x:0:
		daemon:x:1:
		bin:x:2:
		sys:x:3:
		nogroup:x:65534:
	EOF
	# Uncompressed (tar detects that when reading) under the name
	# get-images.sh looks for.
	tar -C "$tmp/b/rootfs" -cf "$tar" . || { rm -rf "$tmp"; return 1; }
	rm -rf "$tmp"
}

# debian_image TAR: test/mkdebian.sh's Debian without documentation,
# package lists and Python (the suite needs coreutils, util-linux, ldconfig).
debian_image() {
	local dir
	dir=$(bash "$repo/test/mkdebian.sh") || return 1
	tar -C "$dir" --exclude=./.complete --exclude=./usr/share/doc --exclude=./usr/share/man \
		--exclude=./usr/share/locale --exclude=./usr/share/info --exclude=./var/cache/apt \
		--exclude=./var/lib/apt/lists --exclude='./usr/lib/python3*' -cf "$1" .
}

build_suite() {
	local tmp=$SUITE.tmp.$$ cmd
	log "building runc $RUNC_VERSION integration suite in $SUITE"
	fetch_module "$RUNC_MODULE" "$RUNC_VERSION" tests/integration/helpers.bash "$tmp"
	# The module cache has no executable bits.
	find "$tmp/tests" \( -name '*.sh' -o -name '*.bats' \) -exec chmod +x {} + || die "chmod $tmp"
	# The helper programs, as runc's make test-binaries builds them (in
	# module mode: the module zip has no vendor/ tree).
	for cmd in "$tmp"/tests/cmd/*/; do
		cmd=$(basename "$cmd")
		[ "$cmd" != _bin ] || continue
		if ! (cd "$tmp" && GO111MODULE=on GOWORK=off GOFLAGS="-mod=mod -buildvcs=false" CGO_ENABLED=1 \
			"$GO" build -trimpath -tags seccomp -o tests/cmd/_bin/ "./tests/cmd/$cmd") >>"$OUT/build.log" 2>&1; then
			tail -n 20 "$OUT/build.log" >&2
			rm -rf "$tmp"
			die "building tests/cmd/$cmd failed (full log: $OUT/build.log)"
		fi
	done
	busybox_image "$tmp/tests/integration/testdata/busybox-$ARCH.tar.xz" || { rm -rf "$tmp"; die "making the busybox image failed"; }
	debian_image "$tmp/tests/integration/testdata/debian-$ARCH.tar.xz" || { rm -rf "$tmp"; die "making the Debian image failed"; }
	install_suite "$tmp"
	# Earlier layouts and versions are of no more use (about 100 MB each).
	find "$CACHE" -maxdepth 1 -name 'runc-integration-*' ! -path "$SUITE" -exec rm -rf {} +
}

: >"$OUT/build.log"
suite_built || build_suite
suite_built || die "suite in $SUITE is incomplete after building"

list=$(names "${RUNC_BATS_FILES:-}" "$BATS_DIR/{}.bats") || exit 2
mapfile -t files <<<"$list"

# ---- per-runtime sandbox -----------------------------------------------------
#
# Each runtime gets, under $OUT/<label>/:
#   runc       a copy of its binary under the name the suite expects (its
#              fd-leak test allows a reference to "/runc", the binary)
#   tmp/       TMPDIR of bats: the tests' bundles and state (--root) dirs
#   tap/       <file>.tap (bats --tap), .err, .rc, .res (status<TAB>test)

labels=("$ref" "$claw")

setup_runtime() {
	local label=$1 d=$OUT/$1
	teardown_runtime "$label" # what an interrupted earlier run left
	rm -rf "$d/tap" "$d/tmp" "$d/times.tsv"
	# Traversable by the users the userns tests map (mktemp -d is 0700).
	mkdir -p "$d/tmp" "$d/tap" && chmod 0755 "$OUT" "$d" "$d/tmp"
	cp "${BIN[$label]}" "$d/runc"
}

# Containers of tests that were killed (timeout) before their teardown:
# every state dir under tmp/ holds only this runtime's containers.
cleanup_containers() {
	local label=$1 d=$OUT/$1 state id
	for state in "$d"/tmp/bats-run-*/runc.*/state; do
		[ -d "$state" ] || continue
		for id in $("$d/runc" --root "$state" list -q 2>/dev/null); do
			"$d/runc" --root "$state" delete -f "$id" >/dev/null 2>&1 ||
				log "warning: $label: cannot delete leftover container $id"
		done
	done
}

# The suite's cgroups (runc-cgroups-integration-test/...), if a killed test
# left them: rmdir removes only empty ones.
cleanup_cgroups() {
	find /sys/fs/cgroup -mindepth 1 -maxdepth 6 -depth -type d -path '*/runc-cgroups-integration-test*' \
		-exec rmdir {} \; 2>/dev/null
	return 0
}

teardown_runtime() {
	[ -x "$OUT/$1/runc" ] && cleanup_containers "$1"
	cleanup_tmp "$1"
	cleanup_cgroups
}

# parse_tap TAP: "status<TAB>test" per test (pass, fail, skip).
parse_tap() {
	awk '
		/^ok [0-9]+ / {
			t = $0; sub(/^ok [0-9]+ /, "", t)
			if (match(t, / # [Ss][Kk][Ii][Pp]( |$)/)) { print "skip\t" substr(t, 1, RSTART - 1) } else { print "pass\t" t }
			next
		}
		/^not ok [0-9]+ / { t = $0; sub(/^not ok [0-9]+ /, "", t); sub(/ # [Tt][Oo][Dd][Oo]( .*)?$/, "", t); print "fail\t" t }
	' "$1"
}

# bats_regex NAME...: an anchored extended regex that matches exactly these
# test names (for bats --filter).
bats_regex() {
	local n out=""
	for n in "$@"; do
		n=$(printf '%s' "$n" | sed 's/[][\.*^$+?(){}|/]/\\&/g')
		out+="${out:+|}$n"
	done
	printf '^(%s)$' "$out"
}

# run_file LABEL FILE [SUFFIX [FILTER]]: run one .bats file (only the tests
# FILTER matches, if given) under a terminal, as runc's CI does (tests of
# run without -d need one), and parse it into tap/FILE.SUFFIX.res. The
# terminal's input is a FIFO that stays open and silent: at the end of
# its input, script(1) would type into the terminal, and a container
# with a terminal would print a NUL before its output.
run_file() {
	local label=$1 f=$2 sfx=${3:-} filter=${4:-} d=$OUT/$1 rc t0=${EPOCHREALTIME/./} cmd
	cmd="bats --tap"
	[ -z "$filter" ] || cmd+=" --filter $(printf '%q' "$filter")"
	cmd+=" $(printf '%q' "$BATS_DIR/$f.bats") >$(printf '%q' "$d/tap/$f$sfx.tap") 2>$(printf '%q' "$d/tap/$f$sfx.err")"
	# Under a subreaper (tini -s) that reaps at once: tests of containers
	# without a pid namespace kill their init and wait for it to be gone,
	# and an init that reaps orphans late (as some VMs' does) would leave
	# it a zombie for either runtime.
	RUNC=$d/runc TMPDIR=$d/tmp SHELL=/bin/bash timeout -k 10 "$TIMEOUT" tini -s -- script -e -q -c "$cmd" /dev/null 0<>"$OUT/stdin" >/dev/null 2>&1
	rc=$?
	echo "$rc" >"$d/tap/$f$sfx.rc"
	[ "$rc" != 124 ] || log "$label: $f.bats timed out after ${TIMEOUT}s"
	timed "$label" "$f$sfx" "$t0"
	teardown_runtime "$label"
	parse_tap "$d/tap/$f$sfx.tap" >"$d/tap/$f$sfx.res"
}

# verdicts FILE: per test of FILE, "file<TAB>test<TAB>reference status<TAB>
# clawrun status<TAB>verdict"; a status is pass, fail, skip or missing (the
# test did not run: a crash or timeout), the verdict one of passed both,
# failed both, clawrun-only failure, clawrun-only pass, skipped, excluded.
verdicts() {
	local f=$1
	awk -F '\t' -v f="$f" -v excluded="$EXCLUDED" '
		BEGIN { n = split(excluded, ex, "\n"); for (i = 1; i <= n; i++) { split(ex[i], x, "\t"); if (x[1] == f) skip[x[2]] = 1 } }
		FILENAME == ARGV[1] { c[$2] = $1; next }
		{
			r = $1; t = $2; seen[t] = 1
			s = (t in c) ? c[t] : "missing"
			if (t in skip) v = "excluded"
			else if (r == "skip" || s == "skip" && r != "pass") v = "skipped"
			else if (r == "pass" && s == "pass") v = "passed both"
			else if (r == "pass") v = "clawrun-only failure"
			else if (s == "pass") v = "clawrun-only pass"
			else v = "failed both"
			printf "%s\t%s\t%s\t%s\t%s\n", f, t, r, s, v
		}
		END { for (t in c) if (!(t in seen)) printf "%s\t%s\tmissing\t%s\t%s\n", f, t, c[t], (c[t] == "pass" ? "clawrun-only pass" : "skipped") }
	' "$OUT/$claw/tap/$f.res" "$OUT/$ref/tap/$f.res"
}

# regressed FILE: the tests of FILE that the reference passes and clawrun
# does not, as "test<TAB>clawrun status".
regressed() {
	verdicts "$1" | awk -F '\t' '$5 == "clawrun-only failure" { print $2 "\t" $4 }'
}

# retry FILE N: rerun, for both runtimes, the tests of FILE that regressed,
# and put their new results in place of the old ones (the old logs stay as
# FILE.tryN.*).
retry() {
	local f=$1 n=$2 label regex
	local -a names
	mapfile -t names < <(regressed "$f" | cut -f1)
	regex=$(bats_regex "${names[@]}")
	for label in "$ref" "$claw"; do
		run_file "$label" "$f" ".try$n" "$regex"
		# Merge: the retried tests' new results replace the old ones.
		awk -F '\t' 'FILENAME == ARGV[1] { new[$2] = $0; next } { print (($2 in new) ? new[$2] : $0) }' \
			"$OUT/$label/tap/$f.try$n.res" "$OUT/$label/tap/$f.res" >"$OUT/$label/tap/$f.res.new" &&
			mv "$OUT/$label/tap/$f.res.new" "$OUT/$label/tap/$f.res"
	done
}

# ---- run ---------------------------------------------------------------------

for label in "${labels[@]}"; do setup_runtime "$label"; done
trap on_interrupt INT TERM
rm -f "$OUT/summary.txt" "$OUT/flaky.txt" "$OUT/results.tsv" "$OUT/stdin"
mkfifo "$OUT/stdin" || die "mkfifo $OUT/stdin"
: >"$OUT/regressions.txt"

start=$SECONDS
total=${#files[@]} i=0
# Interleaved per file (reference first), so load and machine state affect
# both runtimes alike and a regression can be retried right away.
for f in "${files[@]}"; do
	i=$((i + 1))
	printf '[%d/%d] %s.bats\n' "$i" "$total" "$f" >&2
	run_file "$ref" "$f"
	run_file "$claw" "$f"
	r=0
	while [ "$r" -lt "$RETRIES" ] && [ -n "$(regressed "$f")" ]; do
		r=$((r + 1))
		printf '[%d/%d] %s.bats (retry %d of %d test(s) for both runtimes)\n' "$i" "$total" "$f" "$r" "$(regressed "$f" | wc -l)" >&2
		before=$(regressed "$f" | cut -f1)
		retry "$f" "$r"
		after=$(regressed "$f" | cut -f1)
		comm -23 <(sort <<<"$before") <(sort <<<"$after") | sed '/^$/d' |
			awk -v f="$f" -v r="$r" '{ printf "%s.bats: %s (no regression on retry %d)\n", f, $0, r }' >>"$OUT/flaky.txt"
	done
done
for label in "${labels[@]}"; do teardown_runtime "$label"; done
trap - INT TERM
elapsed=$((SECONDS - start))
# CPU time of everything the run started (the containers included): on a
# busy machine a better measure of the suite's cost than the wall time.
times >"$OUT/cpu.txt"
cpu=$(awk 'NR == 2 { print "user " $1 ", system " $2 }' "$OUT/cpu.txt")

# ---- report ------------------------------------------------------------------

# results.tsv: the verdicts of every file.
for f in "${files[@]}"; do verdicts "$f"; done >"$OUT/results.tsv"
awk -F '\t' '$5 == "clawrun-only failure" { print $1 "\t" $2 "\t" $4 }' "$OUT/results.tsv" >"$OUT/regressions.txt"

awk -F '\t' -v order="${files[*]}" -v claw="$claw" -v ref="$ref" -v version="$RUNC_VERSION" '
	{ n[$1, $5]++; tot[$5]++ }
	function row(name, a, b, c, d, e, mark) { printf "%-28s %6s %6s %9s %9s %7s%s\n", name, a, b, c, d, e, mark }
	function counts(name, k, mark) {
		row(name, n[k, "passed both"] + 0, n[k, "failed both"] + 0, n[k, "clawrun-only failure"] + 0,
			n[k, "clawrun-only pass"] + 0, n[k, "skipped"] + 0, mark)
	}
	END {
		split(order, fs, " ")
		printf "runc %s integration suite: %s against %s\n", version, claw, ref
		row("file", "both", "both", claw "-only", claw "-only", "", "")
		row("", "pass", "fail", "failures", "passes", "skipped", "")
		for (i = 1; i in fs; i++) counts(fs[i] ".bats", fs[i], n[fs[i], "clawrun-only failure"] ? "  <<" : "")
		for (v in tot) n["TOTAL", v] = tot[v]
		counts("TOTAL", "TOTAL", "")
		if (tot["excluded"]) printf "(%d test(s) excluded: they assert the binary'"'"'s name or version)\n", tot["excluded"]
	}' "$OUT/results.tsv" | tee "$OUT/summary.txt"

{
	echo "runc-bats: ${#files[@]} files per runtime in ${elapsed}s ($(durations); CPU $cpu);" \
		"logs in $OUT/{$claw,$ref}/tap/, per test in $OUT/results.tsv"
	report_flaky
	if awk -F '\t' '$5 == "failed both" { found = 1 } END { exit !found }' "$OUT/results.tsv"; then
		echo "runc-bats: failed for both runtimes on this machine (not counted):"
		awk -F '\t' '$5 == "failed both" { printf "  %s.bats: %s\n", $1, $2 }' "$OUT/results.tsv"
	fi
	if awk -F '\t' '$5 == "clawrun-only pass" { found = 1 } END { exit !found }' "$OUT/results.tsv"; then
		echo "runc-bats: passed by $claw only:"
		awk -F '\t' '$5 == "clawrun-only pass" { printf "  %s.bats: %s\n", $1, $2 }' "$OUT/results.tsv"
	fi
} | tee -a "$OUT/summary.txt"

if ! awk -F '\t' '$3 == "pass" { found = 1; exit } END { exit !found }' "$OUT/results.tsv"; then
	echo "runc-bats: ERROR: $ref passed no test; see $OUT/$ref/tap/*.tap" | tee -a "$OUT/summary.txt"
	exit 2
fi
if [ -s "$OUT/regressions.txt" ]; then
	{
		echo "runc-bats: FAIL: $claw fails $(wc -l <"$OUT/regressions.txt") test(s) that $ref passes:"
		awk -F '\t' '{ printf "  %s.bats: %s (%s)\n", $1, $2, $3 }' "$OUT/regressions.txt"
		echo "  logs: $OUT/$claw/tap/<file>.tap"
	} | tee -a "$OUT/summary.txt"
	exit 1
fi
echo "runc-bats: OK: $claw passes every test that $ref passes" | tee -a "$OUT/summary.txt"
exit 0
