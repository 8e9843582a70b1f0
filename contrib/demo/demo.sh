#!/bin/bash
# demo.sh (make demo): run an "agent" under clawrun's built-in agent-default
# policy, plus an egress allow list of one host, and print what it tried:
# ALLOWED or DENIED, and which layer decided (Landlock, read-only mount,
# seccomp, egress).
# The same agent then runs without a policy, to show that the DENIED rows
# are the policy's doing. The machine is offline: the "internet" is a
# network namespace with a DNS server and a web server (contrib/demo/fakenet).
set -euo pipefail
here=$(cd "$(dirname "$0")/../.." && pwd)
clawrun=${CLAWRUN:-$here/bin/clawrun}
go=${GO:-go}
[ "$(id -u)" = 0 ] || { echo "demo: run as root (containers need it)" >&2; exit 1; }

work=$(mktemp -d /tmp/clawrun-demo.XXXXXX)
state=$work/state
fakenet_pid=
cleanup() {
	"$clawrun" --root "$state" delete --force demo-agent >/dev/null 2>&1 || true
	# The fake internet removes its namespaces (the agent's too) as it stops.
	if [ -n "$fakenet_pid" ]; then
		kill "$fakenet_pid" 2>/dev/null || true
		wait "$fakenet_pid" 2>/dev/null || true
	fi
	rm -rf "$work"
}
# DEMO_KEEP=1 keeps the work dir and the fake internet (its process and
# namespaces) for a look afterwards; kill the process to remove them.
[ -n "${DEMO_KEEP:-}" ] || trap cleanup EXIT

step() { printf '== %s\n' "$*" >&2; }

step "building the probe and the fake internet"
CGO_ENABLED=0 "$go" build -o "$work/probe" "$here/test/probe"
"$go" build -o "$work/fakenet" "$here/contrib/demo/fakenet"

# Two /24s of 198.18.0.0/15 (the benchmarking range) that the host does
# not use, picked as the tests pick theirs: the fake internet's link and
# the agent's. fakenet writes the addresses once it serves.
fake='' fake_range='' agent_ns='' agent_gw='' # every name's address, the link, the agent's namespace, its gateway
step "starting the fake internet"
"$work/fakenet" -env "$work/fakenet.env" -log "$work/fakenet.log" 2>"$work/fakenet.err" &
fakenet_pid=$!
for _ in $(seq 1200); do
	[ -f "$work/fakenet.env" ] && break
	kill -0 "$fakenet_pid" 2>/dev/null || { echo "demo: the fake internet did not start: $(cat "$work/fakenet.err")" >&2; exit 1; }
	sleep 0.1
done
[ -f "$work/fakenet.env" ] || { echo "demo: the fake internet did not start within 120 s" >&2; exit 1; }
# shellcheck source=/dev/null
. "$work/fakenet.env"
step "the fake internet is $fake_range, the agent's namespace $agent_ns"

# clawrun's config: where the egress filter resolves and what it may reach.
cat > "$work/config.yaml" <<EOF
egress:
  upstream_dns: ["$fake:53"]
  allowed_upstream_ranges: ["$fake_range"]
  log_dir: $work/logs
EOF

step "building the agent's container from busybox"
RUNTIME=$clawrun "$here/test/mkbundle.sh" "$work/bundle" sh /sandbox/agent.sh >/dev/null
install -m 0755 "$work/probe" "$work/bundle/rootfs/usr/bin/probe"
echo "nameserver $agent_gw" > "$work/bundle/rootfs/etc/resolv.conf"
cat > "$work/bundle/rootfs/sandbox/agent.sh" <<'EOF'
# The "agent": tries each action and prints ACTION|ALLOWED or DENIED|DETAIL.
p=/usr/bin/probe
try() { # try NAME COMMAND...: the probe prints OK or ERR <errno> <message>
	name=$1; shift
	out=$("$@" 2>&1 | head -1)
	case $out in OK*) echo "$name|ALLOWED|$out" ;; *) echo "$name|DENIED|$out" ;; esac
}
http() { # http NAME HOST ADDR: one GET with Host: HOST to ADDR:80
	out=$(printf 'GET / HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n\r\n' "$2" | nc -w 3 "$3" 80 2>&1 | tail -1)
	case $out in "host="*) echo "$1|ALLOWED|$out" ;; *) echo "$1|DENIED|${out:-no answer}" ;; esac
}
try "read /etc/os-release" $p read /etc/os-release
try "write /usr/bin/x" $p write /usr/bin/x
try "write /sandbox/out" $p write /sandbox/out
try "read /run/secrets/token" $p read /run/secrets/token
try "ptrace another process" $p ptrace 1
try "run code from memory (memfd)" $p memfd-exec
try "new user namespace" $p unshare-user
try "raw packet socket" $p socket packet
if nslookup allowed.example >/dev/null 2>&1; then echo "resolve allowed.example|ALLOWED|answered"; else echo "resolve allowed.example|DENIED|no answer"; fi
if nslookup leak-secret-data.denied.example >/dev/null 2>&1; then echo "DNS lookup of a denied name|ALLOWED|answered"; else echo "DNS lookup of a denied name|DENIED|NXDOMAIN"; fi
http "fetch http://allowed.example" allowed.example allowed.example
http "fetch http://denied.example" denied.example @FAKE@
try "UDP datagram out (QUIC-like)" $p udp @FAKE@ 443
EOF
sed -i "s/@FAKE@/$fake/g" "$work/bundle/rootfs/sandbox/agent.sh"
mkdir -p "$work/bundle/rootfs/run/secrets" && echo s3cr3t > "$work/bundle/rootfs/run/secrets/token"
# As Docker would: a writable root filesystem and CAP_NET_RAW; the agent's
# network namespace is the one wired to the fake internet.
jq --arg ns "/var/run/netns/$agent_ns" '
	.root.readonly = false
	| .process.capabilities |= with_entries(.value += ["CAP_NET_RAW"])
	| .linux.namespaces |= map(if .type == "network" then .path = $ns else . end)' \
	"$work/bundle/config.json" > "$work/c.json" && mv "$work/c.json" "$work/bundle/config.json"

