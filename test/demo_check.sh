#!/bin/bash
# demo_check.sh: run `make demo`'s script and check its verdicts: every
# row has the expected outcome under agent-default, and the unconfined run
# turns every DENIED row (but the ones no policy can allow) into ALLOWED,
# which proves the demo measures the policy rather than the machine.
set -uo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)

# The unconfined agent's "ptrace another process" (its container's init, an
# ancestor) is ALLOWED only where Yama lets a process trace more than its
# descendants: ptrace_scope 0, or no Yama (no file). Set 0 for the demo and
# put the host's value back; 3 cannot be lowered until reboot.
scope_file=/proc/sys/kernel/yama/ptrace_scope
if [ -e "$scope_file" ]; then
	scope=$(cat "$scope_file")
	case $scope in
	0) ;;
	3) echo "demo_check: $scope_file is 3 (ptrace off until reboot): the unconfined ptrace row cannot be ALLOWED"; echo "0 passed, 1 failed"; exit 1 ;;
	*)
		echo 0 > "$scope_file" || { echo "demo_check: cannot set $scope_file to 0 (it is $scope)"; exit 1; }
		trap 'echo "$scope" > "$scope_file"' EXIT
		echo "demo_check: $scope_file was $scope: 0 for the demo" ;;
	esac
fi

out=$(bash "$here/contrib/demo/demo.sh" 2>&1)
status=$?
echo "$out"
[ $status -eq 0 ] || { echo "demo_check: the demo failed (exit $status)"; echo "0 passed, 1 failed"; exit 1; }

pass=0 fail=0
expect() { # expect ACTION UNDER-POLICY WITHOUT
	line=$(echo "$out" | grep -F "$1 " | head -1)
	if grep -q -- "$2 .*$3\$" <<<"$line"; then
		pass=$((pass + 1))
	else
		fail=$((fail + 1))
		echo "demo_check: '$1': want '$2' then '$3', got: $line"
	fi
}
expect "read /etc/os-release" "ALLOWED" "ALLOWED"
expect "write /usr/bin/x" "DENIED (read-only mount)" "ALLOWED"
expect "write /sandbox/out" "ALLOWED" "ALLOWED"
expect "read /run/secrets/token" "DENIED (Landlock)" "ALLOWED"
expect "ptrace another process" "DENIED (seccomp)" "ALLOWED"
expect "run code from memory (memfd)" "DENIED (seccomp)" "ALLOWED"
expect "new user namespace" "DENIED (seccomp)" "ALLOWED"
expect "raw packet socket" "DENIED (seccomp)" "ALLOWED"
expect "resolve allowed.example" "ALLOWED (egress rule egress)" "ALLOWED"
expect "DNS lookup of a denied name" "DENIED (egress: not_allowed)" "ALLOWED"
expect "fetch http://allowed.example" "ALLOWED (egress rule egress)" "ALLOWED"
expect "fetch http://denied.example" "DENIED (egress: not_allowed)" "ALLOWED"
expect "UDP datagram out (QUIC-like)" "DENIED (egress)" "ALLOWED"
expect "GET https://api.example/v1/models" "ALLOWED (egress rule api)" "ALLOWED"
expect "POST https://api.example/v1/admin/x" "DENIED (egress: 403, rule api, deny_rule)" "ALLOWED"
expect "API call with a placeholder key" "ALLOWED (egress rule api; server got the key)" "ALLOWED (server got the placeholder)"
expect "same placeholder to other.example" "DENIED (egress: 403, credential_misdirected)" "ALLOWED (server got the placeholder)"
if grep -q "0 from the confined agent" <<<"$out"; then pass=$((pass + 1)); else fail=$((fail + 1)); echo "demo_check: the denied name reached the upstream DNS server"; fi
# What the HTTPS servers got from the confined agent: the allowed GET and
# the API call with the key, nothing else (not the POST, nothing for
# other.example, never the placeholder).
if grep -qF "from the confined agent GET api.example/v1/models, GET api.example/v1/me with the key; from the unconfined one" <<<"$out"; then
	pass=$((pass + 1))
else
	fail=$((fail + 1))
	echo "demo_check: the HTTPS servers got more or other requests from the confined agent than the allowed GET and the API call with the key"
fi
echo "demo_check: $pass passed, $fail failed"
[ $fail -eq 0 ]
