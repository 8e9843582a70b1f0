#!/bin/bash
# demo.sh: run an "agent" in a container with clawrun, from a busybox
# bundle built on the spot (no registry needed), and show what the agent
# sees and how long the sandbox took to start.
set -euo pipefail
here=$(cd "$(dirname "$0")/../.." && pwd)
clawrun=${CLAWRUN:-$here/bin/clawrun}
[ "$(id -u)" = 0 ] || { echo "demo: run as root (containers need it)" >&2; exit 1; }

work=$(mktemp -d /tmp/clawrun-demo.XXXXXX)
state="$work/state"
cleanup() {
	"$clawrun" --root "$state" delete --force demo-agent >/dev/null 2>&1 || true
	rm -rf "$work"
}
trap cleanup EXIT

echo "== building a busybox bundle in $work/bundle"
RUNTIME=$clawrun "$here/test/mkbundle.sh" "$work/bundle" sh -c '
echo "agent: hostname=$(hostname) pid=$$ uid=$(id -u)"
echo "agent: processes I can see: $(ps -o pid= | wc -l)"
echo "agent: root filesystem read-only? $(touch /usr/x 2>/dev/null && echo no || echo yes)"
echo "agent: /tmp writable? $(touch /tmp/x 2>/dev/null && echo yes || echo no)"
echo "agent: network interfaces: $(ls /sys/class/net | tr "\n" " ")"
exit 0'
# The agent's scratch space is a tmpfs at /tmp; everything else is read-only.
jq '.mounts += [{"destination":"/tmp","type":"tmpfs","source":"tmpfs","options":["nosuid","nodev","size=16m"]}]' \
	"$work/bundle/config.json" > "$work/config.json" && mv "$work/config.json" "$work/bundle/config.json"

echo "== clawrun run demo-agent"
start=$(date +%s%N)
"$clawrun" --root "$state" run --bundle "$work/bundle" demo-agent
end=$(date +%s%N)
echo "== the container started, ran and was removed in $(( (end - start) / 1000000 )) ms"

echo "== a detached container, then exec into it"
jq '.process.args = ["sleep", "60"]' "$work/bundle/config.json" > "$work/c.json" && mv "$work/c.json" "$work/bundle/config.json"
"$clawrun" --root "$state" run --detach --bundle "$work/bundle" demo-agent </dev/null >/dev/null 2>&1
"$clawrun" --root "$state" list
"$clawrun" --root "$state" exec demo-agent sh -c 'echo "exec: running as pid $$ next to $(cat /proc/1/comm) (pid 1)"'
"$clawrun" --root "$state" delete --force demo-agent
echo "== done: nothing is left under $state: $(ls "$state" | wc -l) containers"
