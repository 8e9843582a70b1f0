package main

import (
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

type fakeNode struct{ labels map[string]string }

func (n *fakeNode) label(key string, value *string) error {
	if value == nil {
		delete(n.labels, key)
	} else {
		n.labels[key] = *value
	}
	return nil
}

// testNode is a node's filesystem under a temporary dir, the image's
// binaries, and the installer's options for it.
func testNode(t *testing.T, flavor string) (*options, *int, *fakeNode) {
	t.Helper()
	root := t.TempDir()
	source := filepath.Join(t.TempDir(), "bin")
	for _, b := range binaries {
		writeTestFile(t, filepath.Join(source, b), "new "+b, 0o755)
	}
	// build-image.sh puts contrib's floor wrapper beside the binaries.
	writeTestFile(t, filepath.Join(source, agentScript), contribAgentScript(t), 0o755)
	// What every node has.
	for _, d := range []string{"/var/lib", "/etc"} {
		if err := os.MkdirAll(filepath.Join(root, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	restarts := 0
	node := &fakeNode{labels: map[string]string{"kubernetes.io/os": "linux"}}
	return &options{
		host:             host{root: root, state: "/var/lib/clawrun-deploy"},
		dest:             "/usr/local/bin",
		source:           source,
		floor:            "agent-coding",
		flavor:           flavor,
		containerdConfig: "/etc/containerd/config.toml",
		dropIn:           "/etc/containerd/conf.d/clawrun.toml",
		k3sDir:           "/var/lib/rancher/k3s/agent/etc/containerd",
		restart:          func() error { restarts++; return nil },
		node:             node,
		log:              io.Discard,
	}, &restarts, node
}

// contribAgentScript is contrib/containerd/clawrun-agent.
func contribAgentScript(t *testing.T) string {
	t.Helper()
	data, err := os.ReadFile("../../contrib/containerd/clawrun-agent")
	if err != nil {
		t.Fatal(err)
	}
	return string(data)
}

func writeTestFile(t *testing.T, path, content string, mode os.FileMode) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(content), mode); err != nil {
		t.Fatal(err)
	}
}

// snapshot is every file under root: path -> mode and content.
func snapshot(t *testing.T, root string) map[string]string {
	t.Helper()
	files := map[string]string{}
	err := filepath.Walk(root, func(p string, info os.FileInfo, err error) error {
		if err != nil || p == root {
			return err
		}
		if info.IsDir() {
			files[strings.TrimPrefix(p, root)] = "directory"
			return nil
		}
		data, err := os.ReadFile(p)
		files[strings.TrimPrefix(p, root)] = info.Mode().String() + " " + string(data)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return files
}

func sameFiles(t *testing.T, what string, before, after map[string]string) {
	t.Helper()
	for p, v := range before {
		if after[p] != v {
			t.Errorf("%s: %s is %q, was %q", what, p, after[p], v)
		}
	}
	for p := range after {
		if _, ok := before[p]; !ok {
			t.Errorf("%s: %s is left", what, p)
		}
	}
}

// TestInstallUninstallContainerd: install writes the binaries, the
// wrapper, the drop-in and the import, restarts containerd once and
// labels the node; a second install changes nothing and restarts nothing;
// uninstall leaves the node's files as they were (the clawrun it replaced
// back), restarting containerd once more.
func TestInstallUninstallContainerd(t *testing.T) {
	o, restarts, node := testNode(t, "containerd")
	writeTestFile(t, o.host.path(o.containerdConfig), v3Base, 0o600)
	writeTestFile(t, o.host.path("/usr/local/bin/clawrun"), "an older clawrun", 0o700)
	writeTestFile(t, o.host.path("/usr/local/bin/other"), "not ours", 0o755)
	before := snapshot(t, o.host.root)

	if err := install(o); err != nil {
		t.Fatal(err)
	}
	if *restarts != 1 || node.labels[nodeLabel] != nodeLabelValue {
		t.Errorf("after install: %d restarts, labels %v; want 1 and %s=%s", *restarts, node.labels, nodeLabel, nodeLabelValue)
	}
	after := snapshot(t, o.host.root)
	for p, want := range map[string]string{
		"/usr/local/bin/clawrun":                    "-rwxr-xr-x new clawrun",
		"/usr/local/bin/containerd-shim-clawrun-v2": "-rwxr-xr-x new containerd-shim-clawrun-v2",
		"/usr/local/bin/clawrun-agent":              "-rwxr-xr-x #!/bin/sh\n",
		"/etc/containerd/conf.d/clawrun.toml":       "-rw-r--r-- # clawrun's runtime handlers",
		"/etc/containerd/config.toml":               "-rw------- version = 3\nimports = ['/etc/containerd/conf.d/clawrun.toml'] # added by clawrun-deploy\n",
	} {
		if !strings.HasPrefix(after[p], want) {
			t.Errorf("after install: %s is %q, want it to start with %q", p, after[p], want)
		}
	}
	if w := after["/usr/local/bin/clawrun-agent"]; !strings.Contains(w, "exec /usr/local/bin/clawrun --policy agent-coding \"$@\"\n") {
		t.Errorf("the clawrun-agent wrapper: %q", w)
	}

	if err := install(o); err != nil {
		t.Fatal(err)
	}
	if *restarts != 1 {
		t.Errorf("a second install restarted containerd (%d restarts): its config did not change", *restarts)
	}
	sameFiles(t, "a second install", after, snapshot(t, o.host.root))

	if err := uninstall(o); err != nil {
		t.Fatal(err)
	}
	if *restarts != 2 {
		t.Errorf("uninstall: %d restarts, want 2", *restarts)
	}
	if _, ok := node.labels[nodeLabel]; ok || node.labels["kubernetes.io/os"] != "linux" {
		t.Errorf("after uninstall: labels %v", node.labels)
	}
	sameFiles(t, "after uninstall", before, snapshot(t, o.host.root))
}

// TestAgentWrapperIsContribs: the clawrun-agent wrapper installed is
// contrib/containerd/clawrun-agent, as is on a default node, with only its
// exec line changed for another destination, config or floor; an image
// whose script has no such line installs nothing.
func TestAgentWrapperIsContribs(t *testing.T) {
	contrib := contribAgentScript(t)
	o, _, _ := testNode(t, "containerd")
	if err := install(o); err != nil {
		t.Fatal(err)
	}
	if got := snapshot(t, o.host.root)["/usr/local/bin/clawrun-agent"]; got != "-rwxr-xr-x "+contrib {
		t.Errorf("the installed clawrun-agent is not contrib's:\n%s", got)
	}

	o, _, _ = testNode(t, "containerd")
	o.dest, o.clawrunConfig, o.floor = "/opt/bin", "/etc/clawrun/k8s yaml", "team-floor"
	if err := install(o); err != nil {
		t.Fatal(err)
	}
	want := strings.Replace(contrib, contribAgentExec+"\n", "exec /opt/bin/clawrun --config '/etc/clawrun/k8s yaml' --policy team-floor \"$@\"\n", 1)
	if got := snapshot(t, o.host.root)["/opt/bin/clawrun-agent"]; got != "-rwxr-xr-x "+want {
		t.Errorf("the installed clawrun-agent: %q, want contrib's with its exec line changed: %q", got, want)
	}

	o, _, _ = testNode(t, "containerd")
	writeTestFile(t, filepath.Join(o.source, agentScript), "#!/bin/sh\nexec clawrun \"$@\"\n", 0o755)
	before := snapshot(t, o.host.root)
	if err := install(o); err == nil || !strings.Contains(err.Error(), contribAgentExec) {
		t.Errorf("an image whose clawrun-agent lacks %q: install says %v", contribAgentExec, err)
	}
	sameFiles(t, "a refused install", before, snapshot(t, o.host.root))
}

// TestInstallWithConfig: with CLAWRUN_CONFIG, both handlers run clawrun
// through wrappers that pass it.
func TestInstallWithConfig(t *testing.T) {
	o, _, _ := testNode(t, "containerd")
	o.clawrunConfig = "/etc/clawrun/k8s.yaml"
	if err := install(o); err != nil {
		t.Fatal(err)
	}
	files := snapshot(t, o.host.root)
	if !strings.Contains(files["/usr/local/bin/clawrun-cri"], "exec /usr/local/bin/clawrun --config /etc/clawrun/k8s.yaml \"$@\"") ||
		!strings.Contains(files["/usr/local/bin/clawrun-agent"], "--config /etc/clawrun/k8s.yaml --policy agent-coding") {
		t.Errorf("the wrappers do not pass --config: %q, %q", files["/usr/local/bin/clawrun-cri"], files["/usr/local/bin/clawrun-agent"])
	}
	if !strings.Contains(files["/etc/containerd/conf.d/clawrun.toml"], "BinaryName = '/usr/local/bin/clawrun-cri'") {
		t.Errorf("the clawrun handler does not run the wrapper:\n%s", files["/etc/containerd/conf.d/clawrun.toml"])
	}
	// A missing config.toml was created, and goes at uninstall.
	if err := uninstall(o); err != nil {
		t.Fatal(err)
	}
	if left := snapshot(t, o.host.root); len(left) != 3 {
		t.Errorf("left after uninstall: %v", left)
	}
}

// TestInstallUninstallK3s: k3s gets a config template of its base plus the
// handlers; uninstall removes it.
func TestInstallUninstallK3s(t *testing.T) {
	o, restarts, _ := testNode(t, "k3s")
	writeTestFile(t, o.host.path(o.k3sDir+"/config.toml"), "# k3s's\nversion = 3\n", 0o600)
	before := snapshot(t, o.host.root)
	if err := install(o); err != nil {
		t.Fatal(err)
	}
	tmpl := snapshot(t, o.host.root)[o.k3sDir+"/config-v3.toml.tmpl"]
	if !strings.Contains(tmpl, k3sBase) || !strings.Contains(tmpl, "runtimes.clawrun-agent.options]") {
		t.Errorf("k3s's template: %q", tmpl)
	}
	if err := install(o); err != nil {
		t.Fatal(err)
	}
	if err := uninstall(o); err != nil {
		t.Fatal(err)
	}
	if *restarts != 2 {
		t.Errorf("%d restarts of k3s, want 2 (install, uninstall)", *restarts)
	}
	sameFiles(t, "after uninstall", before, snapshot(t, o.host.root))
}
