package runtime

import (
	"fmt"
	"path/filepath"

	"github.com/clawrun/clawrun/egress/filter"
	"github.com/clawrun/clawrun/internal/jsonfile"
	"github.com/clawrun/clawrun/runtime/policy"
)

// Learning is what a policy is learned from for a container (see
// policy/suggest): its decision log, the policy its Plan enforces and the
// floor's network layer (nil when the floor does not restrict egress).
type Learning struct {
	LogFile string
	// FilteredBy is the container whose filter wrote the log (AuditLog).
	FilteredBy string
	Current    *policy.Policy
	Floor      *policy.NetworkLayer
	// FloorFiles is the floor's Landlock layer (nil for none).
	FloorFiles *policy.Layer
	// InForceUnknown says why the network policy the filter enforces is
	// not known (policy apply replaced it, and its record is missing):
	// Current then has the network policies of create, which are not
	// those in force.
	InForceUnknown error
}

// LearningFor gathers what policy suggest learns from for container id.
// The current policy is the container's own part of its Plan, with the
// network policies in force in the filter's container (a pod's sandbox
// holds the pod's): those of its Plan, or the last ones policy apply
// loaded.
func (r *Runtime) LearningFor(id string) (_ *Learning, err error) {
	defer classify(&err)
	logFile, filteredBy, err := r.AuditLog(id)
	if err != nil {
		return nil, err
	}
	conf, err := loadConfinement(filepath.Join(r.Root, id))
	if err != nil {
		return nil, err
	}
	netConf := conf
	if filteredBy != id {
		if netConf, err = loadConfinement(filepath.Join(r.Root, filteredBy)); err != nil {
			return nil, err
		}
	}
	if conf == nil || conf.Plan == nil || netConf == nil || netConf.Plan == nil {
		return nil, failedPrecondition(fmt.Errorf("container %q: its confinement record is missing", id))
	}
	l := &Learning{LogFile: logFile, FilteredBy: filteredBy, Current: planPolicy(conf.Plan, conf.Floor)}
	floorNet, ownNet := splitNetwork(netConf.Plan, netConf.Floor)
	l.Floor = floorNet
	l.FloorFiles = floorLayer(conf.Plan, conf.Floor)
	if applied, err := appliedNetwork(filepath.Join(r.Root, filteredBy)); err != nil {
		l.InForceUnknown = err
	} else if applied != nil {
		ownNet = applied
	}
	l.Current.HasNetwork = ownNet != nil
	if ownNet != nil {
		l.Current.Name, l.Current.NetworkPolicies = ownNet.Source, ownNet.Policies
	}
	return l, nil
}

// appliedRecord is the network layer policy apply put in force, with its
// generation (a container's Plan keeps the policy of create).
type appliedRecord struct {
	Generation int64               `json:"generation"`
	Layer      policy.NetworkLayer `json:"layer"`
}

// recordApplied records layer as the one generation gen enforces, once the
// filter loaded it.
func recordApplied(stateDir string, gen int64, layer policy.NetworkLayer) error {
	return jsonfile.Write(filepath.Join(stateDir, egressAppliedFile), appliedRecord{Generation: gen, Layer: layer}, 0o600)
}

// appliedNetwork is the container's own network layer that policy apply
// put in force in the filter of stateDir's container: nil while the
// filter enforces the first generation (create's). A later generation
// without its record (lost, or applied by a clawrun that kept none) is an
// error: the policy in force is then unknown.
func appliedNetwork(stateDir string) (*policy.NetworkLayer, error) {
	inForce, err := filter.LoadRules(filepath.Join(stateDir, egressRulesFile))
	if err != nil {
		return nil, err
	}
	if inForce.Generation <= 1 {
		return nil, nil
	}
	var rec appliedRecord
	if err := jsonfile.Read(filepath.Join(stateDir, egressAppliedFile), &rec); err != nil || rec.Generation != inForce.Generation {
		return nil, fmt.Errorf("its network policy is generation %d, from policy apply, which is not on record: pass the applied file with --base", inForce.Generation)
	}
	return &rec.Layer, nil
}

// planPolicy is the container's own policy as plan enforces it: its
// Landlock layer (not the floor's, named floor), seccomp, identity and
// compatibility. The workdir is in its paths already.
func planPolicy(plan *policy.Plan, floor string) *policy.Policy {
	p := &policy.Policy{
		Name:     plan.Name,
		Version:  1,
		Landlock: policy.Landlock{Compatibility: plan.Compatibility},
		Process:  policy.Process{RunAsUser: plan.RunAsUser, RunAsGroup: plan.RunAsGroup},
		Clawrun: policy.Extensions{
			Seccomp:  policy.SeccompSettings{Profile: plan.Seccomp.Profile, DenySyscalls: plan.Seccomp.Deny},
			Landlock: policy.LandlockSettings{ScopeSignals: true, ScopeAbstractUnix: true},
		},
	}
	for i, l := range plan.Layers {
		if i == 0 && floorLayer(plan, floor) != nil {
			continue
		}
		p.Name, p.HasFilesystem = l.Source, true
		p.FilesystemPolicy = policy.Filesystem{ReadOnly: l.ReadOnly, ReadWrite: l.ReadWrite}
		p.Clawrun.Landlock = policy.LandlockSettings{ScopeSignals: l.ScopeSignals, ScopeAbstractUnix: l.ScopeAbstractUnix,
			TCPBind: l.TCPBind, TCPConnect: l.TCPConnect}
	}
	return p
}

// floorLayer is a Plan's floor Landlock layer (Compile puts it first),
// nil when the floor has none.
func floorLayer(plan *policy.Plan, floor string) *policy.Layer {
	if len(plan.Layers) > 0 && floor != "" && plan.Layers[0].Source == floor {
		return &plan.Layers[0]
	}
	return nil
}

// splitNetwork returns a Plan's floor network layer (the floor's, named
// floor, which Compile puts first) and the container's own, each nil
// when absent.
func splitNetwork(plan *policy.Plan, floor string) (floorLayer, own *policy.NetworkLayer) {
	for i := range plan.Network {
		l := &plan.Network[i]
		if i == 0 && floor != "" && l.Source == floor {
			floorLayer = l
		} else {
			own = l
		}
	}
	return floorLayer, own
}

// FloorNetwork is the network layer of the floor policy the runtime would
// put under a new container (--policy, else the config's floor_policy):
// nil when there is none, or when it does not restrict egress.
func (o *PolicyOptions) FloorNetwork() (*policy.NetworkLayer, error) {
	cfg, err := o.loadConfig()
	if err != nil {
		return nil, err
	}
	floor, _, err := o.loadFloor(cfg)
	if err != nil || floor == nil || !floor.HasNetwork {
		return nil, err
	}
	return &policy.NetworkLayer{Source: floor.Name, Policies: floor.NetworkPolicies}, nil
}
