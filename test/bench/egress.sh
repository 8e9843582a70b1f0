#!/bin/bash
# test/bench/egress.sh: the egress filter's benchmark (`make bench`).
#
# Builds its own test internet (test/fakenet, run by egressbench serve) and
# measures every figure through clawrun's egress filter against a direct
# connection in the same run:
#
#   fake internet  netns $net: DNS (bench.test -> $srv), TLS :443 and HTTP
#                  :8080 servers; veth to the host ($if_host, $if_net), from
#                  where the filter dials
#   direct         netns $cd_ns, veth into $net ($if_dc, $if_dn), default
#                  route there; a container without a policy joins it
#   filtered       netns $cf_ns, the same; a container with the policy
#                  run.clawrun.egress=bench.test:443,bench.test:8080 joins
#                  it, so clawrun installs its rules there
#   churn          netns $churn_ns (one per container), the same; the
#                  connection churn phase's containers, with the filtered
#                  one's policy
#   uncounted      netns $cu_ns, the same; a container with the filtered
#                  one's policy, created with CLAWRUN_BENCH_UNCOUNTED=1: its
#                  filter keeps no counters (no metrics), the A/B of what
#                  counting costs
#   inspected      netns $ci_ns, the same; a container whose policy makes
#                  bench.test:443 inspected (access: read-only) joins it:
#                  the filter terminates its TLS with the container's CA,
#                  and verifies the fake internet's with
#                  egress.upstream_ca_file
#
# The containers come from test/mkbundle.sh with the static egressbench
# client copied in; the driver (egressbench drive) runs the client in them
# by `clawrun exec`, the direct one alternating with each of the others,
# and prints a markdown table (also written to $BENCH_EGRESS_OUT). Missing a target is reported, not fatal; a failing
# run is fatal. Everything (containers, filter, servers, namespaces, veths,
# temp files) is removed on exit, failed or not.
#
# Environment:
#   CLAWRUN               clawrun binary (default: bin/clawrun)
#   BENCH_EGRESS_OUT      file the table is written to (default
#                         bench-egress-results.md in the current dir; empty:
#                         stdout only)
#   BENCH_EGRESS_RAW      if set, every sample is also written there (CSV)
#   BENCH_EGRESS_ROUNDS   rounds of TLS and DNS measurements (default 20)
#   BENCH_EGRESS_BLOCK    TLS connections and DNS queries per container per
#                         round (default 25)
#   BENCH_EGRESS_MIB      MiB per bulk transfer (default 256)
#   BENCH_EGRESS_BULK_RUNS  transfers per direction and container (default 5)
#   BENCH_EGRESS_SHAPE    rate of the shaped link of the second bulk phase, as
#                         tc says it (default 10gbit; empty: no such phase)
#   BENCH_EGRESS_SHAPED_MIB  MiB per transfer over the shaped link (default 256)
#   BENCH_EGRESS_CONNS    concurrent connections (default 1000)
#   BENCH_EGRESS_AFTER    wait after the concurrent connections closed before
#                         reading the filter's memory (default 1s)
#   BENCH_EGRESS_CHURN    containers of the connection churn phase (default
#                         10; 0: no such phase)
#   BENCH_EGRESS_CHURN_RATE  new connections per second of that phase, all
#                         its containers together (default 1000)
#   BENCH_EGRESS_CHURN_TIME  its length (default 60s)
#   BENCH_EGRESS_ONLY     churn: run that phase alone
#   BENCH_SEED            seed of the per-round shuffle (default: the clock)
#   GO                    go command (default go)
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
clawrun=$(readlink -f "${CLAWRUN:-$repo/bin/clawrun}")
out=${BENCH_EGRESS_OUT-bench-egress-results.md}
name=bench.test

die() { echo "bench-egress: $*" >&2; exit 1; }

[ "$(id -u)" = 0 ] || die "must run as root (network namespaces, containers)"
[ -x "$clawrun" ] || die "$clawrun not found or not executable (make build)"
for tool in ip jq tc; do
	command -v "$tool" >/dev/null || die "$tool not found"
