#!/bin/bash
# mkbundle.sh DIR [ARG...]: make an OCI bundle in DIR from Debian's static
# busybox (no registry is reachable from the test machines). The spec comes
# from `$RUNTIME spec` (default: clawrun) and is edited with jq: no terminal,
# the given command (default: sh), hostname "test".
set -euo pipefail
dir=${1:?usage: mkbundle.sh DIR [ARG...]}
shift
runtime=${RUNTIME:-${CLAWRUN:-clawrun}}
busybox=${BUSYBOX:-/bin/busybox}
[ -x "$busybox" ] || { echo "mkbundle: $busybox not found (apt-get install busybox-static)" >&2; exit 1; }

mkdir -p "$dir/rootfs"
root="$dir/rootfs"
mkdir -p "$root"/{bin,sbin,usr/bin,usr/sbin,etc,tmp,proc,sys,dev,sandbox,root,var/log}
chmod 1777 "$root/tmp"
cp "$busybox" "$root/bin/busybox"
for applet in $("$busybox" --list); do
	[ "$applet" = busybox ] || ln -sf busybox "$root/bin/$applet"
done
cat > "$root/etc/passwd" <<'P'
root:x:0:0:root:/root:/bin/sh
agent:x:1000:1000:agent:/sandbox:/bin/sh
nobody:x:65534:65534:nobody:/nonexistent:/bin/false
P
cat > "$root/etc/group" <<'G'
root:x:0:
agent:x:1000:
nogroup:x:65534:
G
printf 'NAME="busybox"\nID=busybox\n' > "$root/etc/os-release"

(cd "$dir" && rm -f config.json && "$runtime" spec)
args='["sh"]'
if [ $# -gt 0 ]; then args=$(jq -cn '$ARGS.positional' --args -- "$@"); fi
jq --argjson args "$args" '.process.terminal = false | .process.args = $args | .hostname = "test"' \
	"$dir/config.json" > "$dir/config.json.new"
mv "$dir/config.json.new" "$dir/config.json"
