#!/bin/bash
# test/bench/egress.sh: the egress filter's benchmark (`make bench`).
#
# Builds its own test internet and measures every figure through clawrun's
# egress filter against a direct connection in the same run:
#
#   fake internet  netns $net: DNS (bench.test -> $srv), TLS :443 and HTTP
#                  :8080 servers (egressbench serve); veth to the host
#                  ($P.$N.1 host side, $srv = $P.$N.2 inside), from where the
#                  filter dials
#   direct         netns $cd_ns, veth into $net ($P.$N+1.0/24), default route
#                  there; a container without a policy joins it
#   filtered       netns $cf_ns, the same ($P.$N+2.0/24); a container with the
#                  policy run.clawrun.egress=bench.test:443,bench.test:8080
#                  joins it, so clawrun installs its rules there
#
# Both containers come from test/mkbundle.sh with the static egressbench
# client copied in; the driver (egressbench drive) runs the client in them
# by `clawrun exec`, alternating, and prints a markdown table (also written
# to $BENCH_EGRESS_OUT). Missing a target is reported, not fatal; a failing
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
for tool in ip jq flock tc; do
	command -v "$tool" >/dev/null || die "$tool not found"
done
for v in BENCH_EGRESS_ROUNDS BENCH_EGRESS_BLOCK BENCH_EGRESS_MIB BENCH_EGRESS_BULK_RUNS BENCH_EGRESS_CONNS; do
	val=${!v:-1}
	[[ $val =~ ^[1-9][0-9]*$ ]] || die "$v must be a positive number (got '$val')"
done

tag=$$
net=clawrun-bench-net-$tag
cd_ns=clawrun-bench-direct-$tag
cf_ns=clawrun-bench-filter-$tag
# Interface names: at most 15 bytes.
if_host=eb${tag}h if_net=eb${tag}n
if_dc=eb${tag}dc if_dn=eb${tag}dn
if_fc=eb${tag}fc if_fn=eb${tag}fn

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
			if [ -n "$pid" ] && tr '\0' ' ' < "/proc/$pid/cmdline" 2>/dev/null | grep -q -- "__egress-supervisor $work/"; then
				echo "bench-egress: cleanup: stopping leftover egress supervisor $pid" >&2
				kill "$pid" 2>/dev/null
			fi
		done
	fi
	if [ -n "$server_pid" ]; then
		kill "$server_pid" 2>/dev/null
		wait "$server_pid" 2>/dev/null
	fi
	# The veths go with their namespaces.
	for ns in "$cf_ns" "$cd_ns" "$net"; do
		[ -e "/run/netns/$ns" ] && { ip netns del "$ns" || echo "bench-egress: cleanup: ip netns del $ns failed" >&2; }
	done
	ip link show "$if_host" >/dev/null 2>&1 && ip link del "$if_host"
	rm -rf "$work"
	exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

start=$(date +%s%N)
# The whole bench binary: server, client (in the containers: static) and driver.
(cd "$repo" && CGO_ENABLED=0 "${GO:-go}" build -trimpath -o "$work/egressbench" ./test/bench/egress)

# Pick a free block and create the veths under a lock, so that two benches
# at once do not take the same addresses.
exec 9>/run/lock/clawrun-bench-egress.lock
flock -w 60 9 || die "another egress bench holds /run/lock/clawrun-bench-egress.lock"
n=$("$work/egressbench" pick-net)
P=198.19
srv=$P.$n.2
ipn() { ip -n "$net" "$@"; }
ip netns add "$net"
ip netns add "$cd_ns"
ip netns add "$cf_ns"
ip link add "$if_host" type veth peer name "$if_net" netns "$net"
ip addr add "$P.$n.1/24" dev "$if_host"
ip link set "$if_host" up
ipn link set lo up
ipn addr add "$srv/24" dev "$if_net"
ipn link set "$if_net" up
# The two client namespaces: the same link each, one /24 apart.
k=1
for pair in "$cd_ns $if_dc $if_dn" "$cf_ns $if_fc $if_fn"; do
	read -r ns cif nif <<<"$pair"
	sub=$P.$((n + k))
	ip link add "$cif" netns "$ns" type veth peer name "$nif" netns "$net"
	ip -n "$ns" link set lo up
	ip -n "$ns" addr add "$sub.2/24" dev "$cif"
	ip -n "$ns" link set "$cif" up
	ipn addr add "$sub.1/24" dev "$nif"
	ipn link set "$nif" up
	ip -n "$ns" route add default via "$sub.1"
	k=$((k + 1))
done
flock -u 9
exec 9>&-

# The fake internet's servers.
ip netns exec "$net" "$work/egressbench" serve -addr "$srv" -dir "$work/srv" -name "$name" \
	>"$work/server.log" 2>&1 &
server_pid=$!
for _ in $(seq 100); do
	[ -f "$work/srv/ready" ] && break
	kill -0 "$server_pid" 2>/dev/null || die "the servers exited: $(cat "$work/server.log")"
	sleep 0.05
done
[ -f "$work/srv/ready" ] || die "the servers did not start within 5 s: $(cat "$work/server.log")"

# The two bundles: identical but for the policy and the namespace joined.
mkdir -p "$work/logs" "$work/root"
cat >"$work/config.yaml" <<EOF
egress:
  upstream_dns: ["$srv:53"]
  allowed_upstream_ranges: ["198.18.0.0/15"]
  log_dir: $work/logs
EOF
# Room for the concurrent connections; a container cannot raise its hard
# limit above the runtime's.
nofile=$(ulimit -Hn)
[ "$nofile" = unlimited ] && nofile=65536
[ "$nofile" -gt $((${BENCH_EGRESS_CONNS:-1000} + 100)) ] ||
	die "the open files limit ($nofile) is too low for ${BENCH_EGRESS_CONNS:-1000} connections"
for kind in direct filtered; do
	b=$work/$kind
	CLAWRUN=$clawrun bash "$repo/test/mkbundle.sh" "$b" sleep 86400 >/dev/null
	cp "$work/egressbench" "$b/rootfs/bin/egressbench"
	cp "$work/srv/ca.pem" "$b/rootfs/etc/bench-ca.pem"
	echo "nameserver $srv" >"$b/rootfs/etc/resolv.conf"
	ns=$cd_ns
	policy=
	if [ "$kind" = filtered ]; then
		ns=$cf_ns
		policy="$name:443,$name:8080"
	fi
	jq --arg ns "/var/run/netns/$ns" --arg policy "$policy" --argjson nofile "$nofile" '
		(.linux.namespaces[] | select(.type == "network")).path = $ns
		| .process.rlimits = [{"type": "RLIMIT_NOFILE", "hard": $nofile, "soft": $nofile}]
		| if $policy != "" then .annotations["run.clawrun.egress"] = $policy else . end
	' "$b/config.json" >"$b/config.json.new"
	mv "$b/config.json.new" "$b/config.json"
done

args=(-clawrun "$clawrun" -config "$work/config.yaml" -root "$work/root"
	-direct "$work/direct" -filtered "$work/filtered" -server "$srv" -name "$name"
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
"$work/egressbench" drive "${args[@]}"
echo "bench-egress: done in $(( ($(date +%s%N) - start) / 1000000 )) ms${out:+, table written to $out}" >&2
