package integration

import (
	"os"
	"path"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/opencontainers/runtime-spec/specs-go"
	"go.yaml.in/yaml/v3"

	"github.com/clawrun/clawrun/test/bundle"
)

// shippedPolicy is what a shipped policy file says, as far as the test
// checks it in a container.
type shippedPolicy struct {
	FilesystemPolicy struct {
		ReadOnly  []string `yaml:"read_only"`
		ReadWrite []string `yaml:"read_write"`
	} `yaml:"filesystem_policy"`
	Landlock struct {
		Compatibility string `yaml:"compatibility"`
	} `yaml:"landlock"`
	Process struct {
		RunAsUser string `yaml:"run_as_user"`
	} `yaml:"process"`
	NetworkPolicies map[string]any `yaml:"network_policies"`
	Clawrun         struct {
		Include []string `yaml:"include"`
	} `yaml:"clawrun"`
}

func parseShipped(t *testing.T, file, doc string) shippedPolicy {
	t.Helper()
	var p shippedPolicy
	if err := yaml.Unmarshal([]byte(doc), &p); err != nil {
		t.Fatalf("%s: %v", file, err)
	}
	if len(p.FilesystemPolicy.ReadOnly) == 0 || len(p.FilesystemPolicy.ReadWrite) == 0 {
		t.Fatalf("%s: no read_only or read_write paths: this test checks every listed path", file)
	}
	return p
}

// Paths no shipped policy lists, made in the image so that only the policy
// can refuse them (/srv/w is world-writable, /srv/data world-readable).
const (
	unlistedDir  = "/srv/w"
	unlistedFile = "/srv/data"
	secretFile   = "/run/secrets/token"
)

// kernelOrDevice tells whether path is the runtime's (a kernel filesystem
// or a device node), not a directory of the image the test can write in.
func kernelOrDevice(p string) bool {
	for _, top := range []string{"/proc", "/sys", "/dev"} {
		if p == top || strings.HasPrefix(p, top+"/") {
			return p != "/dev/shm" // a tmpfs the runtime mounts mode 1777
		}
	}
	return false
}

// listed tells whether p is a listed path or lies beneath one.
func listed(p string, paths []string) bool {
	return slices.ContainsFunc(paths, func(l string) bool { return p == l || strings.HasPrefix(p, l+"/") })
}

// shippedChecks are, for every path the policy lists, what it promises:
// read_write paths take writes; read_only paths can be read and refuse
// writes (EROFS where they are also a read-only mount, EACCES where
// Landlock alone refuses); paths it does not list can be neither read nor
// written. Without the policy, as the same user, every one of them works.
// prepare makes the image fit the checks: every listed directory exists,
// read_write ones are world-writable, read_only ones hold a
// world-writable probe-w/ so that only the policy refuses a write there.
func shippedChecks(t *testing.T, p shippedPolicy, b string, uid string) []pcheck {
	t.Helper()
	const refused, ok = "ERR EROFS|ERR EACCES", "OK"
	var checks []pcheck
	add := func(name, args, policy, base string) { checks = append(checks, pc(name, args, policy, base)) }
	for _, rw := range p.FilesystemPolicy.ReadWrite {
		switch {
		case rw == "/dev/null":
			add("write "+rw, "write "+rw, ok, ok)
		case kernelOrDevice(rw):
			// A terminal device (/dev/tty, /dev/pts...): the container
			// has no terminal to write to.
		default:
			if rw != "/dev/shm" {
				mkdirRootfs(t, b, rw)
				chmodRootfs(t, b, rw, 0o1777)
			}
			add("write "+rw, "write "+path.Join(rw, "probe-"+uid), ok, ok)
		}
	}
	for _, ro := range p.FilesystemPolicy.ReadOnly {
		add("read "+ro, "read "+ro, ok, ok)
		switch {
		case ro == "/dev/full": // opens, and every write fails
			add("write "+ro, "write "+ro, refused, "ERR ENOSPC write")
		case strings.HasPrefix(ro, "/dev/"):
			add("write "+ro, "write "+ro, refused, ok)
		case !kernelOrDevice(ro):
			w := path.Join(ro, "probe-w")
			mkdirRootfs(t, b, w)
			chmodRootfs(t, b, w, 0o777)
			add("write "+ro, "write "+path.Join(w, "probe-"+uid), refused, ok)
		}
	}
	all := append(slices.Clone(p.FilesystemPolicy.ReadOnly), p.FilesystemPolicy.ReadWrite...)
	for _, f := range []string{unlistedFile, secretFile} {
		if listed(f, all) {
			t.Fatalf("%s is listed: pick another unlisted path for this test", f)
		}
		writeRootfs(t, b, f, "secret\n", 0o644)
		add("read unlisted "+f, "read "+f, "ERR EACCES", ok)
	}
	mkdirRootfs(t, b, unlistedDir)
	chmodRootfs(t, b, unlistedDir, 0o777)
	add("write unlisted "+unlistedDir, "write "+path.Join(unlistedDir, "probe-"+uid), "ERR EACCES", ok)
	for _, home := range []string{"/root", "/home"} {
		if !listed(home, all) {
			mkdirRootfs(t, b, home)
			add("read unlisted "+home, "read "+home, "ERR EACCES", ok)
		}
	}
	// The agent seccomp profile every shipped policy keeps.
	add("memfd-exec", "memfd-exec", "ERR EPERM memfd_create", "OK ran from a memfd")
	checks = append(checks, pcheck{name: "uid", cmd: "id -u", policy: uid, base: uid})
	return checks
}

