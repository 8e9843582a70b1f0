#!/bin/bash
# mkdebian.sh: print the path of a Debian root filesystem (minbase plus
# python3-minimal: glibc, the dynamic loader, bash, coreutils, dpkg, a
# Python) for tests of policies on a real distribution's userland. Built
# once with debootstrap from the Debian mirror apt uses (about 30 s and
# 240 MB) into the CI cache, then reused. Tests use it read-only.
#
# Environment: CLAWRUN_CI_CACHE (default /var/cache/clawrun-ci),
# DEBIAN_SUITE (default bookworm), DEBIAN_MIRROR (default
# http://deb.debian.org/debian).
set -euo pipefail
suite=${DEBIAN_SUITE:-bookworm}
mirror=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
cache=${CLAWRUN_CI_CACHE:-/var/cache/clawrun-ci}
dir=$cache/debian-$suite-minbase-python3

die() { echo "mkdebian: $*" >&2; exit 1; }

mkdir -p "$cache"
exec 9>"$cache/.debian.lock"
flock -w 600 9 || die "another build holds $cache/.debian.lock"
if [ ! -f "$dir/.complete" ]; then
	command -v debootstrap >/dev/null || die "debootstrap not found (make deps)"
	tmp=$(mktemp -d "$cache/.debian-XXXXXX")
	echo "mkdebian: debootstrap $suite (minbase, python3-minimal) from $mirror into $dir" >&2
	if ! debootstrap --variant=minbase --include=python3-minimal "$suite" "$tmp" "$mirror" >"$tmp.log" 2>&1; then
		tail -20 "$tmp.log" >&2
		rm -rf "$tmp" "$tmp.log"
		die "debootstrap failed"
	fi
	rm -f "$tmp.log"
	# What the tests need in it: the agent's workspace (a mount point) and
	# a file outside every path agent-default lists.
	mkdir -p "$tmp/sandbox"
	echo "clawrun test secret" >"$tmp/srv/clawrun-secret.txt"
	touch "$tmp/.complete"
	rm -rf "$dir"
	mv "$tmp" "$dir"
fi
echo "$dir"
