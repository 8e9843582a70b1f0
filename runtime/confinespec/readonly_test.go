package confinespec

import (
	"path"
	"slices"
	"testing"

	"github.com/opencontainers/runtime-spec/specs-go"

	"github.com/clawrun/clawrun/runtime/policy"
)

// dockerSpec has the mounts Docker gives a container.
func dockerSpec(rootReadonly bool, extra ...specs.Mount) *specs.Spec {
	m := func(dst, typ string, opts ...string) specs.Mount {
		return specs.Mount{Destination: dst, Type: typ, Source: typ, Options: opts}
	}
	return &specs.Spec{
		Root: &specs.Root{Path: "rootfs", Readonly: rootReadonly},
		Mounts: append([]specs.Mount{
			m("/proc", "proc", "nosuid", "noexec", "nodev"),
			m("/dev", "tmpfs", "nosuid", "strictatime", "mode=755"),
			m("/dev/pts", "devpts", "nosuid", "noexec"),
			m("/sys", "sysfs", "nosuid", "noexec", "nodev", "ro"),
			m("/sys/fs/cgroup", "cgroup", "nosuid", "noexec", "nodev", "relatime", "ro"),
			m("/dev/mqueue", "mqueue", "nosuid", "noexec", "nodev"),
			m("/dev/shm", "tmpfs", "nosuid", "noexec", "nodev", "mode=1777"),
			m("/etc/resolv.conf", "bind", "rbind", "rprivate"),
			m("/etc/hosts", "bind", "rbind", "rprivate"),
		}, extra...),
		Linux: &specs.Linux{ReadonlyPaths: []string{"/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"}},
	}
}

func agentDefaultLayers(t *testing.T) []policy.Layer {
	t.Helper()
	p, ok := policy.Preset("agent-default")
	if !ok {
		t.Fatal("no agent-default preset")
	}
	plan, err := policy.Compile(nil, p, policy.CompileOptions{Workdir: "/"})
	if err != nil {
		t.Fatal(err)
	}
	return plan.Layers
}

func layer(ro, rw []string) policy.Layer { return policy.Layer{ReadOnly: ro, ReadWrite: rw} }

// symlinks is a resolver that follows the given links (prefix -> target).
func symlinks(links map[string]string) func(string) string {
	return func(p string) string {
		p = path.Clean(p)
		for from, to := range links {
			if Under(p, from) {
				return path.Join(to, p[len(from):])
			}
		}
		return p
	}
}