// TestPolicyShippedPolicies: the agent-coding preset and every policy in
// contrib/policies run a container as their files say. Each starts (the
// contrib ones under hard_requirement, from the policy directory, as
// their README installs them), runs as its user, with its egress filter,
// and every path it lists behaves as listed, while paths it does not list
// are out of reach; the same container without a policy, as the same
// user, can do all of it.
func TestPolicyShippedPolicies(t *testing.T) {
	t.Parallel()
	policyRuntime(t)
	repo := bundle.RepoRoot(t)
	files, err := filepath.Glob(filepath.Join(repo, "contrib", "policies", "*.yaml"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no contrib/policies/*.yaml (%v)", err)
	}
	policyDir := t.TempDir()
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		writeFile(t, filepath.Join(policyDir, filepath.Base(f)), string(data))
	}
	config := writeTemp(t, "config.yaml", "policy_dir: "+policyDir+"\n")

	type shipped struct{ name, doc string }
	policies := []shipped{{"agent-coding", presetFile(t, "agent-coding")}}
	for _, f := range files {
		policies = append(policies, shipped{strings.TrimSuffix(filepath.Base(f), ".yaml"), readFile(f)})
	}
	for _, sp := range policies {
		t.Run(sp.name, func(t *testing.T) {
			t.Parallel()
			p := parseShipped(t, sp.name, sp.doc)
			if p.Landlock.Compatibility == "hard_requirement" && hostLandlockABI() < 6 {
				t.Skipf("kernel lacks Landlock ABI 6, which %s requires (hard_requirement with scopes)", sp.name)
			}
			if len(p.NetworkPolicies) == 0 && len(p.Clawrun.Include) == 0 {
				t.Fatalf("%s has no egress policy: the test expects every shipped agent policy to filter egress", sp.name)
			}
			uid := p.Process.RunAsUser
			if uid == "" {
				uid = "0"
			}
			n, err := strconv.Atoi(uid)
			if err != nil {
				t.Fatalf("%s: run_as_user %q is not numeric", sp.name, uid)
			}

			for _, confined := range []bool{true, false} {
				label, pick := "no policy", wantBase
				edits := []func(*specs.Spec){bundle.Shell(sleeper), asUser(uint32(n), uint32(n))}
				if confined {
					label, pick = sp.name, wantPolicy
					edits = append(edits, withPolicy(sp.name))
				}
				r := policyRuntime(t)
				b := r.probeBundle(edits...)
				checks := shippedChecks(t, p, b, uid)
				id := newID(t)
				r.runDetachedOut(id, b, "--config", config)
				if confined {
					c := r.fullState(id).Clawrun
					wantCompat := p.Landlock.Compatibility
					if c.Policy != sp.name || c.Landlock.Status != "enforced" || c.Landlock.Compatibility != wantCompat ||
						c.Seccomp.Profile != "agent" || !c.Seccomp.Loaded {
						t.Errorf("state: want policy %s, Landlock enforced (%s), agent seccomp loaded; got %s", sp.name, wantCompat, c)
					}
					checkEgress(t, c, true)
				}
				res := r.ok("exec", id, "sh", "-c", checkScript(checks))
				verifyChecks(t, label, res.Stdout, checks, pick)
			}
		})
	}
}
