package supervisor

import (
	"os"
	"path/filepath"
	"testing"
)

func TestOwnCgroup(t *testing.T) {
	hybrid := "9:name=systemd:/\n4:memory:/process_api/abc\n2:cpu,cpuacct:/x\n0::/\n"
	if p, ok := ownCgroup(hybrid, "memory"); !ok || p != "/process_api/abc" {
		t.Errorf("v1 memory: %q, %v", p, ok)
	}
	if p, ok := ownCgroup(hybrid, "cpuacct"); !ok || p != "/x" {
		t.Errorf("v1 joined controllers: %q, %v", p, ok)
	}
	if p, ok := ownCgroup("0::/user.slice/session-1.scope\n", ""); !ok || p != "/user.slice/session-1.scope" {
		t.Errorf("v2: %q, %v", p, ok)
	}
	if _, ok := ownCgroup("4:memory:/a\n", ""); ok {
		t.Error("a v1 line taken for the v2 one")
	}
}

// TestDelegateMemory: on cgroup v2, memory is enabled in every cgroup
// from the mount down to the worker cgroup's parent, and only where it
// is not yet.
func TestDelegateMemory(t *testing.T) {
	mnt := t.TempDir()
	dir := filepath.Join(mnt, "user.slice", "user-1000.slice")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	for path, content := range map[string]string{
		mnt:                              "cpu memory",
		filepath.Join(mnt, "user.slice"): "cpu",
		dir:                              "",
	} {
		if err := os.WriteFile(filepath.Join(path, "cgroup.subtree_control"), []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	if err := delegateMemory(mnt, dir); err != nil {
		t.Fatal(err)
	}
	for path, want := range map[string]string{
		mnt:                              "cpu memory", // already on: not written
		filepath.Join(mnt, "user.slice"): "+memory",
		dir:                              "+memory",
	} {
		got, _ := os.ReadFile(filepath.Join(path, "cgroup.subtree_control"))
		if string(got) != want {
			t.Errorf("%s: subtree_control %q, want %q", path, got, want)
		}
	}
}
