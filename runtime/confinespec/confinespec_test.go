package confinespec

import (
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/opencontainers/runc/libcontainer/configs"
	"github.com/opencontainers/runtime-spec/specs-go"

	"github.com/clawrun/clawrun/landlock/launcher"
	"github.com/clawrun/clawrun/runtime/policy"
)

// agentSpec is Docker's spec for a root process with Docker's default
// capabilities (NET_RAW among them), in a root filesystem that does not
// exist: the rewrite must not need it.
func agentSpec() *specs.Spec {
	s := dockerSpec(false)
	s.Root.Path = "/nonexistent/rootfs"
	defaults := []string{"CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FOWNER", "CAP_NET_RAW", "CAP_SETUID", "CAP_SETGID"}
	s.Process = &specs.Process{
		Args:     []string{"/usr/bin/agent", "--serve"},
		Env:      []string{"PATH=/usr/bin:/bin", "HOME=/root", "API_KEY=k"},
		Cwd:      "/work",
		Terminal: true,
		Capabilities: &specs.LinuxCapabilities{
			Bounding:  slices.Clone(defaults),
			Effective: slices.Clone(defaults),
			Permitted: slices.Clone(defaults),
		},
	}
	return s
}

func agentPlan() *policy.Plan {
	return &policy.Plan{
		Name:          "test",
		Compatibility: policy.BestEffort,
		Layers:        []policy.Layer{layer([]string{"/usr", "/etc"}, []string{"/tmp", "/work"})},
	}
}

func withCaps(sets func(c *specs.LinuxCapabilities)) func(*specs.Spec, *policy.Plan, *Inputs) {
	return func(s *specs.Spec, _ *policy.Plan, _ *Inputs) {
		s.Process.Capabilities = &specs.LinuxCapabilities{}
		sets(s.Process.Capabilities)
	}
}

// TestSpecRefused: a spec that cannot be confined is refused with an
// error naming the field at fault and what is wrong with it.
func TestSpecRefused(t *testing.T) {
	type edit = func(*specs.Spec, *policy.Plan, *Inputs)
	cases := []struct {
		name string
		edit edit
		want []string // in the error
	}{
		{"no process", func(s *specs.Spec, _ *policy.Plan, _ *Inputs) { s.Process = nil }, []string{"process:", "no process"}},
		{"no command", func(s *specs.Spec, _ *policy.Plan, _ *Inputs) { s.Process.Args = nil }, []string{"process.args"}},
		{"no /proc mount", func(s *specs.Spec, _ *policy.Plan, _ *Inputs) {
			s.Mounts = slices.DeleteFunc(s.Mounts, func(m specs.Mount) bool { return m.Destination == "/proc" })
		}, []string{"mounts:", "needs a /proc mount"}},
		{"/proc not procfs", func(s *specs.Spec, _ *policy.Plan, _ *Inputs) {
			s.Mounts[0].Type = "tmpfs"
		}, []string{"mounts:", "needs a /proc mount"}},
		{"hard_requirement without Landlock", func(_ *specs.Spec, p *policy.Plan, in *Inputs) {
			p.Compatibility, in.LandlockABI = policy.HardRequirement, 0
		}, []string{"landlock.compatibility", "no Landlock"}},
		{"unknown system call", func(_ *specs.Spec, p *policy.Plan, _ *Inputs) {
			p.Seccomp.Deny = []string{"nosuchcall"}
		}, []string{"clawrun.seccomp.deny_syscalls", `"nosuchcall"`}},
		{"ambient refused capability, other spelling", withCaps(func(c *specs.LinuxCapabilities) { c.Ambient = []string{"sys_ptrace"} }),
			[]string{"process.capabilities.ambient", "CAP_SYS_PTRACE"}},
	}
	// Every refused capability, in every set.
	sets := map[string]func(c *specs.LinuxCapabilities) *[]string{
		"bounding":    func(c *specs.LinuxCapabilities) *[]string { return &c.Bounding },
		"effective":   func(c *specs.LinuxCapabilities) *[]string { return &c.Effective },
		"permitted":   func(c *specs.LinuxCapabilities) *[]string { return &c.Permitted },
		"inheritable": func(c *specs.LinuxCapabilities) *[]string { return &c.Inheritable },
		"ambient":     func(c *specs.LinuxCapabilities) *[]string { return &c.Ambient },
	}
	for _, capName := range RefusedCaps {
		for field, set := range sets {
			cases = append(cases, struct {
				name string
				edit edit
				want []string
			}{capName + " in " + field, withCaps(func(c *specs.LinuxCapabilities) {
				*set(c) = []string{"CAP_CHOWN", capName}
			}), []string{"process.capabilities." + field + " holds " + capName, "cannot be privileged"}})
		}
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			spec, plan, in := agentSpec(), agentPlan(), Inputs{LandlockABI: 7}
			tc.edit(spec, plan, &in)
			out, err := Spec(spec, plan, in)
			if err == nil {
				t.Fatalf("confined: %+v", out)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not say %q", err, w)
				}
			}
		})
	}
}

