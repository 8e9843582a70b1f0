package e2e

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"path/filepath"
	"reflect"
	"regexp"
	"strings"
	"testing"
	"text/template"

	"go.yaml.in/yaml/v3"

	"github.com/clawrun/clawrun/runtime/policy"
)

// The files of contrib/ that configure the front-ends are what the other
// tests of this package run with (rendered into private daemons'
// configs); here they are checked for what cannot be seen by running
// them: their exact form, the Kubernetes manifests, the k3s template.

func readContrib(t *testing.T, rel string) string {
	t.Helper()
	if theEnv.repo == "" {
		t.Fatal("the repository root is unknown")
	}
	return readRepoFile(t, rel)
}

type dockerRuntime struct {
	Path        string         `json:"path"`
	RuntimeArgs []string       `json:"runtimeArgs"`
	RuntimeType string         `json:"runtimeType"`
	Options     map[string]any `json:"options"`
}

func parseDaemonJSON(t *testing.T, rel string) map[string]dockerRuntime {
	t.Helper()
	var cfg struct {
		Runtimes map[string]dockerRuntime `json:"runtimes"`
	}
	dec := json.NewDecoder(strings.NewReader(readContrib(t, rel)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&cfg); err != nil {
		t.Fatalf("%s: %v", rel, err)
	}
	return cfg.Runtimes
}

func TestContribDocker(t *testing.T) {
	// Docker 20.10 knows only path and runtimeArgs.
	rts := parseDaemonJSON(t, "contrib/docker/daemon.json")
	want := map[string]dockerRuntime{
		"clawrun":       {Path: "/usr/local/bin/clawrun"},
		"clawrun-agent": {Path: "/usr/local/bin/clawrun", RuntimeArgs: []string{"--policy", "agent-coding"}},
	}
	if !reflect.DeepEqual(rts, want) {
		t.Errorf("contrib/docker/daemon.json runtimes = %+v, want %+v", rts, want)
	}
	// Docker 23+: the shim by runtime type.
	rts = parseDaemonJSON(t, "contrib/docker/daemon-shim.json")
	if rts["clawrun"].RuntimeType != "io.containerd.clawrun.v2" || rts["clawrun"].Path != "" {
		t.Errorf("contrib/docker/daemon-shim.json: clawrun = %+v, want runtimeType io.containerd.clawrun.v2", rts["clawrun"])
	}
	if a := rts["clawrun-agent"]; a.Path != "/usr/local/bin/clawrun" || !reflect.DeepEqual(a.RuntimeArgs, []string{"--policy", "agent-coding"}) {
		t.Errorf("contrib/docker/daemon-shim.json: clawrun-agent = %+v", a)
	}
}

// k8sObject is the part of a manifest every kind has; the rest is checked
// per kind with unknown fields refused.
type k8sObject struct {
	APIVersion string `yaml:"apiVersion"`
	Kind       string `yaml:"kind"`
	Metadata   struct {
		Name        string            `yaml:"name"`
		Annotations map[string]string `yaml:"annotations"`
	} `yaml:"metadata"`
}

type runtimeClass struct {
	k8sObject `yaml:",inline"`
	Handler   string `yaml:"handler"`
}

type podManifest struct {
	k8sObject `yaml:",inline"`
	Spec      struct {
		RuntimeClassName string `yaml:"runtimeClassName"`
		RestartPolicy    string `yaml:"restartPolicy"`
		Containers       []struct {
			Name         string   `yaml:"name"`
			Image        string   `yaml:"image"`
			Command      []string `yaml:"command"`
			WorkingDir   string   `yaml:"workingDir"`
			VolumeMounts []struct {
				Name      string `yaml:"name"`
				MountPath string `yaml:"mountPath"`
			} `yaml:"volumeMounts"`
			SecurityContext struct {
				AllowPrivilegeEscalation *bool `yaml:"allowPrivilegeEscalation"`
				Capabilities             struct {
					Drop []string `yaml:"drop"`
				} `yaml:"capabilities"`
			} `yaml:"securityContext"`
		} `yaml:"containers"`
		Volumes []struct {
			Name     string    `yaml:"name"`
			EmptyDir *struct{} `yaml:"emptyDir"`
		} `yaml:"volumes"`
	} `yaml:"spec"`
}

// decodeManifest decodes the only document of a manifest into v, refusing
// unknown fields.
func decodeManifest(t *testing.T, rel string, v any) {
	t.Helper()
	dec := yaml.NewDecoder(strings.NewReader(readContrib(t, rel)))
	dec.KnownFields(true)
	if err := dec.Decode(v); err != nil {
		t.Fatalf("%s: %v", rel, err)
	}
	var extra any
	if err := dec.Decode(&extra); !errors.Is(err, io.EOF) {
		t.Fatalf("%s: one document expected (%v)", rel, err)
	}
}

func TestContribKubernetes(t *testing.T) {
	var rc runtimeClass
	for file, handler := range map[string]string{"runtimeclass.yaml": "clawrun", "runtimeclass-agent.yaml": "clawrun-agent"} {
		decodeManifest(t, "contrib/kubernetes/"+file, &rc)
		if rc.APIVersion != "node.k8s.io/v1" || rc.Kind != "RuntimeClass" || rc.Metadata.Name != handler || rc.Handler != handler {
			t.Errorf("%s: %+v, want a node.k8s.io/v1 RuntimeClass %s with handler %s", file, rc, handler, handler)
		}
		// The handler is the CRI runtime name of the containerd and k3s configs.
		for _, rel := range []string{"contrib/containerd/config-v3.toml", "contrib/containerd/config-v2.toml", "contrib/k3s/config-v3.toml.tmpl"} {
			if !strings.Contains(readContrib(t, rel), ".containerd.runtimes."+rc.Handler+"]") {
				t.Errorf("%s: no runtime named %q (the RuntimeClass's handler)", rel, rc.Handler)
			}
		}
	}
	decodeManifest(t, "contrib/kubernetes/runtimeclass.yaml", &rc)

	var pod podManifest
	decodeManifest(t, "contrib/kubernetes/agent-pod.yaml", &pod)
	if pod.APIVersion != "v1" || pod.Kind != "Pod" || len(pod.Spec.Containers) == 0 {
		t.Fatalf("agent-pod.yaml: %+v, want a v1 Pod with containers", pod.k8sObject)
	}
	if pod.Spec.RuntimeClassName != rc.Metadata.Name {
		t.Errorf("agent-pod.yaml: runtimeClassName %q, want %q (runtimeclass.yaml)", pod.Spec.RuntimeClassName, rc.Metadata.Name)
	}
	// Its policy annotations are ones clawrun accepts.
	ann := pod.Metadata.Annotations
	var p *policy.Policy
	for k, v := range ann {
		switch k {
		case "run.clawrun.policy":
			preset, ok := policy.Preset(v)
			if !ok {
				t.Errorf("agent-pod.yaml: %s: %q is not a built-in preset", k, v)
			}
			p = preset
		case "run.clawrun.egress":
			if _, err := policy.ParseShortcut(v); err != nil {
				t.Errorf("agent-pod.yaml: %s: %v", k, err)
			}
		default:
			if strings.HasPrefix(k, "run.clawrun.") {
				t.Errorf("agent-pod.yaml: %s: not an annotation clawrun knows", k)
			}
		}
	}
	if p == nil || ann["run.clawrun.egress"] == "" {
		t.Fatalf("agent-pod.yaml: want run.clawrun.policy and run.clawrun.egress annotations, have %v", ann)
	}
	short, _ := policy.ParseShortcut(ann["run.clawrun.egress"])
	plan, err := policy.Compile(nil, p.WithNetworkPolicies(short.NetworkPolicies), policy.CompileOptions{Workdir: pod.Spec.Containers[0].WorkingDir})
	if err != nil || plan == nil || len(plan.Network) == 0 {
		t.Errorf("agent-pod.yaml: its policy does not compile to one with egress rules: %v", err)
	}
}

var (
	commentLine = regexp.MustCompile(`(?m)^\s*#.*$`)
	tableHeader = regexp.MustCompile(`^\[`)
	// The tables of the runtimes clawrun and clawrun-agent.
	clawrunRuntime = regexp.MustCompile(`\.containerd\.runtimes\.clawrun(-agent)?[\].]`)
)

// runtimeTables is the text of the TOML tables of the clawrun runtimes in
// a config (from its header to the next table that is not one of its
// own), comments and blank lines out: what containerd reads of it.
func runtimeTables(config string) string {
	var out []string
	in := false
	for _, line := range strings.Split(commentLine.ReplaceAllString(config, ""), "\n") {
		line = strings.TrimSpace(line)
		if tableHeader.MatchString(line) {
			in = clawrunRuntime.MatchString(line)
		}
		if in && line != "" {
			out = append(out, line)
		}
	}
	return strings.Join(out, "\n")
}

// renderK3s renders contrib's k3s template as k3s does, with base as k3s's
// own "base" template.
func renderK3s(t *testing.T, base string) string {
	t.Helper()
	tmpl, err := template.New("config-v3.toml.tmpl").Parse(readContrib(t, "contrib/k3s/config-v3.toml.tmpl"))
	if err != nil {
		t.Fatalf("contrib/k3s/config-v3.toml.tmpl: %v", err)
	}
	if _, err := tmpl.New("base").Parse(base); err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	if err := tmpl.Execute(&buf, map[string]any{}); err != nil {
		t.Fatalf("contrib/k3s/config-v3.toml.tmpl: %v", err)
	}
	return buf.String()
}

// TestContribK3s: the k3s template renders to k3s's base config plus the
// runtime block of contrib/containerd/config-v3.toml, which TestContainerd
// runs; with containerd at hand, both load the same runtime.
func TestContribK3s(t *testing.T) {
	const base = "version = 3\n# k3s's own config\n"
	rendered := renderK3s(t, base)
	if !strings.HasPrefix(rendered, base) {
		t.Errorf("the rendered k3s config does not start with k3s's base config:\n%s", rendered)
	}
	k3sBlock := runtimeTables(rendered)
	criBlock := runtimeTables(readContrib(t, "contrib/containerd/config-v3.toml"))
	if k3sBlock == "" || k3sBlock != criBlock {
		t.Errorf("the k3s template's runtime block differs from contrib/containerd/config-v3.toml's:\n%s\n---\n%s", k3sBlock, criBlock)
	}
	for _, want := range []string{"pod_annotations = ['run.clawrun.*']", "container_annotations = ['run.clawrun.*']", "BinaryName = '/usr/local/bin/clawrun'",
		"Root = '" + clawrunShimRoot + "'"} {
		if !strings.Contains(k3sBlock, want) {
			t.Errorf("the k3s runtime block lacks %s", want)
		}
	}

	// containerd reads them the same: `containerd config dump` of the
	// rendered k3s config and of the config TestContainerd runs with.
	e := need(t, "containerd")
	dir := privateDir(t, "k3s")
	wrapper := filepath.Join(dir, "clawrun")
	runcRoot := filepath.Join(dir, "runc")
	k3sConfig := renderRuntimeBlock(t, renderK3s(t, containerdBaseV3(dir)), wrapper, runcRoot, "'")
	criConfig := containerdBaseV3(dir) + renderRuntimeBlock(t, readContrib(t, "contrib/containerd/config-v3.toml"), wrapper, runcRoot, "'")
	dump := func(name, config string) string {
		file := filepath.Join(dir, name)
		writeFile(t, file, config, 0o644)
		out := must(t, runIn(cmdOpts{env: []string{pathEnv(filepath.Join(e.tools, "bin"))}}, toolPath("containerd"), "--config", file, "config", "dump"))
		return runtimeTables(out)
	}
	k3sDump, criDump := dump("k3s.toml", k3sConfig), dump("cri.toml", criConfig)
	if k3sDump == "" || k3sDump != criDump {
		t.Errorf("containerd reads a different clawrun runtime from the k3s template:\n%s\n---\n%s", k3sDump, criDump)
	}
	for _, want := range []string{"runtime_type = 'io.containerd.runc.v2'", "BinaryName = '" + wrapper + "'", "pod_annotations = ['run.clawrun.*']"} {
		if !strings.Contains(k3sDump, want) {
			t.Errorf("containerd config dump: the clawrun runtime lacks %s:\n%s", want, k3sDump)
		}
	}
}

// TestContribContainerdV2: the containerd 1.x snippet (config version 2)
// loads into Debian's containerd 1.6 as the clawrun runtime.
func TestContribContainerdV2(t *testing.T) {
	e := need(t, "/usr/bin/containerd")
	dir := privateDir(t, "containerd-v2-config")
	snippet := readContrib(t, "contrib/containerd/config-v2.toml")
	if !strings.Contains(snippet, "version = 2") {
		t.Fatalf("contrib/containerd/config-v2.toml: not a version 2 config")
	}
	file := filepath.Join(dir, "config.toml")
	writeFile(t, file, "root = '"+dir+"/root'\nstate = '"+dir+"/state'\n"+snippet, 0o644)
	out := must(t, runIn(cmdOpts{env: []string{pathEnv()}}, "/usr/bin/containerd", "--config", file, "config", "dump"))
	block := runtimeTables(out)
	for _, want := range []string{`runtime_type = "io.containerd.runc.v2"`, `BinaryName = "/usr/local/bin/clawrun"`, `pod_annotations = ["run.clawrun.*"]`, `container_annotations = ["run.clawrun.*"]`,
		`Root = "` + clawrunShimRoot + `"`} {
		if !strings.Contains(block, want) {
			t.Errorf("containerd 1.6 config dump: the clawrun runtime lacks %s:\n%s", want, block)
		}
	}
	// The default runtime survives (containerd 1.x drops its built-in one
	// when a config names runtimes: CRI would not load).
	if !strings.Contains(out, `[plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]`) {
		t.Errorf("containerd 1.6 config dump: no runc runtime left for default_runtime_name = \"runc\": the CRI plugin would not load")
	}
	_ = e
}
