#!/bin/bash
# build-image.sh: the clawrun-deploy image, built locally from the repo's
# binaries, without a registry or a container engine: an OCI image layout
# tarball for `ctr -n k8s.io images import` on each node (or `skopeo copy
# oci-archive:...` to a registry of yours).
#
#   build-image.sh BIN_DIR OUT.tar [NAME]
#
# BIN_DIR has clawrun, clawrun-egress, clawrun-egress-worker, clawrun-launch, clawrun-metrics,
# containerd-shim-clawrun-v2 and
# clawrun-deploy (`make build`); NAME defaults to
# docker.io/clawrun/clawrun-deploy:<VERSION>, the DaemonSets' image. The
# image holds the binaries and contrib/containerd/clawrun-agent in
# /opt/clawrun/bin, the installer, and a
# static busybox for the shell commands the installer runs (nsenter,
# systemctl through it) and the readiness probe. Needs busybox-static, jq.
set -euo pipefail

[ $# -ge 2 ] || { echo "usage: $0 BIN_DIR OUT.tar [NAME]" >&2; exit 2; }
bin=$1 out=$2
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/../../.." && pwd)
name=${3:-docker.io/clawrun/clawrun-deploy:$(cat "$repo/VERSION")}
busybox=${BUSYBOX:-/bin/busybox}

for f in clawrun clawrun-egress clawrun-egress-worker clawrun-launch clawrun-metrics containerd-shim-clawrun-v2 clawrun-deploy; do
	[ -x "$bin/$f" ] || { echo "build-image.sh: $bin/$f is missing (make build)" >&2; exit 1; }
done
# busybox --list writes one applet per write(2): read it whole, since a
# grep -q that stops early would kill it with SIGPIPE (and pipefail fails).
applets=$("$busybox" --list)
grep -qx nsenter <<<"$applets" || { echo "build-image.sh: $busybox has no nsenter (install busybox-static)" >&2; exit 1; }

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
root=$work/rootfs
mkdir -p "$root"/{bin,tmp,host,opt/clawrun/bin,usr/local/bin,proc,sys,dev,etc}
chmod 1777 "$root/tmp"
cp "$busybox" "$root/bin/busybox"
for applet in sh test cat sleep touch rm ls nsenter chroot; do
	ln -s busybox "$root/bin/$applet"
done
cp "$bin/clawrun" "$bin/clawrun-egress" "$bin/clawrun-egress-worker" "$bin/clawrun-launch" "$bin/clawrun-metrics" \
	"$bin/containerd-shim-clawrun-v2" "$root/opt/clawrun/bin/"
# The floor wrapper the installer puts on the node, with the node's paths.
cp "$repo/contrib/containerd/clawrun-agent" "$root/opt/clawrun/bin/"
cp "$bin/clawrun-deploy" "$root/usr/local/bin/"
printf 'root:x:0:0:root:/:/bin/sh\n' > "$root/etc/passwd"

# One uncompressed layer, reproducible; the layout's index names the image
# for containerd (io.containerd.image.name).
arch=$(go env GOARCH 2>/dev/null || dpkg --print-architecture)
blobs=$work/oci/blobs/sha256
mkdir -p "$blobs"
blob() { # blob FILE: move FILE into the blobs, print "digest size"
	local d s
	d=$(sha256sum "$1" | cut -d' ' -f1)
	s=$(stat -c %s "$1")
	mv "$1" "$blobs/$d"
	echo "sha256:$d $s"
}
tar --sort=name --mtime=@0 --owner=0 --group=0 --numeric-owner -C "$root" -cf "$work/layer.tar" .
read -r layer lsize < <(blob "$work/layer.tar")
jq -nc --arg arch "$arch" --arg l "$layer" \
	'{architecture: $arch, os: "linux",
	  config: {Entrypoint: ["/usr/local/bin/clawrun-deploy"], Cmd: ["install", "-wait"], Env: ["PATH=/usr/local/bin:/bin"], WorkingDir: "/"},
	  rootfs: {type: "layers", diff_ids: [$l]}, history: [{created_by: "contrib/kubernetes/deploy/build-image.sh"}]}' > "$work/config.json"
read -r cfg csize < <(blob "$work/config.json")
jq -nc --arg c "$cfg" --argjson cs "$csize" --arg l "$layer" --argjson ls "$lsize" \
	'{schemaVersion: 2, mediaType: "application/vnd.oci.image.manifest.v1+json",
	  config: {mediaType: "application/vnd.oci.image.config.v1+json", digest: $c, size: $cs},
	  layers: [{mediaType: "application/vnd.oci.image.layer.v1.tar", digest: $l, size: $ls}]}' > "$work/manifest.json"
read -r man msize < <(blob "$work/manifest.json")
jq -nc --arg m "$man" --argjson ms "$msize" --arg n "$name" --arg arch "$arch" \
	'{schemaVersion: 2, mediaType: "application/vnd.oci.image.index.v1+json",
	  manifests: [{mediaType: "application/vnd.oci.image.manifest.v1+json", digest: $m, size: $ms,
	    platform: {architecture: $arch, os: "linux"},
	    annotations: {"io.containerd.image.name": $n, "org.opencontainers.image.ref.name": ($n | sub(".*:"; ""))}}]}' > "$work/oci/index.json"
echo '{"imageLayoutVersion":"1.0.0"}' > "$work/oci/oci-layout"
tar -C "$work/oci" -cf "$out.new" oci-layout index.json blobs
mv "$out.new" "$out"
echo "build-image.sh: $name in $out" >&2