// TestSpecRewrite: what the rewrite does to a spec it accepts, and what
// it leaves alone.
func TestSpecRewrite(t *testing.T) {
	agent := &specs.User{UID: 1000, GID: 1000, AdditionalGids: []uint32{27}}
	for _, tc := range []struct {
		name  string
		edit  func(*specs.Spec, *policy.Plan, *Inputs)
		check func(t *testing.T, before, after *specs.Spec, out *Confined)
	}{
		{name: "through the launcher, with no_new_privs", check: func(t *testing.T, before, after *specs.Spec, out *Confined) {
			if want := launcher.Command(before.Process.Args); !slices.Equal(after.Process.Args, want) {
				t.Errorf("args %q, want %q", after.Process.Args, want)
			}
			if !slices.Equal(out.Command, before.Process.Args) {
				t.Errorf("Command %q, want the process's own %q", out.Command, before.Process.Args)
			}
			if !after.Process.NoNewPrivileges {
				t.Error("no_new_privs is off")
			}
		}},
		{name: "CAP_NET_RAW dropped from every set, the rest kept", edit: withCaps(func(c *specs.LinuxCapabilities) {
			c.Bounding = []string{"CAP_CHOWN", "CAP_NET_RAW"}
			c.Effective = []string{"net_raw", "CAP_CHOWN"}
			c.Permitted = []string{"NET_RAW"}
			c.Inheritable = []string{"CAP_NET_RAW", "CAP_KILL"}
			c.Ambient = []string{"CAP_NET_RAW"}
		}), check: func(t *testing.T, _, after *specs.Spec, out *Confined) {
			want := &specs.LinuxCapabilities{
				Bounding: []string{"CAP_CHOWN"}, Effective: []string{"CAP_CHOWN"}, Permitted: []string{},
				Inheritable: []string{"CAP_KILL"}, Ambient: []string{},
			}
			if !reflect.DeepEqual(after.Process.Capabilities, want) {
				t.Errorf("capabilities %+v, want %+v", after.Process.Capabilities, want)
			}
			if !slices.Equal(out.DroppedCaps, []string{"CAP_NET_RAW"}) {
				t.Errorf("DroppedCaps %q", out.DroppedCaps)
			}
		}},
		{name: "nothing to drop", edit: withCaps(func(c *specs.LinuxCapabilities) { c.Bounding = []string{"CAP_CHOWN"} }),
			check: func(t *testing.T, _, _ *specs.Spec, out *Confined) {
				if out.DroppedCaps != nil {
					t.Errorf("DroppedCaps %q, want none", out.DroppedCaps)
				}
			}},
		{name: "no capabilities at all", edit: func(s *specs.Spec, _ *policy.Plan, _ *Inputs) { s.Process.Capabilities = nil },
			check: func(t *testing.T, _, after *specs.Spec, out *Confined) {
				if after.Process.Capabilities != nil || out.DroppedCaps != nil {
					t.Errorf("capabilities %+v, dropped %q", after.Process.Capabilities, out.DroppedCaps)
				}
			}},
		{name: "read-only mounts added, the spec's own kept", check: func(t *testing.T, before, after *specs.Spec, out *Confined) {
			want := []string{"/etc", "/etc/hosts", "/etc/resolv.conf", "/usr"}
			if !slices.Equal(out.ReadOnlyMounts, want) {
				t.Errorf("ReadOnlyMounts %q, want %q", out.ReadOnlyMounts, want)
			}
			if want := append(slices.Clone(before.Linux.ReadonlyPaths), want...); !slices.Equal(after.Linux.ReadonlyPaths, want) {
				t.Errorf("linux.readonlyPaths %q, want %q", after.Linux.ReadonlyPaths, want)
			}
		}},
		{name: "read-only paths through a symlink, resolved by the caller", edit: func(_ *specs.Spec, _ *policy.Plan, in *Inputs) {
			in.Resolve = symlinks(map[string]string{"/etc": "/usr/etc"})
		}, check: func(t *testing.T, _, after *specs.Spec, out *Confined) {
			if !slices.Contains(out.ReadOnlyMounts, "/usr") || slices.Contains(out.ReadOnlyMounts, "/etc") {
				t.Errorf("ReadOnlyMounts %q, want /usr, and not /etc (a link to /usr/etc)", out.ReadOnlyMounts)
			}
		}},
		{name: "no filesystem policy: no read-only mounts", edit: func(s *specs.Spec, p *policy.Plan, _ *Inputs) {
			p.Layers, s.Linux = nil, nil
		}, check: func(t *testing.T, _, after *specs.Spec, out *Confined) {
			if out.ReadOnlyMounts != nil || after.Linux != nil || out.Launch.Layers != nil {
				t.Errorf("ReadOnlyMounts %q, linux %+v, layers %+v", out.ReadOnlyMounts, after.Linux, out.Launch.Layers)
			}
		}},
		{name: "run_as_user applied", edit: func(_ *specs.Spec, _ *policy.Plan, in *Inputs) { in.User = agent },
			check: func(t *testing.T, _, after *specs.Spec, _ *Confined) {
				if !reflect.DeepEqual(after.Process.User, *agent) {
					t.Errorf("user %+v, want %+v", after.Process.User, *agent)
				}
			}},
		{name: "no run_as_user: the process's own user", edit: func(s *specs.Spec, _ *policy.Plan, _ *Inputs) {
			s.Process.User = specs.User{UID: 5, GID: 6}
		}, check: func(t *testing.T, _, after *specs.Spec, _ *Confined) {
			if want := (specs.User{UID: 5, GID: 6}); !reflect.DeepEqual(after.Process.User, want) {
				t.Errorf("user %+v, want %+v", after.Process.User, want)
			}
		}},
		{name: "env, cwd, terminal, mounts and annotations kept", edit: func(s *specs.Spec, _ *policy.Plan, _ *Inputs) {
			s.Annotations = map[string]string{"run.clawrun.policy": "agent-default"}
		}, check: func(t *testing.T, before, after *specs.Spec, _ *Confined) {
			if !slices.Equal(after.Process.Env, before.Process.Env) || after.Process.Cwd != before.Process.Cwd ||
				after.Process.Terminal != before.Process.Terminal || !reflect.DeepEqual(after.Mounts, before.Mounts) ||
				!reflect.DeepEqual(after.Annotations, before.Annotations) || !reflect.DeepEqual(after.Root, before.Root) {
				t.Errorf("changed:\nbefore %+v\nafter  %+v", before.Process, after.Process)
			}
		}},
		{name: "launcher spec", edit: func(_ *specs.Spec, p *policy.Plan, _ *Inputs) {
			p.Compatibility = policy.HardRequirement
			p.Seccomp.Deny = []string{"ptrace"}
			p.Layers[0].TCPConnect = []uint16{443}
		}, check: func(t *testing.T, _, _ *specs.Spec, out *Confined) {
			l := out.Launch
			if !l.Strict || len(l.Layers) != 1 || !slices.Equal(l.Layers[0].Rules.ReadOnly, []string{"/usr", "/etc"}) ||
				!slices.Equal(l.Layers[0].Rules.TCPConnect, []uint16{443}) {
				t.Errorf("launch %+v", l)
			}
			if l.Seccomp == nil || !slices.ContainsFunc(l.Seccomp.Syscalls, func(s *configs.Syscall) bool { return s.Name == "ptrace" }) {
				t.Errorf("seccomp %+v does not deny ptrace", l.Seccomp)
			}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			spec, plan, in := agentSpec(), agentPlan(), Inputs{LandlockABI: 7}
			if tc.edit != nil {
				tc.edit(spec, plan, &in)
			}
			before := cloneSpec(t, spec)
			out, err := Spec(spec, plan, in)
			if err != nil {
				t.Fatal(err)
			}
			tc.check(t, before, spec, out)
		})
	}
}

