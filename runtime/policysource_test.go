package runtime

import (
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/clawrun/clawrun/runtime/policy"
)

// TestContainerPolicySources: which policy a container gets from its
// annotations and the config's default_policy, with and without the
// egress shortcut. The shortcut adds its allow list to whichever policy
// the container would get without it; it never takes that policy's place.
func TestContainerPolicySources(t *testing.T) {
	dir := t.TempDir()
	site := "version: 1\nfilesystem_policy:\n  read_only: [/usr]\n  read_write: [/tmp]\n"
	if err := os.WriteFile(filepath.Join(dir, "site.yaml"), []byte(site), 0o644); err != nil {
		t.Fatal(err)
	}
	withDefault := &policy.Config{PolicyDir: dir, DefaultPolicy: "site"}
	noDefault := &policy.Config{PolicyDir: dir}
	inline := "version: 1\nfilesystem_policy:\n  read_only: [/bin]\n"
	const egress = "api.example.com"

	for _, tc := range []struct {
		name        string
		cfg         *policy.Config
		annotations map[string]string
		// want is the policy's name ("" for none), whether it has file
		// rules, and the keys of its network_policies.
		want    string
		files   bool
		network []string
	}{
		{"named", withDefault, map[string]string{AnnotationPolicy: "agent-default"}, "agent-default", true, nil},
		{"named + egress", withDefault, map[string]string{AnnotationPolicy: "agent-default", AnnotationEgress: egress}, "agent-default", true, []string{"egress"}},
		{"inline", withDefault, map[string]string{AnnotationPolicyInline: inline}, "inline", true, nil},
		{"inline + egress", withDefault, map[string]string{AnnotationPolicyInline: inline, AnnotationEgress: egress}, "inline", true, []string{"egress"}},
		{"default", withDefault, nil, "site", true, nil},
		{"default + egress", withDefault, map[string]string{AnnotationEgress: egress}, "site", true, []string{"egress"}},
		{"none", noDefault, nil, "", false, nil},
		{"none + egress", noDefault, map[string]string{AnnotationEgress: egress}, "egress", false, []string{"egress"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p, err := containerPolicy(tc.annotations, tc.cfg)
			if err != nil {
				t.Fatal(err)
			}
			if tc.want == "" {
				if p != nil {
					t.Fatalf("got policy %q, want none", p.Name)
				}
				return
			}
			if p == nil {
				t.Fatalf("got no policy, want %q", tc.want)
			}
			var network []string
			for k := range p.NetworkPolicies {
				network = append(network, k)
			}
			slices.Sort(network)
			if p.Name != tc.want || p.HasFilesystem != tc.files || p.HasNetwork != (tc.network != nil) || !slices.Equal(network, tc.network) {
				t.Errorf("got %q (filesystem_policy %v, network_policies %v %q), want %q (%v, %q)",
					p.Name, p.HasFilesystem, p.HasNetwork, network, tc.want, tc.files, tc.network)
			}
		})
	}
}