func TestReadOnlyMounts(t *testing.T) {
	agentDefault := agentDefaultLayers(t)
	for _, tc := range []struct {
		name   string
		layers []policy.Layer
		spec   *specs.Spec
		links  map[string]string
		want   []string
	}{
		{name: "agent-default, Docker's mounts", layers: agentDefault, spec: dockerSpec(false),
			// Not /proc (procfs), /sys (a read-only mount already), nor
			// the read-only cgroup mount; /etc/hosts and /etc/resolv.conf
			// are mounts of their own beneath /etc.
			want: []string{"/app", "/bin", "/dev/full", "/dev/random", "/dev/urandom", "/dev/zero", "/etc", "/etc/hosts", "/etc/resolv.conf",
				"/home", "/lib", "/lib32", "/lib64", "/libx32", "/opt", "/root", "/sbin", "/usr", "/var/cache", "/var/lib"}},
		{name: "a read-only root", layers: agentDefault, spec: dockerSpec(true),
			want: []string{"/dev/full", "/dev/random", "/dev/urandom", "/dev/zero", "/etc/hosts", "/etc/resolv.conf"}},
		{name: "a writable sysfs", layers: agentDefault, spec: func() *specs.Spec {
			s := dockerSpec(true)
			s.Mounts[3].Options = []string{"nosuid", "noexec", "nodev"}
			return s
		}(), want: []string{"/dev/full", "/dev/random", "/dev/urandom", "/dev/zero", "/etc/hosts", "/etc/resolv.conf", "/sys"}},
		{name: "a writable path beneath", layers: []policy.Layer{layer([]string{"/usr", "/etc"}, []string{"/usr/local", "/tmp"})}, spec: dockerSpec(false),
			want: []string{"/etc", "/etc/hosts", "/etc/resolv.conf"}},
		// /usr/local is writable in one layer only: Landlock refuses
		// writes there anyway.
		{name: "writable in one layer of two", layers: []policy.Layer{
			layer([]string{"/usr"}, []string{"/usr/local", "/tmp"}),
			layer([]string{"/usr"}, []string{"/tmp"}),
		}, spec: dockerSpec(false), want: []string{"/usr"}},
		// /usr is writable in every layer: not read-only in the plan.
		{name: "read-only in a layer, writable in every one", layers: []policy.Layer{
			layer([]string{"/usr"}, []string{"/usr"}),
			layer(nil, []string{"/"}),
		}, spec: dockerSpec(false), want: nil},
		// Not / itself: the mounts beneath it.
		{name: "the root itself", layers: []policy.Layer{layer([]string{"/"}, []string{"/tmp"})}, spec: dockerSpec(false),
			want: []string{"/dev", "/dev/mqueue", "/dev/pts", "/dev/shm", "/etc/hosts", "/etc/resolv.conf"}},
		{name: "procfs", layers: []policy.Layer{layer([]string{"/proc", "/proc/self", "/proc/sys"}, nil)}, spec: dockerSpec(false), want: nil},
		// A writable path that is a symlink into a read-only one gets no
		// Landlock rule, so it makes nothing writable: /opt is mounted
		// read-only all the same.
		{name: "a writable symlink into a read-only path", layers: []policy.Layer{layer([]string{"/opt", "/etc"}, []string{"/sandbox"})},
			spec: dockerSpec(false), links: map[string]string{"/sandbox": "/opt/work"},
			want: []string{"/etc", "/etc/hosts", "/etc/resolv.conf", "/opt"}},
		// Merged /usr: /bin is /usr/bin, on the mount /usr gets.
		{name: "merged /usr", layers: []policy.Layer{layer([]string{"/bin", "/usr"}, nil)},
			spec: dockerSpec(false), links: map[string]string{"/bin": "/usr/bin"}, want: []string{"/usr"}},
		{name: "a read-only path of the spec already", layers: []policy.Layer{layer([]string{"/etc"}, nil)},
			spec: func() *specs.Spec {
				s := dockerSpec(false)
				s.Linux.ReadonlyPaths = append(s.Linux.ReadonlyPaths, "/etc")
				return s
			}(), want: []string{"/etc/hosts", "/etc/resolv.conf"}},
		{name: "a mount beneath a writable path", layers: []policy.Layer{layer([]string{"/usr"}, []string{"/tmp"})},
			spec: dockerSpec(false, specs.Mount{Destination: "/tmp/cache", Type: "tmpfs"}), want: []string{"/usr"}},
		{name: "no layers", spec: dockerSpec(false), want: nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := readOnlyMounts(tc.layers, tc.spec, symlinks(tc.links))
			if !slices.Equal(got, tc.want) {
				t.Errorf("got  %q\nwant %q", got, tc.want)
			}
		})
	}
}

func TestAddReadonlyPaths(t *testing.T) {
	s := &specs.Spec{}
	addReadonlyPaths(s, nil)
	if s.Linux != nil {
		t.Fatal("nothing to add made a linux section")
	}
	addReadonlyPaths(s, []string{"/usr", "/etc"})
	addReadonlyPaths(s, []string{"/etc", "/opt"})
	if want := []string{"/usr", "/etc", "/opt"}; !slices.Equal(s.Linux.ReadonlyPaths, want) {
		t.Errorf("got %q, want %q", s.Linux.ReadonlyPaths, want)
	}
}
