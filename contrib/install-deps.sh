#!/bin/bash
# install-deps.sh: install what building and testing clawrun needs on a
# Debian 12 machine (as root). Idempotent: installs only what is missing.
set -euo pipefail

packages=(
	build-essential pkg-config   # cgo, static linking
	libseccomp-dev               # libcontainer's seccomp (linked statically)
	busybox-static               # test and demo root filesystems
	debootstrap                  # a Debian root filesystem for the tests (test/mkdebian.sh)
	runc                         # Debian's runc 1.1.5, a second benchmark reference
	nftables                     # nft: the egress tests read the rules in a container's netns
	bats gawk                    # runc's own integration suite (test/conformance/runc-bats.sh)
	tini                         # its reaper there, when PID 1 reaps orphans late
	auditd                       # auditctl: the audit test turns the host's audit on and back
	jq iproute2 procps util-linux git ca-certificates
)
missing=()
for p in "${packages[@]}"; do
	[ "$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null)" = "install ok installed" ] || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
	echo "install-deps: installing ${missing[*]}" >&2
	export DEBIAN_FRONTEND=noninteractive
	apt-get update -qq
	apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# The commands the test suites run on the host: a missing one fails the
# tests that need it, so say so here, before they start.
for cmd in gcc busybox debootstrap nft ip tc nsenter unshare flock script timeout jq bats gawk tini tar auditctl; do
	command -v "$cmd" >/dev/null || { echo "install-deps: $cmd is missing after installing the packages" >&2; exit 1; }
done

if ! command -v go >/dev/null; then
	if [ -x /usr/local/go/bin/go ]; then
		echo "install-deps: Go is at /usr/local/go/bin: add it to PATH" >&2
	else
		echo "install-deps: Go 1.26 is needed (https://go.dev/dl)" >&2
	fi
	exit 1
fi
