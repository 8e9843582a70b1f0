#!/bin/bash
# kube-setup.sh: build, once, the Kubernetes components of the end-to-end
# tests' single-node cluster (test/e2e/kube_*_test.go) into $KUBE_TOOLS
# (default /var/cache/clawrun-ci/kube-<pins>), and print that directory.
#
# One release, built from the Go module proxy: k8s.io/kubernetes's module
# zip has no staging/ tree, so its go.mod's 33 `=> ./staging/...` replace
# lines are dropped and the published k8s.io/* modules of the same release
# (v0.<minor>.<patch>) required instead. kube-apiserver,
# kube-controller-manager, kube-scheduler, kubelet, kubectl and etcd (the
# etcd server version that Kubernetes release requires, from a tiny main
# package that calls etcdmain.Main) are compiled by ONE go build, so the
# packages they share are compiled once; stripped, without cgo, every
# component reporting the release's version.
set -euo pipefail

KUBE_VERSION=v1.37.2
# Bump when what this script puts in the cache changes.
LAYOUT=1

pins="$LAYOUT kubernetes=$KUBE_VERSION"
tag=$(printf '%s' "$pins" | sha256sum | cut -c1-10)
cache=${CLAWRUN_CI_CACHE:-/var/cache/clawrun-ci}
tools=${KUBE_TOOLS:-$cache/kube-$tag}
go=${GO:-go}
components=(kube-apiserver kube-controller-manager kube-scheduler kubelet kubectl etcd)
start=$(date +%s)

log() { printf '%s kube-setup (+%3ds): %s\n' "$(date -u +%T)" "$(($(date +%s) - start))" "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

complete() {
	local c
	for c in "${components[@]}"; do
		[ -x "$tools/bin/$c" ] || return 1
	done
}

command -v "$go" >/dev/null || die "Go is not on PATH (/usr/local/go/bin?)"
command -v jq >/dev/null || die "jq is not installed (test/e2e/setup.sh installs it)"
mkdir -p "$tools"
exec 9>"$tools.lock"
flock -w 3600 9 || die "another build holds $tools.lock"
if complete; then
	log "Kubernetes $KUBE_VERSION components: cached in $tools"
	echo "$tools"
	exit 0
fi

mkdir -p "$tools/logs"
buildlog=$tools/logs/build.log
src=$tools/src/kubernetes
export GOWORK=off GOFLAGS="-mod=mod -buildvcs=false" CGO_ENABLED=0

# --- the source: k8s.io/kubernetes against the published staging modules ---
log "Kubernetes $KUBE_VERSION: downloading the source"
info=$(cd / && "$go" mod download -json "k8s.io/kubernetes@$KUBE_VERSION") || die "go mod download k8s.io/kubernetes@$KUBE_VERSION failed"
rm -rf "$tools/src" && mkdir -p "$tools/src"
cp -r "$(jq -r .Dir <<<"$info")" "$src" && chmod -R u+w "$src"
cd "$src"
rm -rf go.work go.work.sum vendor
staging_version=v0.${KUBE_VERSION#v1.}
staged=$(sed -n 's|^[[:space:]]*\(k8s\.io/[^ ]*\) => \./staging/.*|\1|p' go.mod)
[ "$(wc -l <<<"$staged")" -ge 30 ] || die "go.mod of k8s.io/kubernetes@$KUBE_VERSION: expected its ./staging replace lines, found: $staged"
sed -i '/=> \.\/staging\//d' go.mod
for m in $staged; do
	sed -i "s|^\([[:space:]]*\)${m//./\\.} v0\.0\.0\$|\1$m $staging_version|" go.mod
done
! grep -q ' v0\.0\.0$' go.mod || die "go.mod still requires v0.0.0 modules: $(grep ' v0\.0\.0$' go.mod)"

# etcd: the server version this release's go.mod requires.
mkdir -p clawrun-e2e/etcd
cat > clawrun-e2e/etcd/main.go <<'EOF'
// etcd for the clawrun end-to-end tests' cluster.
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() { etcdmain.Main(os.Args) }
EOF

# --- the build ------------------------------------------------------------------
# What Kubernetes's own build stamps (hack/lib/version.sh); the build date
# is the release's, so that the binaries do not depend on when they were built.
date=$(jq -r .Time "$(jq -r .Info <<<"$info")")
minor=${KUBE_VERSION#v1.}
minor=${minor%%.*}
ldflags="-s -w"
for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
	ldflags+=" -X $pkg.gitVersion=$KUBE_VERSION -X $pkg.gitMajor=1 -X $pkg.gitMinor=$minor"
	ldflags+=" -X $pkg.gitTreeState=clean -X $pkg.buildDate=$date"
done
log "building ${components[*]} $KUBE_VERSION in one go build (the first time: about 15 min on 2 idle cores, 45 under load; log: $buildlog)"
log "load before the build: $(cut -d' ' -f1-3 /proc/loadavg), $(nproc) cores"
(
	while sleep 60; do
		log "still building: $(grep -vc '^go: downloading' "$buildlog" 2>/dev/null) packages compiled, load $(cut -d' ' -f1-3 /proc/loadavg)"
	done
) &
ticker=$!
out=$tools/bin.new
rm -rf "$out" && mkdir -p "$out"
status=0
"$go" build -v -trimpath -ldflags="$ldflags" -o "$out/" \
	./cmd/kube-apiserver ./cmd/kube-controller-manager ./cmd/kube-scheduler ./cmd/kubelet ./cmd/kubectl \
	./clawrun-e2e/etcd >"$buildlog" 2>&1 || status=$?
kill "$ticker" 2>/dev/null || true
wait "$ticker" 2>/dev/null || true
if [ "$status" != 0 ]; then
	tail -30 "$buildlog" >&2
	die "go build failed (log: $buildlog)"
fi
rm -rf "$tools/bin" && mv "$out" "$tools/bin"
cd / && rm -rf "$tools/src"
complete || die "a component is missing from $tools/bin"
log "built in $(($(date +%s) - start))s (load now $(cut -d' ' -f1-3 /proc/loadavg)): $(du -sh "$tools/bin" | cut -f1) in $tools/bin"
"$tools/bin/kubelet" --version >&2
echo "$tools"