// TestProcessExec: a process exec'd into a confined container goes
// through the launcher as the init does, as the user resolved at create,
// whatever it asked for; a privileged one is refused.
func TestProcessExec(t *testing.T) {
	agent := &specs.User{UID: 1000, GID: 1000}
	p := &specs.Process{
		Args: []string{"sh", "-c", "id"}, Env: []string{"A=1"}, Cwd: "/",
		User:         specs.User{UID: 0, GID: 0},
		Capabilities: &specs.LinuxCapabilities{Bounding: []string{"CAP_NET_RAW", "CAP_CHOWN"}},
	}
	dropped, err := Process(p, agent)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(p.Args, launcher.Command([]string{"sh", "-c", "id"})) || !p.NoNewPrivileges ||
		!reflect.DeepEqual(p.User, *agent) || !slices.Equal(p.Env, []string{"A=1"}) ||
		!slices.Equal(p.Capabilities.Bounding, []string{"CAP_CHOWN"}) || !slices.Equal(dropped, DroppedCaps) {
		t.Errorf("exec'd process %+v, dropped %q", p, dropped)
	}

	priv := &specs.Process{Args: []string{"sh"}, Capabilities: &specs.LinuxCapabilities{Effective: []string{"CAP_SYS_ADMIN"}}}
	if _, err := Process(priv, agent); err == nil || !strings.Contains(err.Error(), "process.capabilities.effective holds CAP_SYS_ADMIN") {
		t.Errorf("privileged exec: %v", err)
	}
	if priv.Args[0] != "sh" || priv.NoNewPrivileges {
		t.Errorf("a refused process was rewritten: %+v", priv)
	}
}

