package policy

import (
	"strings"
	"testing"
)

// TestMagicLinkPaths: a filesystem_policy path that is, or passes through,
// a /proc magic link (or a /dev alias of one) names whatever the link
// points to, the whole root for /proc/self/root: it is refused by the
// parser, by Validate (a Policy built in code) and, as the working
// directory, by include_workdir, each error naming the field and the link.
func TestMagicLinkPaths(t *testing.T) {
	for _, tc := range []struct{ path, link string }{
		{"/proc/self/root", "/proc/self/root"},
		{"/proc/self/root/usr", "/proc/self/root"},
		{"/proc/thread-self/root", "/proc/thread-self/root"},
		{"/proc/1/cwd", "/proc/1/cwd"},
		{"/proc/1/exe", "/proc/1/exe"},
		{"/proc/self/fd/3", "/proc/self/fd"},
		{"/proc/self/fd", "/proc/self/fd"},
		{"/proc/42/map_files/400000-401000", "/proc/42/map_files"},
		{"/proc/self/ns/net", "/proc/self/ns"},
		{"/proc/1/task/1/root", "/proc/1/task/1/root"},
		{"/dev/fd/0", "/dev/fd"},
		{"/dev/fd", "/dev/fd"},
		{"/dev/stdin", "/dev/stdin"},
		{"/dev/stdout", "/dev/stdout"},
		{"/dev/stderr", "/dev/stderr"},
		{"//proc//self/root/", "/proc/self/root"},
	} {
		t.Run(tc.path, func(t *testing.T) {
			want := tc.link + " is a magic link"
			for _, list := range []string{"read_only", "read_write"} {
				doc := "filesystem_policy:\n  " + list + ": [/usr, " + tc.path + "]\n"
				_, err := Parse("p", []byte(doc))
				if err == nil || !strings.Contains(err.Error(), "p:2: filesystem_policy."+list+"[1]: ") || !strings.Contains(err.Error(), want) {
					t.Errorf("Parse with %s %s: got %v, want an error naming filesystem_policy.%s[1] and %q", list, tc.path, err, list, want)
				}
			}
			p := mustParse(t, "p", "filesystem_policy:\n  read_only: [/usr]\n")
			p.FilesystemPolicy.ReadWrite = []string{tc.path}
			if err := p.Validate(); err == nil || !strings.Contains(err.Error(), "filesystem_policy.read_write[0]: ") || !strings.Contains(err.Error(), want) {
				t.Errorf("Validate: got %v, want an error naming filesystem_policy.read_write[0] and %q", err, want)
			}
			wd := mustParse(t, "p", "filesystem_policy:\n  include_workdir: true\n  read_only: [/usr]\n")
			plan, err := Compile(nil, wd, CompileOptions{Workdir: tc.path})
			if err == nil || !strings.Contains(err.Error(), "p: filesystem_policy.include_workdir: the container's working directory") || !strings.Contains(err.Error(), want) {
				t.Errorf("Compile with the working directory %s: got %v (plan %+v), want an include_workdir error naming %q", tc.path, err, plan, want)
			}
		})
	}
	// Neighbours that are no magic links stay valid.
	for _, ok := range []string{"/proc", "/proc/self/status", "/proc/1/environ", "/proc/1/task", "/proc/sys/kernel", "/proc/rootfs", "/dev/null", "/dev/fdx", "/sandbox/proc/self/root", "/fd/0"} {
		if _, err := Parse("p", []byte("filesystem_policy:\n  read_only: ["+ok+"]\n")); err != nil {
			t.Errorf("%s: %v", ok, err)
		}
		wd := mustParse(t, "p", "filesystem_policy:\n  include_workdir: true\n")
		if _, err := Compile(nil, wd, CompileOptions{Workdir: ok}); err != nil {
			t.Errorf("working directory %s: %v", ok, err)
		}
	}
}
