#!/bin/bash
# setup.sh: install and build what the end-to-end tests (test/e2e) drive,
# on a Debian 12 machine, as root:
#   - Debian's packages: docker.io (dockerd 20.10, with containerd 1.6 and
#     its runc shim), iptables, CNI plugins, busybox-static, gcc;
#   - from the Go module proxy, into $E2E_TOOLS/bin: containerd, ctr and
#     containerd-shim-runc-v2 2.2.9, crictl, nerdctl, a current dockerd
#     (moby v2) and the docker CLI that drives it (Debian's 20.10 CLI
#     predates --annotation);
#   - the Kubernetes components of the cluster tests (kube-setup.sh, a
#     cache of their own), linked as $E2E_TOOLS/kube;
#   - local images (no registry is reachable): a busybox rootfs tarball for
#     `docker import`, and busybox and pause images as OCI layout tarballs
#     for `ctr images import` (nerdctl, CRI).
# $E2E_TOOLS (default $CLAWRUN_CI_CACHE/e2e-<pins>, CLAWRUN_CI_CACHE /var/cache/clawrun-ci) is reused when it
# is complete; nothing depends on it being there. Prints the E2E_TOOLS to
# export for `go test ./test/e2e/`.
set -euo pipefail

CONTAINERD_VERSION=v2.2.9
CRICTL_VERSION=v1.37.0
NERDCTL_VERSION=v2.0.4
MOBY_VERSION=v2.0.0-beta.24
DOCKER_CLI_VERSION=v28.5.2
# Bump when what this script puts in the cache changes.
LAYOUT=1

pins="$LAYOUT containerd=$CONTAINERD_VERSION crictl=$CRICTL_VERSION nerdctl=$NERDCTL_VERSION moby=$MOBY_VERSION docker-cli=$DOCKER_CLI_VERSION"
tag=$(printf '%s' "$pins" | sha256sum | cut -c1-10)
tools=${E2E_TOOLS:-${CLAWRUN_CI_CACHE:-/var/cache/clawrun-ci}/e2e-$tag}
go=${GO:-go}
start=$(date +%s)

