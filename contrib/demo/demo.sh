#!/bin/bash
# demo.sh (make demo): run an "agent" under clawrun's built-in agent-default
# policy, plus a network policy (one plain-HTTP host, and two HTTPS hosts
# whose requests the egress filter inspects, one with an API key the agent
# never sees), and print what it tried: ALLOWED or DENIED, and which layer
# decided (Landlock, read-only mount, seccomp, egress).
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
"$work/fakenet" -env "$work/fakenet.env" -log "$work/fakenet.log" -ca "$work/fakenet-ca.pem" 2>"$work/fakenet.err" &
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

# clawrun's config: where the egress filter resolves and what it may reach,
# the CA the fake internet's HTTPS servers must prove their names with, and
# an API key that the filter alone holds: it puts it in the agent's requests
# to api.example in place of the placeholder the agent sends.
cat > "$work/config.yaml" <<EOF
egress:
  upstream_dns: ["$fake:53"]
  allowed_upstream_ranges: ["$fake_range"]
  log_dir: $work/logs
  upstream_ca_file: $work/fakenet-ca.pem
  credentials:
    - name: API_KEY
      env: DEMO_API_KEY
      endpoints: [{host: api.example, ports: [443]}]
EOF
# The key, in clawrun's environment only (never the agent's).
api_key=sk-demo-$(od -An -N8 -tx1 /dev/urandom | tr -d ' \n')

step "building the agent's container from busybox"
RUNTIME=$clawrun "$here/test/mkbundle.sh" "$work/bundle" sh /sandbox/agent.sh >/dev/null
install -m 0755 "$work/probe" "$work/bundle/rootfs/usr/bin/probe"
# The fake internet's CA, where the probe looks for it (besides
# SSL_CERT_FILE): without a policy the agent talks to its servers directly.
cp "$work/fakenet-ca.pem" "$work/bundle/rootfs/etc/test-ca.pem"
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
https() { # https NAME HOST [header:F=V] METHOD:PATH: one request over HTTPS, ALLOWED if answered 200
	name=$1 host=$2; shift 2
	out=$($p https "$host" 443 "$host" h1 "$host" "$@" 2>&1 | head -1)
	case $out in OK*" 200 "*) echo "$name|ALLOWED|$out" ;; *) echo "$name|DENIED|${out:-no answer}" ;; esac
}
key="header:Authorization=Bearer openshell:resolve:env:API_KEY"
https "GET https://api.example/v1/models" api.example GET:/v1/models
https "POST https://api.example/v1/admin/x" api.example POST:/v1/admin/x
https "API call with a placeholder key" api.example "$key" GET:/v1/me
https "same placeholder to other.example" other.example "$key" GET:/v1/me
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

run_agent() { # run_agent FILE ANNOTATIONS-JSON [GLOBAL-FLAG...]
	jq --argjson a "$2" '.annotations = $a' "$work/bundle/config.json" > "$work/c.json"
	cp "$work/c.json" "$work/bundle/config.json"
	DEMO_API_KEY=$api_key "$clawrun" --root "$state" --config "$work/config.yaml" "${@:3}" \
		run --bundle "$work/bundle" demo-agent > "$1" 2>"$1.err" || true
}

# leaked: how many queries for the denied name reached the fake internet.
leaked() { grep -c " dns .*name=leak-secret-data" "$work/fakenet.log" 2>/dev/null || true; }
# https_seen: the HTTPS requests the fake internet's servers received so far.
https_seen() { grep " https " "$work/fakenet.log" 2>/dev/null || true; }

# The agent's network policy: allowed.example on port 80 (the egress
# shortcut); api.example and other.example on 443, inspected: the filter
# terminates their TLS with the container's own CA (which the runtime makes
# the container trust) and decides every request by its rules. agent-default
# comes as the floor (--policy), under this policy.
network='version: 1
network_policies:
  api:
    endpoints:
      - host: api.example
        port: 443
        protocol: rest
        rules:
          - allow: {method: GET, path: "/v1/**"}
        deny_rules:
          - deny: {method: POST, path: "/v1/admin/**"}
  other:
    endpoints:
      - host: other.example
        port: 443
        protocol: rest
        access: read-only
