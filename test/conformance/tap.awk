# tap.awk: turn the TAP stream of one validation test file into lines of
#   STATUS<TAB>KEY
# with STATUS one of pass, fail, skip. KEY identifies the assertion so the
# two runtimes can be compared line by line: it is the description (not the
# assertion number, so an extra or missing assertion does not shift every
# later one), with " [#N]" added for the Nth repeat of a description.
#
# Variables (-v): rc = exit status of the test file, limit = its timeout in
# seconds. Exit status 124 (timeout) or 137 (timeout -k) means timed out.
#
# The suite also reports failures outside assertions, which we turn into
# synthetic assertions in parentheses:
#  - a non-zero exit (util.Fatal: e.g. `create` failed) or a timeout;
#  - a plan (1..N) missing or different from the number of assertions
#    (some files hold several TAP documents, each with its own plan: the
#    plans are added up);
#  - a YAML block with an "error" key that does not follow an assertion:
#    several tests (hooks, poststart, prestart_fail, ...) emit no assertion
#    at all and only print such a block when they fail, then plan 1..0.
#    A file with no assertions and no error gets "(completed without error)".
# Everything indented (YAML, including the nested TAP of runtimetest that
# some tests embed as a JSON string) is never read as an assertion.

function add(status, key) {
	seen[key]++
	if (seen[key] > 1)
		key = key " [#" seen[key] "]"
	printf "%s\t%s\n", status, key
}

BEGIN {
	n = 0; plan = 0; plans = 0; inyaml = 0; attached = 0; lastassert = 0
	err = ""; bail = ""
}

# YAML blocks: "  ---" ... "  ...". A block right after an assertion
# belongs to it; a free-standing one with "error" is a test-level failure.
inyaml {
	if ($0 ~ /^[ \t]+\.\.\.[ \t]*$/) { inyaml = 0; next }
	if (!attached && err == "" && match($0, /^[ \t]+"error": *"/)) {
		e = substr($0, RSTART + RLENGTH)
		sub(/\\n.*/, "", e)   # first line of the message only
		sub(/",?[ \t]*$/, "", e)
		err = e
	}
	next
}
/^[ \t]+---[ \t]*$/ { inyaml = 1; attached = lastassert; next }

/^(not )?ok([ \t]|$)/ {
	lastassert = 1
	ok = ($0 !~ /^not /)
	line = $0
	sub(/^(not )?ok[ \t]*/, "", line)
	sub(/^[0-9]+[ \t]*/, "", line)
	status = ok ? "pass" : "fail"
	# Directives: "# SKIP reason" / "# TODO reason" (any case) count as skipped.
	if (match(line, /#[ \t]*([Ss][Kk][Ii][Pp]|[Tt][Oo][Dd][Oo])/))
		status = "skip"
	sub(/^-[ \t]*/, "", line)
	sub(/[ \t]+$/, "", line)
	if (line == "")
		line = "(no description)"
	add(status, line)
	n++
	next
}

/^1\.\.[0-9]+/ { p = $0; sub(/^1\.\./, "", p); sub(/[^0-9].*/, "", p); plan += p; plans++; lastassert = 0; next }
/^TAP version/ { lastassert = 0; next }
/^Bail out!/ { if (bail == "") bail = $0; lastassert = 0; next }
# Anything else (e.g. the "Refer to: URL" second line of a multi-line
# description, "# diagnostics") keeps a following YAML block attached.

END {
	if (bail != "")
		add("fail", "(" bail ")")
	if (rc == 124 || rc == 137) {
		add("fail", "(timed out after " limit "s)")
	} else if (rc != 0) {
		add("fail", "(exited with status " rc ")")
	} else {
		if (plans == 0)
			add("fail", "(no TAP plan)")
		else if (plan != n)
			add("fail", "(plan 1.." plan " but " n " assertions)")
		if (err != "")
			add("fail", "(error: " err ")")
		else if (n == 0 && plans > 0)
			add("pass", "(completed without error)")
	}
}
