package runtime

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/opencontainers/runtime-spec/specs-go"
)

// TestRootfsResolver: paths resolved in a root filesystem, symlinks
// followed inside it, and paths beneath the spec's mounts taken as the
// mount's destination and the rest as written.
func TestRootfsResolver(t *testing.T) {
	rootfs := t.TempDir()
	for _, d := range []string{"usr/bin", "var/tmp", "opt/work", "etc"} {
		if err := os.MkdirAll(filepath.Join(rootfs, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	for link, target := range map[string]string{
		"bin":         "usr/bin",   // relative
		"sandbox":     "/opt/work", // absolute: inside the root, not the host's
		"escape":      "../../../../../../../../etc",
		"tmp":         "var/tmp", // a mount destination that is a symlink
		"etc/mtab":    "/proc/self/mounts",
		"usr/bin/dot": ".",
	} {
		if err := os.Symlink(target, filepath.Join(rootfs, link)); err != nil {
			t.Fatal(err)
		}
	}
	mounts := []specs.Mount{{Destination: "/tmp"}, {Destination: "/data"}}
	resolve, done := rootfsResolver(rootfs, mounts)
	defer done()
	for in, want := range map[string]string{
		"/":                "/",
		"/usr":             "/usr",
		"/bin":             "/usr/bin",
		"/bin/sh":          "/usr/bin/sh", // missing: the rest as written
		"/bin/dot/dot/x":   "/usr/bin/x",
		"/sandbox/":        "/opt/work",
		"/escape":          "/etc",
		"/missing/a/b":     "/missing/a/b",
		"/tmp":             "/var/tmp",
		"/tmp/x/y":         "/var/tmp/x/y", // beneath a mount: not looked up
		"/data/link":       "/data/link",
		"/etc/mtab":        "/etc/mtab", // dangling: as written
		"/usr/bin/../etc/": "/usr/etc",
	} {
		if got := resolve(in); got != want {
			t.Errorf("resolve(%q) = %q, want %q", in, got, want)
		}
	}
}
