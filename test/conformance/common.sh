# common.sh: what the two judges of runc compatibility (run.sh: the OCI
# runtime-tools suite; runc-bats.sh: runc's own bats suite) share, sourced
# by both after they set PREFIX (their log prefix): the two runtimes, the
# cache and the machine-wide lock, a suite's source from the Go module
# proxy, the names of the tests to run, the per-runtime sandboxes' timing
# and cleanup, and the interrupt handler.
#
# It sets: here, repo, CLAWRUN and RUNC (absolute after preconditions),
# CACHE, GO; claw and ref, the runtimes' labels, and BIN[label], their
# binaries. The caller sets OUT, SUITE, labels and teardown_runtime.
# shellcheck shell=bash

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/../.." && pwd)

CLAWRUN=${CLAWRUN:-$repo/bin/clawrun}
RUNC=${RUNC:-$repo/bin/runc-1.5.2}
CACHE=${CLAWRUN_CI_CACHE:-/var/cache/clawrun-ci}
GO=${GO:-go}

log() { printf '%s: %s\n' "$PREFIX" "$*" >&2; }
die() { log "$*"; exit 2; }

# preconditions TOOL...: root, the tools (and those every run needs), and
# both runtimes executable.
preconditions() {
	local tool
	[ "$(id -u)" = 0 ] || die "must run as root (the suite creates real containers)"
	for tool in "$GO" "$@" timeout tar flock awk; do
		command -v "$tool" >/dev/null || die "missing tool: $tool (make deps)"
	done
	CLAWRUN=$(readlink -f "$CLAWRUN") RUNC=$(readlink -f "$RUNC")
	[ -x "$CLAWRUN" ] || die "CLAWRUN=$CLAWRUN is not executable (make build)"
	[ -x "$RUNC" ] || die "RUNC=$RUNC is not executable (make bin/runc-1.5.2)"
	claw=clawrun ref=$(basename "$RUNC")
	[ "$ref" != "$claw" ] || ref=reference
	# shellcheck disable=SC2034  # for the caller
	declare -gA BIN=([$claw]=$CLAWRUN [$ref]=$RUNC) USEC
}

# lock LOCK SECONDS: make CACHE and OUT (absolute: the tests run from
# elsewhere) and hold CACHE/LOCK, waiting up to SECONDS for another run.
lock() {
	mkdir -p "$CACHE" "$OUT" || die "cannot create $CACHE or $OUT"
	CACHE=$(cd "$CACHE" && pwd) OUT=$(cd "$OUT" && pwd)
	exec 9>"$CACHE/$1"
	flock -w "$2" 9 || die "another run holds $CACHE/$1"
}

# fetch_module MODULE VERSION FILE TMP: the module's source from the Go
# module proxy, copied to TMP and made writable (the module cache is
# read-only); FILE must be in it.
fetch_module() {
	local dir
	# Outside any module, so the project's go.mod is neither consulted nor
	# touched; go mod download prints the extracted module's Dir.
	dir=$(cd / && GO111MODULE=on GOWORK=off GOFLAGS=-mod=mod "$GO" mod download -json "$1@$2" |
		sed -n 's/^[[:space:]]*"Dir": "\(.*\)",\{0,1\}$/\1/p') || true
	[ -f "$dir/$3" ] || die "go mod download $1@$2 failed"
	rm -rf "$4"
	cp -R "$dir" "$4" || die "cannot copy $dir to $4"
	chmod -R u+w "$4" || die "chmod $4"
}

# install_suite TMP: the build in TMP, complete, replaces SUITE (the
# .built stamp is written last, so a half-done build is redone).
install_suite() {
	touch "$1/.built"
	rm -rf "$SUITE"
	mv "$1" "$SUITE" || die "cannot move $1 to $SUITE"
}

# names LIST TEMPLATE: one a line, the names of LIST (space-separated),
# each checked to have its file TEMPLATE ("{}" stands for the name), or,
# if LIST is empty, the name of every such file.
names() {
	local ext=.${2##*.} n f
	if [ -n "$1" ]; then
		for n in $1; do
			[ -e "${2//\{\}/$n}" ] || die "no such test: $n"
			echo "$n"
		done
		return
	fi
	for f in ${2//\{\}/*}; do basename "$f" "$ext"; done
}

# timed LABEL NAME T0: adds the time since T0 (EPOCHREALTIME, µs) to the
# runtime's total and to its times.tsv, for spotting slow operations.
timed() {
	local now=${EPOCHREALTIME/./}
	USEC[$1]=$((${USEC[$1]:-0} + now - $3))
	printf '%s\t%d\n' "$2" $(((now - $3) / 1000)) >>"$OUT/$1/times.tsv"
}

# durations: each runtime's total, "clawrun Ns, REF Ns".
durations() {
	printf '%s %ds, %s %ds' "$claw" $((${USEC[$claw]:-0} / 1000000)) "$ref" $((${USEC[$ref]:-0} / 1000000))
}

# cleanup_tmp LABEL: unmount what is left below the runtime's tmp/ (the
# tests' bundles; a test without a mount namespace makes the runtime
# mount into it in our namespace), deepest first, then remove it, never
# through a mount point.
cleanup_tmp() {
	local tmp=$OUT/$1/tmp m
	awk -v p="$tmp/" 'index($5, p) == 1 { print $5 }' /proc/self/mountinfo | sort -r |
		while read -r m; do umount -l "$m" 2>/dev/null || true; done
	if awk -v p="$tmp/" 'index($5, p) == 1 { found = 1 } END { exit !found }' /proc/self/mountinfo; then
		log "warning: mounts remain under $tmp; not removing it"
		return
	fi
	rm -rf "${tmp:?}"/* 2>/dev/null || true
}

# on_interrupt: on ^C or kill, leave no containers, mounts or cgroups
# behind (trap on_interrupt INT TERM).
# shellcheck disable=SC2317  # invoked by the trap
on_interrupt() {
	trap - INT TERM
	log "interrupted; cleaning up"
	local l
	# shellcheck disable=SC2154  # the caller's
	for l in "${labels[@]}"; do teardown_runtime "$l"; done
	exit 130
}

# report_flaky: the tests that regressed, then not on a retry.
report_flaky() {
	if [ -s "$OUT/flaky.txt" ]; then
		echo "$PREFIX: flaky (regressed, then not on a retry of both runtimes):"
		sed 's/^/  /' "$OUT/flaky.txt"
	fi
}
