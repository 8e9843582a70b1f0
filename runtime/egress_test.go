package runtime

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/opencontainers/runtime-spec/specs-go"

	"github.com/clawrun/clawrun/runtime/policy"
)

func TestEgressUpstream(t *testing.T) {
	dir := t.TempDir()
	podConf := filepath.Join(dir, "resolv.conf")
	if err := os.WriteFile(podConf, []byte("search default.svc.cluster.local svc.cluster.local\nnameserver 10.43.0.10\noptions ndots:5\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	empty := filepath.Join(dir, "empty.conf")
	if err := os.WriteFile(empty, []byte("search example\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	resolvMount := func(src string) specs.Mount {
		return specs.Mount{Destination: "/etc/resolv.conf", Type: "bind", Source: src, Options: []string{"rbind", "ro"}}
	}
	sandbox := func(mounts ...specs.Mount) *specs.Spec {
		return &specs.Spec{Annotations: map[string]string{annotationCRIContainerType: criSandbox}, Mounts: mounts}
	}
	configured := &policy.Config{}
	configured.Egress.UpstreamDNS = []string{"198.18.0.53:53"}
	hostServers, hostErr := resolvConfServers("/etc/resolv.conf")

	for _, tc := range []struct {
		name    string
		cfg     *policy.Config
		spec    *specs.Spec
		want    []string
		host    bool   // want the host's resolvers
		wantErr string // substring
	}{
		{name: "pod sandbox: the pod's resolver", cfg: &policy.Config{}, spec: sandbox(resolvMount(podConf)), want: []string{"10.43.0.10:53"}},
		{name: "the config wins over the pod's", cfg: configured, spec: sandbox(resolvMount(podConf)), want: []string{"198.18.0.53:53"}},
		{name: "not a sandbox: the host's", cfg: &policy.Config{}, spec: &specs.Spec{Mounts: []specs.Mount{resolvMount(podConf)}}, host: true},
		{name: "sandbox without the mount: the host's", cfg: &policy.Config{}, spec: sandbox(), host: true},
		{name: "a pod's resolv.conf without nameserver", cfg: &policy.Config{}, spec: sandbox(resolvMount(empty)), wantErr: "the pod's resolv.conf: no nameserver in " + empty},
		{name: "a pod's resolv.conf that is gone", cfg: &policy.Config{}, spec: sandbox(resolvMount(filepath.Join(dir, "gone"))), wantErr: "the pod's resolv.conf"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := egressUpstream(tc.cfg, tc.spec)
			switch {
			case tc.wantErr != "":
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("egressUpstream = %v, %v; want an error with %q", got, err, tc.wantErr)
				}
			case tc.host:
				if hostErr != nil {
					if err == nil {
						t.Fatalf("egressUpstream = %v; the host has no resolver (%v)", got, hostErr)
					}
					return
				}
				if err != nil || !slices.Equal(got, hostServers) {
					t.Fatalf("egressUpstream = %v, %v; want the host's %v", got, err, hostServers)
				}
			default:
				if err != nil || !slices.Equal(got, tc.want) {
					t.Fatalf("egressUpstream = %v, %v; want %v", got, err, tc.want)
				}
			}
		})
	}
}

func TestCheckEgressNetwork(t *testing.T) {
	withNet := func(path string) *specs.Spec {
		return &specs.Spec{Linux: &specs.Linux{Namespaces: []specs.LinuxNamespace{
			{Type: specs.PIDNamespace}, {Type: specs.NetworkNamespace, Path: path},
		}}}
	}
	const hostErr = "shares the host's network namespace"
	for _, tc := range []struct {
		name    string
		spec    *specs.Spec
		wantErr string
	}{
		{name: "a namespace of its own", spec: withNet("")},
		{name: "no network namespace", spec: &specs.Spec{Linux: &specs.Linux{Namespaces: []specs.LinuxNamespace{{Type: specs.PIDNamespace}}}}, wantErr: hostErr},
		{name: "no linux section", spec: &specs.Spec{}, wantErr: hostErr},
		{name: "the runtime's own, by path", spec: withNet("/proc/self/ns/net"), wantErr: hostErr},
		{name: "a path that does not exist", spec: withNet(filepath.Join(t.TempDir(), "gone")), wantErr: "network_policies: the network namespace it joins"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := checkEgressNetwork(tc.spec)
			if tc.wantErr == "" {
				if err != nil {
					t.Fatalf("checkEgressNetwork = %v, want nil", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("checkEgressNetwork = %v, want an error with %q", err, tc.wantErr)
			}
		})
	}
}
