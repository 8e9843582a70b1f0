package runtime

import (
	"path/filepath"

	"github.com/clawrun/clawrun/landlock"
	"github.com/clawrun/clawrun/landlock/launcher"
)

// Confinement is the "clawrun" object of `clawrun state`: what is really
// enforced on the container, from the launcher's own report.
type Confinement struct {
	Policy   string           `json:"policy"`
	Digest   string           `json:"digest"`
	Landlock LandlockState    `json:"landlock"`
	Seccomp  SeccompState     `json:"seccomp"`
	Egress   string           `json:"egress"`
	Process  ProcessConfState `json:"process"`
	// ReadOnlyMounts are the policy's read-only paths that are read-only
	// mounts too, so that their metadata cannot change either.
	ReadOnlyMounts []string `json:"read_only_mounts,omitempty"`
	Warnings       []string `json:"warnings,omitempty"`
}

// LandlockState is the Landlock part of Confinement.
type LandlockState struct {
	// Status: see launcher.Status.
	Status        launcher.Status        `json:"status"`
	ABI           int                    `json:"abi,omitempty"`
	Compatibility string                 `json:"compatibility"`
	Layers        []LandlockLayerState   `json:"layers,omitempty"`
	Skipped       []landlock.SkippedPath `json:"skipped,omitempty"`
	Error         string                 `json:"error,omitempty"`
}

// LandlockLayerState is one stacked ruleset.
type LandlockLayerState struct {
	Source  string   `json:"source"`
	Rules   int      `json:"rules"`
	Missing []string `json:"missing_features,omitempty"`
}

// SeccompState says which profile is stacked on the spec's.
type SeccompState struct {
	Profile string `json:"profile"`
	Loaded  bool   `json:"loaded"`
	Denied  int    `json:"extra_denied,omitempty"`
}

// ProcessConfState is what the policy changed about the process.
type ProcessConfState struct {
	NoNewPrivileges     bool     `json:"no_new_privileges"`
	User                string   `json:"run_as,omitempty"`
	DroppedCapabilities []string `json:"dropped_capabilities,omitempty"`
}

// confinementState builds the state report of a confined container.
func confinementState(c *confinement, stateDir string) *Confinement {
	out := &Confinement{
		Policy: c.Plan.Name,
		Digest: c.Plan.Digest,
		Landlock: LandlockState{
			Compatibility: string(c.Plan.Compatibility),
			Status:        launcher.StatusPending,
		},
		Seccomp:        SeccompState{Profile: c.Plan.Seccomp.Profile, Denied: len(c.Plan.Seccomp.Deny)},
		Egress:         "off",
		Process:        ProcessConfState{NoNewPrivileges: true, DroppedCapabilities: c.DroppedCaps},
		ReadOnlyMounts: c.ReadOnlyMounts,
	}
	if c.Plan.RunAsUser != "" || c.Plan.RunAsGroup != "" {
		out.Process.User = c.Plan.RunAsUser + ":" + c.Plan.RunAsGroup
	}
	switch {
	case c.Egress != nil:
		out.Egress = egressState(stateDir)
	case c.SharedFilter != "":
		out.Egress = sharedEgressState(filepath.Join(filepath.Dir(stateDir), c.SharedFilter), c.SharedFilter, c.InPod)
	}
	for _, w := range c.Plan.Warnings {
		out.Warnings = append(out.Warnings, w.String())
	}
	if len(c.Launch.Layers) == 0 {
		out.Landlock.Status = launcher.StatusNone
	}
	rep, _ := readInitReport(stateDir)
	if rep == nil {
		return out
	}
	out.Landlock.ABI = rep.ABI
	out.Seccomp.Loaded = rep.Seccomp
	if rep.Error != "" {
		out.Landlock.Status, out.Landlock.Error = launcher.StatusFailed, rep.Error
		return out
	}
	if len(c.Launch.Layers) > 0 {
		out.Landlock.Status = rep.Status
	}
	for _, l := range rep.Layers {
		out.Landlock.Layers = append(out.Landlock.Layers, LandlockLayerState{Source: l.Source, Rules: l.Rules, Missing: l.Missing})
		out.Landlock.Skipped = append(out.Landlock.Skipped, l.Skipped...)
	}
	return out
}