done
churn=${BENCH_EGRESS_CHURN-10}
[[ $churn =~ ^[0-9]+$ ]] || die "BENCH_EGRESS_CHURN must be a number (got '$churn')"
case ${BENCH_EGRESS_ONLY:-} in
'') ;;
churn) [ "$churn" -gt 0 ] || die "BENCH_EGRESS_ONLY=churn needs BENCH_EGRESS_CHURN > 0" ;;
*) die "BENCH_EGRESS_ONLY: only churn can run alone (got '$BENCH_EGRESS_ONLY')" ;;
esac
for v in BENCH_EGRESS_ROUNDS BENCH_EGRESS_BLOCK BENCH_EGRESS_MIB BENCH_EGRESS_BULK_RUNS BENCH_EGRESS_CONNS BENCH_EGRESS_CHURN_RATE; do
	val=${!v:-1}
	[[ $val =~ ^[1-9][0-9]*$ ]] || die "$v must be a positive number (got '$val')"
done

tag=$$
work=$(mktemp -d "${TMPDIR:-/tmp}/clawrun-bench-egress.XXXXXX")
server_pid=

cleanup() {
	local rc=$?
	set +e
	trap - EXIT INT TERM
	# Containers first (delete -f stops each one's egress filter).
	if [ -d "$work/root" ]; then
		for id in $("$clawrun" --root "$work/root" list -q 2>/dev/null); do
			"$clawrun" --root "$work/root" --config "$work/config.yaml" delete -f "$id" >/dev/null 2>&1 ||
				echo "bench-egress: cleanup: delete -f $id failed" >&2
		done
		# A supervisor the runtime could not stop: only ours (its config
		# is in our state dir), by the pid the runtime recorded.
		for rec in "$work"/root/*/egress.json; do
			[ -f "$rec" ] || continue
			pid=$(jq -r '.supervisor_pid // empty' "$rec" 2>/dev/null)
			if [ -n "$pid" ] && [[ "$(tr '\0' ' ' < "/proc/$pid/cmdline" 2>/dev/null)" == *"__egress-supervisor $work/"* ]]; then
				echo "bench-egress: cleanup: stopping leftover egress supervisor $pid" >&2
				kill "$pid" 2>/dev/null
			fi
		done
	fi
	# The fake internet removes its namespaces and links as it stops.
	if [ -n "$server_pid" ]; then
		kill "$server_pid" 2>/dev/null
		wait "$server_pid" 2>/dev/null
	fi
	rm -rf "$work"
	exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

start=$(date +%s%N)
# The whole bench binary: server, client (in the containers: static) and driver.
(cd "$repo" && CGO_ENABLED=0 "${GO:-go}" build -trimpath -o "$work/egressbench" ./test/bench/egress)

# The fake internet (a free block of 198.18.0.0/15, picked under the lock
# the tests take too) and the clients' namespaces. egressbench serve writes
# the addresses and names once everything serves.
srv='' upstreams='' net='' if_host='' if_net='' cd_ns='' if_dc='' if_dn='' cf_ns='' ci_ns='' cu_ns='' churn_ns=''
"$work/egressbench" serve -env "$work/net.env" -dir "$work/srv" -name "$name" -churn "$churn" >"$work/server.log" 2>&1 &
server_pid=$!
for _ in $(seq 1200); do
	[ -f "$work/net.env" ] && break
	kill -0 "$server_pid" 2>/dev/null || die "the fake internet exited: $(cat "$work/server.log")"
	sleep 0.1
done
[ -f "$work/net.env" ] || die "the fake internet did not start within 120 s: $(cat "$work/server.log")"
# shellcheck source=/dev/null
. "$work/net.env"

# The bundles: identical but for the policy and the namespace joined.
# Inspected upstreams (the fake internet's TLS server) must verify
# against the fake internet's CA.
mkdir -p "$work/logs" "$work/root"
cat >"$work/config.yaml" <<EOF
egress:
  upstream_dns: ["$srv:53"]
  allowed_upstream_ranges: ["$upstreams"]
  log_dir: $work/logs
  upstream_ca_file: $work/srv/ca.pem
EOF
# The inspected container's policy: an endpoint with request fields is
# inspected; read-only allows the GETs the client sends.
inspect_policy="version: 1
network_policies:
  bench:
    endpoints:
      - host: $name
        port: 443
        protocol: rest
        access: read-only
"
# Room for the concurrent connections; a container cannot raise its hard
# limit above the runtime's.
nofile=$(ulimit -Hn)
[ "$nofile" = unlimited ] && nofile=65536
[ "$nofile" -gt $((${BENCH_EGRESS_CONNS:-1000} + 100)) ] ||
	die "the open files limit ($nofile) is too low for ${BENCH_EGRESS_CONNS:-1000} connections"
kinds=(direct filtered uncounted inspected)
[ "${BENCH_EGRESS_ONLY:-}" = churn ] && kinds=()
i=0
for ns in $churn_ns; do
	kinds+=("churn$i:$ns")
	i=$((i + 1))
done
churn_args=()
for kind in "${kinds[@]}"; do
	b=$work/${kind%%:*}
	CLAWRUN=$clawrun bash "$repo/test/mkbundle.sh" "$b" sleep 86400 >/dev/null
	cp "$work/egressbench" "$b/rootfs/bin/egressbench"
	cp "$work/srv/ca.pem" "$b/rootfs/etc/bench-ca.pem"
	echo "nameserver $srv" >"$b/rootfs/etc/resolv.conf"
	ns=$cd_ns
	policy='' inline=''
	case $kind in
	filtered)
		ns=$cf_ns
		policy="$name:443,$name:8080" ;;
	uncounted)
		ns=$cu_ns
		policy="$name:443,$name:8080" ;;
	inspected)
		ns=$ci_ns
		inline=$inspect_policy ;;
	churn*)
		ns=${kind#*:}
		policy="$name:443,$name:8080"
		churn_args+=(-churn-bundle "$b") ;;
	esac
	jq --arg ns "/var/run/netns/$ns" --arg policy "$policy" --arg inline "$inline" --argjson nofile "$nofile" '
		(.linux.namespaces[] | select(.type == "network")).path = $ns
		| .process.rlimits = [{"type": "RLIMIT_NOFILE", "hard": $nofile, "soft": $nofile}]
		| if $policy != "" then .annotations["run.clawrun.egress"] = $policy else . end
		| if $inline != "" then .annotations["run.clawrun.policy.inline"] = $inline else . end
	' "$b/config.json" >"$b/config.json.new"
	mv "$b/config.json.new" "$b/config.json"
done

args=(-clawrun "$clawrun" -config "$work/config.yaml" -root "$work/root"
	"${churn_args[@]}" -churn-rate "${BENCH_EGRESS_CHURN_RATE:-1000}" -churn-time "${BENCH_EGRESS_CHURN_TIME:-60s}"
	-direct "$work/direct" -filtered "$work/filtered" -uncounted "$work/uncounted" -inspected "$work/inspected" -server "$srv" -name "$name"
	-log-dir "$work/logs" -id-prefix "bench-egress-$tag" -server-pid "$server_pid"
	-rounds "${BENCH_EGRESS_ROUNDS:-20}" -block "${BENCH_EGRESS_BLOCK:-25}" -dns "${BENCH_EGRESS_BLOCK:-25}"
	-bulk-mib "${BENCH_EGRESS_MIB:-256}" -bulk-runs "${BENCH_EGRESS_BULK_RUNS:-5}"
	-conns "${BENCH_EGRESS_CONNS:-1000}" -after "${BENCH_EGRESS_AFTER:-1s}"
	-shape-rate "${BENCH_EGRESS_SHAPE-10gbit}" -shaped-mib "${BENCH_EGRESS_SHAPED_MIB:-256}"
	# The shaped link: the fake internet's side towards both clients
	# (downloads), the host's and the direct container's side towards it
	# (uploads; the filter dials from the host).
	-shape "$net/$if_net" -shape "$net/$if_dn" -shape "-/$if_host" -shape "$cd_ns/$if_dc")
[ -n "$out" ] && args+=(-out "$out")
[ -n "${BENCH_EGRESS_RAW:-}" ] && args+=(-raw "$BENCH_EGRESS_RAW")
[ -n "${BENCH_SEED:-}" ] && args+=(-seed "$BENCH_SEED")
[ -n "${BENCH_EGRESS_ONLY:-}" ] && args+=(-only "$BENCH_EGRESS_ONLY")
"$work/egressbench" drive "${args[@]}"
echo "bench-egress: done in $(( ($(date +%s%N) - start) / 1000000 )) ms${out:+, table written to $out}" >&2
