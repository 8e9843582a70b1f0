package runtime

import (
	"errors"
	"fmt"

	"github.com/opencontainers/runc/libcontainer/capabilities"
	"github.com/opencontainers/runc/libcontainer/configs"
	"github.com/opencontainers/runc/libcontainer/seccomp"
	"github.com/opencontainers/runc/libcontainer/specconv"
	runcfeatures "github.com/opencontainers/runc/types/features"
	"github.com/opencontainers/runtime-spec/specs-go"
	"github.com/opencontainers/runtime-spec/specs-go/features"
)

// Informational annotations of `clawrun features`.
const (
	FeatureVersion      = "run.clawrun.version"
	FeatureCommit       = "run.clawrun.commit"
	FeatureLibcontainer = "run.clawrun.libcontainer.version"
	FeatureLibseccomp   = "io.github.seccomp.libseccomp.version"
)

// ErrCheckpointUnsupported is what checkpoint and restore answer.
var ErrCheckpointUnsupported = errors.New("checkpoint/restore (CRIU) is not supported by clawrun")

// Features describes what this build supports, in the runtime-spec
// features document that dockerd and containerd read at start.
func Features() *features.Features {
	t := true
	f := &features.Features{
		OCIVersionMin: "1.0.0",
		OCIVersionMax: specs.Version,
		Hooks:         configs.KnownHookNames(),
		MountOptions:  specconv.KnownMountOptions(),
		Annotations: map[string]string{
			FeatureVersion:      Version,
			FeatureCommit:       Commit,
			FeatureLibcontainer: LibcontainerVersion,
			// runc's own key, which callers of runc already read.
			runcfeatures.AnnotationRuncCheckpointEnabled: "false",
		},
		Linux: &features.Linux{
			Namespaces:   specconv.KnownNamespaces(),
			Capabilities: capabilities.KnownCapabilities(),
			Cgroup: &features.Cgroup{
				V1: &t, V2: &t, Systemd: &t, SystemdUser: &t, Rdma: &t,
			},
			Apparmor: &features.Apparmor{Enabled: &t},
			Selinux:  &features.Selinux{Enabled: &t},
			IntelRdt: &features.IntelRdt{Enabled: &t, Schemata: &t, Monitoring: &t},
			MemoryPolicy: &features.MemoryPolicy{
				Modes: specconv.KnownMemoryPolicyModes(),
				Flags: specconv.KnownMemoryPolicyFlags(),
			},
			MountExtensions: &features.MountExtensions{IDMap: &features.IDMap{Enabled: &t}},
			NetDevices:      &features.NetDevices{Enabled: &t},
		},
		// Annotations a caller must not let untrusted users set.
		PotentiallyUnsafeConfigAnnotations: []string{
			"bundle",
			"org.systemd.property.",
			"org.criu.config",
		},
	}
	if seccomp.Enabled {
		f.Linux.Seccomp = &features.Seccomp{
			Enabled:        &t,
			Actions:        seccomp.KnownActions(),
			Operators:      seccomp.KnownOperators(),
			Archs:          seccomp.KnownArchs(),
			KnownFlags:     seccomp.KnownFlags(),
			SupportedFlags: seccomp.SupportedFlags(),
		}
		major, minor, patch := seccomp.Version()
		f.Annotations[FeatureLibseccomp] = fmt.Sprintf("%d.%d.%d", major, minor, patch)
	}
	return f
}
