package main

import (
	"strings"
	"testing"
)

const testDropIn = "/etc/containerd/conf.d/clawrun.toml"

var testHandlers = []handler{{"clawrun", "/usr/local/bin/clawrun"}, {"clawrun-agent", "/usr/local/bin/clawrun-agent"}}

func tables(t *testing.T, version int) string {
	t.Helper()
	s, err := runtimeTables(version, testHandlers)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// A config as containerd 2.x ships it, and the e2e cluster's.
const (
	v3Base = "version = 3\nroot = '/var/lib/containerd'\n\n[plugins.'io.containerd.cri.v1.runtime']\n  enable_selinux = false\n"
	v2Base = "version = 2\n\n[plugins.\"io.containerd.grpc.v1.cri\"]\n  sandbox_image = \"pause:3.10\"\n"
)

// roundTrip installs twice (same result), then uninstalls: the original.
func roundTrip(t *testing.T, name, old string, exists bool) string {
	t.Helper()
	t2 := tables(t, 2)
	once, err := installContainerdConfig(old, exists, testDropIn, t2)
	if err != nil {
		t.Fatalf("%s: install: %v", name, err)
	}
	twice, err := installContainerdConfig(once, true, testDropIn, t2)
	if err != nil {
		t.Fatalf("%s: install again: %v", name, err)
	}
	if twice != once {
		t.Errorf("%s: installing twice differs from once:\n%s\n---\n%s", name, once, twice)
	}
	back, remove := uninstallContainerdConfig(once, true, testDropIn)
	if exists && (remove || back != old) {
		t.Errorf("%s: uninstall did not restore the config byte for byte (remove %v):\n%q\n---\n%q", name, remove, old, back)
	}
	if !exists && !remove {
		t.Errorf("%s: uninstall keeps the config the installer created:\n%s", name, back)
	}
	return once
}

func TestContainerdConfigV3(t *testing.T) {
	for _, c := range []struct {
		name, old, want string
	}{
		{"no imports", v3Base, "version = 3\nimports = ['" + testDropIn + "'] # added by clawrun-deploy\nroot = '/var/lib/containerd'\n"},
		{"empty imports", "version = 3\nimports = []\n" + v3Base[len("version = 3\n"):],
			importsWas + "imports = []\nimports = ['" + testDropIn + "']\n"},
		{"other imports", "version = 3\nimports = [\"/etc/x.toml\",]  # mine\n[a]\n",
			importsWas + "imports = [\"/etc/x.toml\",]  # mine\nimports = [\"/etc/x.toml\", '" + testDropIn + "']\n[a]\n"},
		{"covered by a glob", "version = 3\nimports = ['/etc/containerd/conf.d/*.toml']\n[a]\n", "version = 3\nimports = ['/etc/containerd/conf.d/*.toml']\n[a]\n"},
		{"blank line after the version", "version = 3\n\n[a]\n", "version = 3\nimports = ['" + testDropIn + "'] # added by clawrun-deploy\n\n[a]\n"},
		{"no trailing newline", "version = 3", "version = 3imports"},
	} {
		got := roundTrip(t, c.name, c.old, true)
		if c.name == "no trailing newline" {
			if !strings.HasPrefix(got, "version = 3\nimports = [") {
				t.Errorf("%s: %q", c.name, got)
			}
			continue
		}
		if !strings.Contains(got, c.want) {
			t.Errorf("%s: want %q in:\n%s", c.name, c.want, got)
		}
		if strings.Contains(got, "runtimes.clawrun") {
			t.Errorf("%s: a version 3 config gets the runtimes through its drop-in only:\n%s", c.name, got)
		}
	}
}

func TestContainerdConfigV2(t *testing.T) {
	got := roundTrip(t, "version 2", v2Base, true)
	if !strings.HasPrefix(got, v2Base+"\n"+beginMarker) || !strings.HasSuffix(got, endMarker) {
		t.Errorf("version 2: the tables are not appended between the markers:\n%s", got)
	}
	for _, want := range []string{`[plugins."io.containerd.grpc.v1.cri".containerd.runtimes.clawrun-agent.options]`, "BinaryName = '/usr/local/bin/clawrun-agent'"} {
		if !strings.Contains(got, want) {
			t.Errorf("version 2: no %s in:\n%s", want, got)
		}
	}
	roundTrip(t, "version 2 without trailing newline", strings.TrimSuffix(v2Base, "\n"), true)
}

func TestContainerdConfigMissing(t *testing.T) {
	got := roundTrip(t, "missing", "", false)
	if !strings.HasPrefix(got, createdMarker+"version = 3\nimports = ['"+testDropIn+"']") {
		t.Errorf("a missing config: %q", got)
	}
}

func TestContainerdConfigRefused(t *testing.T) {
	for _, c := range []struct{ name, config, want string }{
		{"version 1", "[plugins.cri]\n", "no version line"},
		{"version 4", "version = 4\n", "version 4"},
		{"multi-line imports", "version = 3\nimports = [\n  '/a.toml',\n]\n", "spans several lines"},
		{"clawrun configured by hand", v3Base + "[plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.clawrun]\n", "already has"},
		{"clawrun-agent by hand (v2)", v2Base + "[plugins.\"io.containerd.grpc.v1.cri\".containerd.runtimes.\"clawrun-agent\".options]\n", "already has"},
	} {
		if _, err := installContainerdConfig(c.config, true, testDropIn, tables(t, 2)); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: error %v, want one saying %q", c.name, err, c.want)
		}
	}
}

func TestDropIn(t *testing.T) {
	d := dropIn(tables(t, 3))
	for _, want := range []string{"version = 3\n", "[plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.clawrun]\n",
		"pod_annotations = ['run.clawrun.*']", "[plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.clawrun-agent.options]\n  BinaryName = '/usr/local/bin/clawrun-agent'\n"} {
		if !strings.Contains(d, want) {
			t.Errorf("the drop-in lacks %q:\n%s", want, d)
		}
	}
	// The handlers keep their state apart from the node's runc's.
	if n := strings.Count(d, "\n  Root = '/run/containerd/clawrun'\n"); n != len(testHandlers) {
		t.Errorf("the drop-in gives %d handlers the root /run/containerd/clawrun, want %d:\n%s", n, len(testHandlers), d)
	}
	if _, err := runtimeTables(1, testHandlers); err == nil {
		t.Error("version 1 tables: no error")
	}
}

func TestK3sTemplate(t *testing.T) {
	tb := tables(t, 3)
	created, err := installK3sTemplate("", false, tb)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(created, createdMarker+k3sBase) || !strings.Contains(created, tb) {
		t.Errorf("a new template: not k3s's base plus the tables:\n%s", created)
	}
	if _, remove := uninstallK3sTemplate(created, true); !remove {
		t.Error("uninstall keeps the template the installer created")
	}
	own := "{{ template \"base\" . }}\n[plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.gvisor]\n  runtime_type = 'io.containerd.runsc.v1'"
	once, err := installK3sTemplate(own, true, tb)
	if err != nil {
		t.Fatal(err)
	}
	twice, _ := installK3sTemplate(once, true, tb)
	if twice != once || !strings.HasPrefix(once, own+"\n"+beginMarker) {
		t.Errorf("an administrator's template:\n%s\n---\n%s", once, twice)
	}
	if back, remove := uninstallK3sTemplate(once, true); remove || back != own {
		t.Errorf("uninstall: %q, want %q", back, own)
	}
	if _, err := installK3sTemplate(own+"\n[plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.clawrun]\n", true, tb); err == nil {
		t.Error("a template that configures clawrun itself: no error")
	}
}