log() { printf '%s e2e-setup (+%3ds): %s\n' "$(date -u +%T)" "$(($(date +%s) - start))" "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

[ "$(id -u)" = 0 ] || die "run as root"
command -v "$go" >/dev/null || die "Go is not on PATH (/usr/local/go/bin?)"
mkdir -p "$tools/bin" "$tools/images" "$tools/logs"
log "tools in $tools ($pins)"

# --- Debian packages ---------------------------------------------------------
packages=(docker.io iptables containernetworking-plugins busybox-static gcc libc6-dev jq iproute2 util-linux procps)
missing=()
for p in "${packages[@]}"; do
	[ "$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null)" = "install ok installed" ] || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
	log "apt: installing ${missing[*]}"
	# No daemon may start behind our back (there is no init system here,
	# but a sysvinit script would still start a system-wide dockerd).
	own_policy=
	if [ ! -e /usr/sbin/policy-rc.d ]; then
		printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d
		chmod 0755 /usr/sbin/policy-rc.d
		own_policy=1
	fi
	export DEBIAN_FRONTEND=noninteractive
	status=0
	{ apt-get update -qq && apt-get install -y -qq --no-install-recommends "${missing[@]}"; } >"$tools/logs/apt.log" 2>&1 || status=$?
	[ -z "$own_policy" ] || rm -f /usr/sbin/policy-rc.d
	[ "$status" = 0 ] || { tail -20 "$tools/logs/apt.log" >&2; die "apt-get failed"; }
	log "apt: done"
else
	log "apt: everything installed"
fi

# --- Go builds (in parallel: downloads of one overlap compiles of another) --
# Without cgo (nothing here needs it: static binaries, fewer C compiles)
# and without symbol tables (shorter links).
export GOFLAGS="${GOFLAGS:--buildvcs=false}" CGO_ENABLED=0
ldflags="-s -w"
jobs_pids=()
jobs_names=()
build() { # build NAME BINARY... -- COMMAND...: run COMMAND unless every BINARY exists
	local name=$1 need=0
	shift
	while [ "$1" != -- ]; do
		[ -x "$tools/bin/$1" ] || need=1
		shift
	done
	shift
	if [ "$need" = 0 ]; then
		log "go: $name: cached"
		return
	fi
	log "go: $name: building"
	(
		s=$(date +%s)
		if "$@" >"$tools/logs/$name.log" 2>&1; then
			log "go: $name: built in $(($(date +%s) - s))s"
		else
			tail -30 "$tools/logs/$name.log" >&2
			log "go: $name: FAILED (log: $tools/logs/$name.log)"
			exit 1
		fi
	) &
	jobs_pids+=($!)
	jobs_names+=("$name")
}

gobin_install() { # gobin_install [go install args]: into a temp GOBIN, then moved into bin/
	local tmp
	tmp=$(mktemp -d "$tools/bin.XXXXXX")
	GOBIN=$tmp "$go" install -ldflags="$ldflags" "$@" && mv "$tmp"/* "$tools/bin/" && rmdir "$tmp"
}

build_nerdctl() { # nerdctl's tags since 2.0.5 do not build outside their repo: a scratch module
	local mod="$tools/src/nerdctl-$NERDCTL_VERSION"
	rm -rf "$mod" && mkdir -p "$mod" && cd "$mod"
	"$go" mod init e2e/nerdctl
	GONOSUMDB=github.com/containerd GOFLAGS=-mod=mod "$go" get "github.com/containerd/nerdctl/v2@$NERDCTL_VERSION"
	GONOSUMDB=github.com/containerd GOFLAGS=-mod=mod "$go" build -ldflags="$ldflags" -o nerdctl.new github.com/containerd/nerdctl/v2/cmd/nerdctl
	mv nerdctl.new "$tools/bin/nerdctl"
}

build_docker_cli() { # github.com/docker/cli has no go.mod: its vendor.mod is one
	local mod="$tools/src/docker-cli-$DOCKER_CLI_VERSION" dir
	mkdir -p "$tools/src" && cd "$tools/src" # outside any module
	dir=$("$go" mod download -json "github.com/docker/cli@$DOCKER_CLI_VERSION+incompatible" | jq -r .Dir)
	rm -rf "$mod" && cp -r "$dir" "$mod" && chmod -R u+w "$mod" && cd "$mod"
	# The module zip keeps vendor/modules.txt but not the vendored code.
	rm -rf vendor && cp vendor.mod go.mod && cp vendor.sum go.sum
	GOFLAGS="$GOFLAGS -mod=mod" "$go" build -trimpath -o docker.new \
		-ldflags="$ldflags -X github.com/docker/cli/cli/version.Version=${DOCKER_CLI_VERSION#v} -X github.com/docker/cli/cli/version.GitCommit=$DOCKER_CLI_VERSION" ./cmd/docker
	mv docker.new "$tools/bin/docker"
}

build containerd containerd ctr containerd-shim-runc-v2 -- \
	gobin_install -tags no_btrfs \
	"github.com/containerd/containerd/v2/cmd/containerd@$CONTAINERD_VERSION" \
	"github.com/containerd/containerd/v2/cmd/ctr@$CONTAINERD_VERSION" \
	"github.com/containerd/containerd/v2/cmd/containerd-shim-runc-v2@$CONTAINERD_VERSION"
build crictl crictl -- gobin_install "sigs.k8s.io/cri-tools/cmd/crictl@$CRICTL_VERSION"
build nerdctl nerdctl -- build_nerdctl
build dockerd dockerd -- gobin_install "github.com/moby/moby/v2/cmd/dockerd@$MOBY_VERSION"
build docker-cli docker -- build_docker_cli

# --- images (while Go builds) -------------------------------------------------
img="$tools/images"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# busybox_rootfs DIR: a busybox system with an unprivileged user and the
# directories an agent policy names (/sandbox).
busybox_rootfs() {
	local root=$1 applet
	mkdir -p "$root"/{bin,sbin,usr/bin,usr/sbin,etc,tmp,proc,sys,dev,sandbox,root,var/log,var/tmp}
	chmod 1777 "$root/tmp" "$root/var/tmp" "$root/sandbox"
	cp /bin/busybox "$root/bin/busybox"
	for applet in $(/bin/busybox --list); do
		[ "$applet" = busybox ] || ln -sf busybox "$root/bin/$applet"
	done
	printf 'root:x:0:0:root:/root:/bin/sh\nagent:x:1000:1000:agent:/sandbox:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n' > "$root/etc/passwd"
	printf 'root:x:0:\nagent:x:1000:\nnogroup:x:65534:\n' > "$root/etc/group"
	printf 'NAME="busybox"\nID=busybox\n' > "$root/etc/os-release"
	# No /etc/resolv.conf: every front-end mounts its own (the tests give
	# ctr one), so that nothing resolves through the host's resolver.
	printf '127.0.0.1 localhost\n' > "$root/etc/hosts"
}

reproducible_tar() { # reproducible_tar DIR OUT
	tar --sort=name --mtime=@0 --owner=0 --group=0 --numeric-owner -C "$1" -cf "$2" .
}

blob() { # blob DIR FILE: move FILE into DIR/blobs/sha256, print "digest size"
	local d s
	d=$(sha256sum "$2" | cut -d' ' -f1)
	s=$(stat -c %s "$2")
	mv "$2" "$1/blobs/sha256/$d"
	echo "sha256:$d $s"
}

# oci_image OUT NAME ROOTFS CONFIG: an OCI image layout tarball with one
# uncompressed layer, named NAME for containerd (io.containerd.image.name).
oci_image() {
	local out=$1 name=$2 rootfs=$3 config=$4 d layer lsize cfg csize man msize arch
	d=$(mktemp -d "$work/oci.XXXXXX")
	mkdir -p "$d/blobs/sha256"
	arch=$(dpkg --print-architecture)
	reproducible_tar "$rootfs" "$d/layer.tar"
	read -r layer lsize < <(blob "$d" "$d/layer.tar")
	jq -nc --arg arch "$arch" --arg l "$layer" --argjson c "$config" \
		'{architecture: $arch, os: "linux", config: $c, rootfs: {type: "layers", diff_ids: [$l]},
		  history: [{created_by: "clawrun test/e2e/setup.sh"}]}' > "$d/config.json"
	read -r cfg csize < <(blob "$d" "$d/config.json")
	jq -nc --arg c "$cfg" --argjson cs "$csize" --arg l "$layer" --argjson ls "$lsize" \
		'{schemaVersion: 2, mediaType: "application/vnd.oci.image.manifest.v1+json",
		  config: {mediaType: "application/vnd.oci.image.config.v1+json", digest: $c, size: $cs},
		  layers: [{mediaType: "application/vnd.oci.image.layer.v1.tar", digest: $l, size: $ls}]}' > "$d/manifest.json"
	read -r man msize < <(blob "$d" "$d/manifest.json")
	jq -nc --arg m "$man" --argjson ms "$msize" --arg n "$name" --arg arch "$arch" \
		'{schemaVersion: 2, mediaType: "application/vnd.oci.image.index.v1+json",
		  manifests: [{mediaType: "application/vnd.oci.image.manifest.v1+json", digest: $m, size: $ms,
		    platform: {architecture: $arch, os: "linux"},
		    annotations: {"io.containerd.image.name": $n, "org.opencontainers.image.ref.name": ($n | sub(".*:"; ""))}}]}' > "$d/index.json"
	echo '{"imageLayoutVersion":"1.0.0"}' > "$d/oci-layout"
	tar -C "$d" -cf "$out.new" oci-layout index.json blobs
	mv "$out.new" "$out"
}

if [ -s "$img/busybox-rootfs.tar" ] && [ -s "$img/busybox-oci.tar" ] && [ -s "$img/pause-oci.tar" ]; then
	log "images: cached"
else
	log "images: building busybox and pause"
	busybox_rootfs "$work/busybox"
	reproducible_tar "$work/busybox" "$img/busybox-rootfs.tar.new"
	mv "$img/busybox-rootfs.tar.new" "$img/busybox-rootfs.tar"
	oci_image "$img/busybox-oci.tar" docker.io/clawrun-e2e/busybox:1 "$work/busybox" \
		'{"Cmd": ["sh"], "Env": ["PATH=/usr/sbin:/usr/bin:/sbin:/bin"], "WorkingDir": "/"}'

	# The CRI sandbox ("pause") image: a static program that sleeps until
	# it is signalled, reaping what it inherits.
	mkdir -p "$work/pause/etc" "$work/pause/dev" "$work/pause/proc" "$work/pause/sys"
	cat > "$work/pause.c" <<'EOF'
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

static void stop(int sig) { (void)sig; _exit(0); }
static void reap(int sig) { (void)sig; while (waitpid(-1, 0, WNOHANG) > 0) {} }

int main(void) {
	signal(SIGTERM, stop);
	signal(SIGINT, stop);
	signal(SIGCHLD, reap);
	for (;;) pause();
}
EOF
	gcc -static -Os -s -o "$work/pause/pause" "$work/pause.c"
	printf 'root:x:0:0:root:/:/pause\nnobody:x:65534:65534:nobody:/:/pause\n' > "$work/pause/etc/passwd"
	printf 'root:x:0:\nnogroup:x:65534:\n' > "$work/pause/etc/group"
	oci_image "$img/pause-oci.tar" docker.io/clawrun-e2e/pause:1 "$work/pause" \
		'{"Entrypoint": ["/pause"], "User": "65534:65534", "WorkingDir": "/"}'
	log "images: done"
fi

failed=0
for i in "${!jobs_pids[@]}"; do
	wait "${jobs_pids[$i]}" || { failed=1; log "go: ${jobs_names[$i]} failed"; }
done
[ "$failed" = 0 ] || die "a build failed"
# The builds' scratch module is not needed once nerdctl is built.
rm -rf "$tools/src"

# The Kubernetes cluster's components (kube_*_test.go): a cache of their
# own, keyed by their version; the tests find them through this link.
kube=$(bash "$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/kube-setup.sh") || die "kube-setup.sh failed"
ln -sfn "$kube" "$tools/kube"

for b in containerd ctr containerd-shim-runc-v2 crictl nerdctl dockerd docker; do
	[ -x "$tools/bin/$b" ] || die "$tools/bin/$b is missing"
done
log "ready in $(($(date +%s) - start))s: export E2E_TOOLS=$tools"
echo "$tools"