// TestRunAsUser: run_as_user/run_as_group resolved in the image's files.
func TestRunAsUser(t *testing.T) {
	const passwd = "root:x:0:0:root:/root:/bin/sh\nagent:x:1000:1000::/home/agent:/bin/sh\ntoor:x:0:5::/:/bin/sh\n"
	const group = "root:x:0:\nagent:x:1000:\ndocker:x:27:agent\n"
	root := specs.User{UID: 0, GID: 0}
	for _, tc := range []struct {
		name        string
		user, group string
		current     specs.User
		want        *specs.User
		err         string
	}{
		{name: "by name, with its groups", user: "agent", current: root, want: &specs.User{UID: 1000, GID: 1000, AdditionalGids: []uint32{27}}},
		{name: "numeric", user: "2000", group: "2000", current: root, want: &specs.User{UID: 2000, GID: 2000}},
		{name: "group only", group: "agent", current: specs.User{UID: 1000, GID: 0}, want: &specs.User{UID: 1000, GID: 1000}},
		{name: "a name for root", user: "toor", current: root, err: `"toor" resolves to root, which is not allowed`},
		{name: "root's group", user: "agent", group: "root", current: root, err: `"agent:root" resolves to root`},
		{name: "unknown", user: "nosuchuser", current: root, err: `process.run_as_user/run_as_group "nosuchuser"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			plan := &policy.Plan{RunAsUser: tc.user, RunAsGroup: tc.group}
			got, err := RunAsUser(plan, tc.current, strings.NewReader(passwd), strings.NewReader(group))
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("got %+v, %v; want an error saying %s", got, err, tc.err)
				}
				return
			}
			if err != nil || !reflect.DeepEqual(got, tc.want) {
				t.Fatalf("got %+v, %v; want %+v", got, err, tc.want)
			}
		})
	}
	if SetsUser(&policy.Plan{}) || !SetsUser(&policy.Plan{RunAsGroup: "x"}) {
		t.Error("SetsUser")
	}
}

func cloneSpec(t *testing.T, s *specs.Spec) *specs.Spec {
	t.Helper()
	c := *s
	p := *s.Process
	p.Args, p.Env = slices.Clone(p.Args), slices.Clone(p.Env)
	c.Process = &p
	c.Mounts = slices.Clone(s.Mounts)
	if s.Linux != nil {
		l := *s.Linux
		l.ReadonlyPaths = slices.Clone(l.ReadonlyPaths)
		c.Linux = &l
	}
	r := *s.Root
	c.Root = &r
	return &c
}
