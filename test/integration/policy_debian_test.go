package integration

import (
	"os"
	"strings"
	"testing"

	"github.com/opencontainers/runtime-spec/specs-go"
)

// debianChecks run in a Debian userland: name, then the command. Each
// prints "NAME OK" or "NAME ERR <first line of its output>".
var debianChecks = [][2]string{
	// Dynamically linked programs: the loader, glibc and the libraries
	// under /usr/lib/x86_64-linux-gnu must be readable and executable.
	{"bash", `bash -c 'test -n "$BASH_VERSION"'`},
	{"coreutils", `seq 1 100 | sort -rn | head -1 | grep -qx 100`},
	{"sed-grep-find", `echo hello | sed s/h/j/ | grep -q jello && find /usr/share/doc -maxdepth 1 -name bash | grep -q bash`},
	{"id", `test "$(id -un)" = root`},
	{"os-release", `grep -q bookworm /etc/os-release`},
	{"dpkg-database", `dpkg-query -W -f='${Status}' bash | grep -q installed`},
	{"python3", `python3 -c 'import os, sys; sys.exit(0 if os.listdir("/usr/lib") else 1)'`},
	{"tar-gzip", `tar czf /tmp/etc.tgz /etc/os-release && gzip -t /tmp/etc.tgz`},
	// The workspace and the temporary directories are writable.
	{"write-tmp", `echo x > /tmp/x && rm /tmp/x`},
	{"write-var-tmp", `echo x > /var/tmp/x`},
	{"python3-writes-sandbox", `python3 -c 'open("/sandbox/p.txt", "w").write("x")'`},
	{"dev-null", `echo x > /dev/null`},
	// Under agent-default: /opt is read-only (a tmpfs here, writable
	// without the policy) and /srv is not listed.
	{"write-opt", `echo x > /opt/x`},
	{"read-srv", `cat /srv/clawrun-secret.txt`},
}

// TestPolicyDebianImage: agent-default runs a real distribution's userland
// unchanged (glibc, the dynamic loader, bash, coreutils, dpkg, Python) and
// still denies what it denies on busybox. The root filesystem comes from
// test/mkdebian.sh (CLAWRUN_DEBIAN_ROOTFS; make integration sets it).
func TestPolicyDebianImage(t *testing.T) {
	rootfs := os.Getenv("CLAWRUN_DEBIAN_ROOTFS")
	if rootfs == "" {
		t.Fatal("CLAWRUN_DEBIAN_ROOTFS is not set: make integration builds it with test/mkdebian.sh")
	}
	r := policyRuntime(t)
	var script strings.Builder
	script.WriteString("check() { if out=$(sh -c \"$2\" 2>&1); then echo \"$1 OK\"; else echo \"$1 ERR ${out%%$'\\n'*}\"; fi; }\n")
	for _, c := range debianChecks {
		script.WriteString("check " + c[0] + " " + shQuote(c[1]) + "\n")
	}
	tmpfs := func(dst string) specs.Mount {
		return specs.Mount{Destination: dst, Type: "tmpfs", Source: "tmpfs", Options: []string{"nosuid", "nodev", "mode=1777"}}
	}
	debian := func(s *specs.Spec) {
		s.Root = &specs.Root{Path: rootfs, Readonly: true} // shared by every run: never written
		s.Process.Args = []string{"/bin/bash", "-c", script.String()}
		s.Process.Env = []string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "HOME=/root", "LANG=C.UTF-8"}
		s.Mounts = append(s.Mounts, tmpfs("/tmp"), tmpfs("/var/tmp"), tmpfs("/sandbox"), tmpfs("/opt"))
	}
	// /opt is read-only, a read-only mount too; /srv is not listed.
	denied := map[string]string{"write-opt": "Read-only file system", "read-srv": "Permission denied"}
	for _, tc := range []struct {
		name     string
		edits    []func(*specs.Spec)
		confined bool
	}{
		{"unconfined", []func(*specs.Spec){debian}, false},
		{"agent-default", []func(*specs.Spec){debian, withPolicy("agent-default")}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			res := r.runOnce(r.bundle(tc.edits...))
			t.Logf("%s:\n%s", tc.name, res.Stdout)
			got := map[string]string{}
			for line := range strings.SplitSeq(strings.TrimSpace(res.Stdout), "\n") {
				name, verdict, _ := strings.Cut(line, " ")
				got[name] = verdict
			}
			for _, c := range debianChecks {
				v, ok := got[c[0]]
				want, deny := denied[c[0]]
				switch {
				case !ok:
					t.Errorf("%s: no result in:\n%s", c[0], res.Stdout)
				case tc.confined && deny:
					if !strings.HasPrefix(v, "ERR") || !strings.Contains(v, want) {
						t.Errorf("%s (%s): %q, want it denied (%s)", c[0], c[1], v, want)
					}
				case v != "OK":
					t.Errorf("%s (%s): %q, want OK", c[0], c[1], v)
				}
			}
		})
	}
}
