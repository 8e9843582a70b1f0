package runtime

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
)

func TestLoadSpecErrors(t *testing.T) {
	for _, tc := range []struct {
		name, config, want string
	}{
		{"missing", "", "config.json not found"},
		{"not json", "{not json", "invalid JSON"},
		{"null", "null", "config cannot be null"},
		{"no process", `{"ociVersion":"1.0.0"}`, "process property must not be empty"},
		{"relative cwd", `{"process":{"cwd":"tmp","args":["sh"]}}`, `process.cwd "tmp" must be an absolute path`},
		{"empty cwd", `{"process":{"args":["sh"]}}`, "process.cwd must not be empty"},
		{"no args", `{"process":{"cwd":"/"}}`, "process.args must not be empty"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			if tc.config != "" {
				if err := os.WriteFile(filepath.Join(dir, SpecConfig), []byte(tc.config), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			_, err := LoadSpec(dir)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("LoadSpec error = %v, want it to contain %q", err, tc.want)
			}
		})
	}
}

func TestLoadSpecValid(t *testing.T) {
	dir := t.TempDir()
	cfg := `{"ociVersion":"1.3.0","process":{"cwd":"/","args":["sh"]},"root":{"path":"rootfs"},"annotations":{"org.example":"x"}}`
	if err := os.WriteFile(filepath.Join(dir, SpecConfig), []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	spec, err := LoadSpec(dir)
	if err != nil {
		t.Fatal(err)
	}
	if spec.Root.Path != "rootfs" || spec.Process.Args[0] != "sh" {
		t.Fatalf("unexpected spec %+v", spec)
	}
}

func TestNewProcessRlimits(t *testing.T) {
	p := &specs.Process{Cwd: "/", Args: []string{"sh"}, Rlimits: []specs.POSIXRlimit{{Type: "RLIMIT_NOFILE", Hard: 10, Soft: 5}}}
	lp, err := newProcess(p)
	if err != nil {
		t.Fatal(err)
	}
	if len(lp.Rlimits) != 1 || lp.Rlimits[0].Type != unix.RLIMIT_NOFILE || lp.Rlimits[0].Soft != 5 {
		t.Fatalf("rlimits = %+v", lp.Rlimits)
	}
	p.Rlimits[0].Type = "RLIMIT_BOGUS"
	if _, err := newProcess(p); err == nil || !strings.Contains(err.Error(), "RLIMIT_BOGUS") {
		t.Fatalf("want an error naming RLIMIT_BOGUS, got %v", err)
	}
}

func TestParseSignal(t *testing.T) {
	for in, want := range map[string]unix.Signal{
		"KILL": unix.SIGKILL, "SIGKILL": unix.SIGKILL, "kill": unix.SIGKILL, "9": unix.SIGKILL,
		"term": unix.SIGTERM, "SIGUSR1": unix.SIGUSR1, "15": unix.SIGTERM, "0": 0,
	} {
		got, err := ParseSignal(in)
		if err != nil || got != want {
			t.Errorf("ParseSignal(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	for _, bad := range []string{"", "SIGNOPE", "-1", "65", "9x"} {
		if _, err := ParseSignal(bad); err == nil {
			t.Errorf("ParseSignal(%q) succeeded, want an error", bad)
		}
	}
}

func TestParseSubCgroups(t *testing.T) {
	got, err := parseSubCgroups([]string{"cpu,memory:/sub", "pids:/p"})
	if err != nil {
		t.Fatal(err)
	}
	if got["cpu"] != "/sub" || got["memory"] != "/sub" || got["pids"] != "/p" || len(got) != 3 {
		t.Fatalf("got %v", got)
	}
	if got, err := parseSubCgroups([]string{"/only"}); err != nil || got[""] != "/only" {
		t.Fatalf("bare path: %v %v", got, err)
	}
	for _, bad := range [][]string{{"/a", "/b"}, {":x"}, {"cpu:/a", "cpu:/b"}} {
		if _, err := parseSubCgroups(bad); err == nil {
			t.Errorf("parseSubCgroups(%q) succeeded, want an error", bad)
		}
	}
}

func TestNewRejectsSlashRoot(t *testing.T) {
	if _, err := New("/", false, nil); err == nil {
		t.Fatal("New(\"/\") succeeded")
	}
	r, err := New("relative/state", false, nil)
	if err != nil || !filepath.IsAbs(r.Root) {
		t.Fatalf("New(relative) = %+v, %v", r, err)
	}
}

func TestFeaturesNamesClawrun(t *testing.T) {
	f := Features()
	if f.Annotations[FeatureVersion] != Version || f.Annotations[FeatureLibcontainer] != LibcontainerVersion {
		t.Fatalf("annotations = %v", f.Annotations)
	}
	if f.OCIVersionMax != specs.Version || f.Linux == nil || len(f.Linux.Namespaces) == 0 {
		t.Fatalf("features incomplete: %+v", f)
	}
}