'
policy=$(jq -n --arg doc "$network" '{"run.clawrun.policy.inline": $doc, "run.clawrun.egress": "allowed.example:80"}')
step "running the agent under agent-default + egress allowed.example:80, api.example:443 and other.example:443 (inspected)"
run_agent "$work/with.txt" "$policy" --policy agent-default
leaked_confined=$(leaked)
https_confined=$(https_seen)
step "running the same agent without a policy"
run_agent "$work/without.txt" '{}'
https_unconfined=$(https_seen | grep -vxF -- "$https_confined" || true)

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
# egress_request HOST PATH: the filter's record of the HTTPS request for
# HOST PATH (on an inspected connection): "STATUS RULE REASON".
egress_request() {
	jq -r --arg h "$1" --arg p "$2" 'select(.protocol == "https" and .host == $h and .path == $p)
		| "\(.status) \(.rule // "-") \(.reason)"' "$work/logs/demo-agent.egress.jsonl" 2>/dev/null | head -1
}
# server_got EVENTS HOST PATH: what the HTTPS server got of the request for
# HOST PATH, from EVENTS (https_seen lines): the key, the placeholder, no
# key, or nothing (no such request).
server_got() {
	line=$(echo "$1" | grep -F " name=$2 path=$3 " | head -1)
	case $line in
	"") echo "nothing" ;;
	*"auth=\"Bearer $api_key\""*) echo "the key" ;;
	*'auth="Bearer openshell:resolve:env:API_KEY"'*) echo "the placeholder" ;;
	*) echo "no key" ;;
	esac
}
# https_row ACTION: the host and path of an HTTPS row's request, and
# whether its verdict says what the server got (always, unconfined only,
# never: the list under the table says it then).
https_row() {
	case $1 in
	"GET https://api.example/v1/models") echo "api.example /v1/models never" ;;
	"POST https://api.example/v1/admin/x") echo "api.example /v1/admin/x never" ;;
	"API call with a placeholder key") echo "api.example /v1/me always" ;;
	"same placeholder to other.example") echo "other.example /v1/me unconfined" ;;
	esac
}
# https_why ACTION [policy]: for an HTTPS row, the filter's rule (or status
# and reason), and what the server got where that tells.
https_why() {
	local mode=${2:-} host path tell events=$https_unconfined got='' status rule reason
	read -r host path tell <<< "$(https_row "$1")"
	[ "$mode" = policy ] && events=$https_confined
	if [ "$tell" = always ] || { [ "$tell" = unconfined ] && [ "$mode" != policy ]; }; then
		got="server got $(server_got "$events" "$host" "$path")"
	fi
	if [ "$mode" != policy ]; then
		if [ -n "$got" ]; then echo " ($got)"; fi
		return 0
	fi
	read -r status rule reason <<< "$(egress_request "$host" "$path")"
	case $reason in
	allowed) echo " (egress rule $rule${got:+; $got})" ;;
	deny_rule) echo " (egress: $status, rule $rule, deny_rule${got:+; $got})" ;;
	*) echo " (egress: ${status:-?}, ${reason:-?}${got:+; $got})" ;;
	esac
}
verdict() { # verdict FILE ACTION [policy]
	line=$(grep -F "$2|" "$1" | head -1)
	v=$(echo "$line" | cut -d'|' -f2)
	d=$(echo "$line" | cut -d'|' -f3-)
	why=
	if [ -n "$(https_row "$2")" ]; then
		why=$(https_why "$2" "${3:-}")
	elif [ "${3:-}" = policy ]; then
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
printf '%-35s  %-45s  %s\n' "WHAT THE AGENT TRIED" "UNDER agent-default" "WITHOUT A POLICY"
printf '%-35s  %-45s  %s\n' "--------------------" "-------------------" "----------------"
cut -d'|' -f1 "$work/with.txt" | while read -r action; do
	printf '%-35s  %-45s  %s\n' "$action" "$(verdict "$work/with.txt" "$action" policy)" "$(verdict "$work/without.txt" "$action")"
done
scope=$(cat /proc/sys/kernel/yama/ptrace_scope 2>/dev/null || echo 0)
if [ "$scope" != 0 ]; then
	echo "This host's Yama ptrace_scope is $scope: without a policy, ptrace of a process that is not a descendant is refused by Yama, not by clawrun."
fi
echo
leaked_total=$(leaked)
echo "Queries for the denied name that reached the fake internet's DNS server:" \
	"${leaked_confined:-0} from the confined agent, $(( ${leaked_total:-0} - ${leaked_confined:-0} )) from the unconfined one."
# requests EVENTS: the HTTPS requests in EVENTS, with what Authorization
# they carried.
requests() {
	local out='' line req got host
	while read -r line; do
		[ -n "$line" ] || continue
		req=$(echo "$line" | sed -n 's/.* name=\([^ ]*\) path=\([^ ]*\) data="\([A-Z]*\)".*/\3 \1\2/p')
		host=${req#* } host=${host%%/*}
		got=$(server_got "$line" "$host" "/${req#*/}")
		case $got in "no key") got= ;; *) got=" with $got" ;; esac
		out="${out:+$out, }$req$got"
	done <<< "$1"
	echo "${out:-none}"
}
echo "HTTPS requests the fake internet's servers received: from the confined agent $(requests "$https_confined");" \
	"from the unconfined one $(requests "$https_unconfined")."
echo "The agent only ever had the placeholder (Authorization: Bearer openshell:resolve:env:API_KEY): the key is in" \
	"clawrun's config, and the egress filter put it in for api.example alone."
echo "Decisions of the egress filter (clawrun audit):"
sed -n 's/.*"protocol":"\([a-z]*\)".*"host":"\([^"]*\)".*"decision":"\([a-z]*\)","reason":"\([a-z_]*\)".*/  \3  \1  \2  (\4)/p' "$work/logs/demo-agent.egress.jsonl" 2>/dev/null | sort -u | head -16

step "sandbox start-up time"
cp "$work/c.json" "$work/bundle/config.json"
policy='{"run.clawrun.policy":"agent-default","run.clawrun.egress":"allowed.example:80"}'
jq --argjson a "$policy" '.annotations = $a | .process.args = ["/usr/bin/probe", "true"]' "$work/bundle/config.json" > "$work/c.json"
cp "$work/c.json" "$work/bundle/config.json"
best=
for _ in 1 2 3 4 5; do
	s=$(date +%s%N)
	DEMO_API_KEY=$api_key "$clawrun" --root "$state" --config "$work/config.yaml" run --bundle "$work/bundle" demo-agent >/dev/null 2>&1
	e=$(date +%s%N)
	t=$(( (e - s) / 1000000 ))
	if [ -z "$best" ] || [ "$t" -lt "$best" ]; then best=$t; fi
done
echo "A confined agent (Landlock + seccomp + egress filter) starts, runs and is removed in ${best} ms (best of 5)."