run_agent() { # run_agent FILE [ANNOTATIONS-JSON]
	jq --argjson a "${2:-{\}}" '.annotations = $a' "$work/bundle/config.json" > "$work/c.json"
	cp "$work/c.json" "$work/bundle/config.json"
	"$clawrun" --root "$state" --config "$work/config.yaml" run --bundle "$work/bundle" demo-agent > "$1" 2>"$1.err" || true
}

# leaked: how many queries for the denied name reached the fake internet.
leaked() { grep -c " dns .*name=leak-secret-data" "$work/fakenet.log" 2>/dev/null || true; }

policy='{"run.clawrun.policy":"agent-default","run.clawrun.egress":"allowed.example:80"}'
step "running the agent under agent-default + egress allowed.example:80"
run_agent "$work/with.txt" "$policy"
leaked_confined=$(leaked)
step "running the same agent without a policy"
run_agent "$work/without.txt" '{}'

# Which layer refused, from what the agent saw.
layer() { # layer ACTION DETAIL
	case $1 in
	*resolve*|*DNS*|*fetch*|*UDP*) echo "egress" ;;
	*)
		case $2 in
		*EACCES*|*EXDEV*) echo "Landlock" ;;
		*EROFS*) echo "read-only mount" ;;
		*EPERM*|*ENOSYS*) echo "seccomp" ;;
		*) echo "?" ;;
		esac ;;
	esac
}
# egress_why HOST: the egress filter's rule or reason for HOST, from its log.
egress_why() {
	grep -F "\"host\":\"$1\"" "$work/logs/demo-agent.egress.jsonl" 2>/dev/null | head -1 |
		sed -n 's/.*"reason":"\([a-z_]*\)"\(,"rule":"\([^"]*\)"\)\{0,1\}.*/\1 \3/p'
}
verdict() { # verdict FILE ACTION [policy]
	line=$(grep -F "$2|" "$1" | head -1)
	v=$(echo "$line" | cut -d'|' -f2)
	d=$(echo "$line" | cut -d'|' -f3-)
	why=
	if [ "${3:-}" = policy ]; then
		case $2 in
		*allowed.example*) set -- $(egress_why allowed.example); why=" (egress rule ${2:-?})" ;;
		*"denied name"*) set -- $(egress_why leak-secret-data.denied.example); why=" (egress: ${1:-?})" ;;
		*denied.example*) set -- $(egress_why denied.example); why=" (egress: ${1:-?})" ;;
		esac
	fi
	case $v in
	ALLOWED) echo "ALLOWED$why" ;;
	DENIED) if [ -n "$why" ]; then echo "DENIED$why"; else echo "DENIED ($(layer "$2" "$d"))"; fi ;;
	*) echo "(no result)" ;;
	esac
}

echo
printf '%-32s  %-30s  %s\n' "WHAT THE AGENT TRIED" "UNDER agent-default" "WITHOUT A POLICY"
printf '%-32s  %-30s  %s\n' "--------------------" "-------------------" "----------------"
cut -d'|' -f1 "$work/with.txt" | while read -r action; do
	printf '%-32s  %-30s  %s\n' "$action" "$(verdict "$work/with.txt" "$action" policy)" "$(verdict "$work/without.txt" "$action")"
done
scope=$(cat /proc/sys/kernel/yama/ptrace_scope 2>/dev/null || echo 0)
if [ "$scope" != 0 ]; then
	echo "This host's Yama ptrace_scope is $scope: without a policy, ptrace of a process that is not a descendant is refused by Yama, not by clawrun."
fi
echo
leaked_total=$(leaked)
echo "Queries for the denied name that reached the fake internet's DNS server:" \
	"${leaked_confined:-0} from the confined agent, $(( ${leaked_total:-0} - ${leaked_confined:-0} )) from the unconfined one."
echo "Decisions of the egress filter (clawrun audit):"
sed -n 's/.*"protocol":"\([a-z]*\)".*"host":"\([^"]*\)".*"decision":"\([a-z]*\)","reason":"\([a-z_]*\)".*/  \3  \1  \2  (\4)/p' "$work/logs/demo-agent.egress.jsonl" 2>/dev/null | sort -u | head -12

step "sandbox start-up time"
cp "$work/c.json" "$work/bundle/config.json"
jq --argjson a "$policy" '.annotations = $a | .process.args = ["/usr/bin/probe", "true"]' "$work/bundle/config.json" > "$work/c.json"
cp "$work/c.json" "$work/bundle/config.json"
best=
for _ in 1 2 3 4 5; do
	s=$(date +%s%N)
	"$clawrun" --root "$state" --config "$work/config.yaml" run --bundle "$work/bundle" demo-agent >/dev/null 2>&1
	e=$(date +%s%N)
	t=$(( (e - s) / 1000000 ))
	if [ -z "$best" ] || [ "$t" -lt "$best" ]; then best=$t; fi
done
echo "A confined agent (Landlock + seccomp + egress filter) starts, runs and is removed in ${best} ms (best of 5)."
