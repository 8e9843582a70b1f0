package runtime

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"syscall"
	"time"

	"github.com/clawrun/clawrun/egress/decisionlog"
	"github.com/clawrun/clawrun/egress/filter"
	"github.com/clawrun/clawrun/egress/rules"
	"github.com/clawrun/clawrun/runtime/policy"
)

// AuditLog returns the decision log file of the egress filter a container's
// traffic goes through, and the container that runs that filter: itself,
// or the one whose namespace it shares (for a pod, the sandbox), whose log
// holds the decisions of every container in that namespace.
func (r *Runtime) AuditLog(id string) (path, filteredBy string, err error) {
	defer classify(&err)
	if _, err := r.load(id); err != nil {
		return "", "", err
	}
	owner := id
	rec, err := readEgressRecord(filepath.Join(r.Root, id))
	if err == nil && rec == nil {
		if conf, _ := loadConfinement(filepath.Join(r.Root, id)); conf != nil && conf.SharedFilter != "" {
			owner = conf.SharedFilter
			rec, err = readEgressRecord(filepath.Join(r.Root, owner))
		}
	}
	if err != nil {
		return "", "", err
	}
	if rec == nil {
		return "", "", failedPrecondition(fmt.Errorf("container %q has no egress filter (its policy has no network_policies)", id))
	}
	return rec.LogFile, owner, nil
}

// Audit streams the decisions of a decision log (AuditLog's path) to out,
// following new ones if follow, until ctx ends.
func Audit(ctx context.Context, path string, follow, deniedOnly bool, out func(decisionlog.Record)) error {
	keep := func(rec decisionlog.Record) bool { return !deniedOnly || rec.Decision != "allow" }
	return decisionlog.ReadLogContext(ctx, path, follow, keep, out)
}

// ApplyNetworkPolicy replaces the network policies of a running confined
// container with those of the policy document in data (hot reload): the
// filter swaps to the new generation atomically and closes open
// connections the new one denies. The floor still bounds it. An invalid
// policy is rejected and the old one stays.
func (r *Runtime) ApplyNetworkPolicy(id, name string, data []byte) (_ int64, err error) {
	defer classify(&err)
	if _, err := r.load(id); err != nil {
		return 0, err
	}
	stateDir := filepath.Join(r.Root, id)
	conf, err := loadConfinement(stateDir)
	if err != nil {
		return 0, err
	}
	switch {
	case conf != nil && conf.SharedFilter != "" && conf.InPod:
		return 0, failedPrecondition(fmt.Errorf("container %q shares the egress filter of its pod's sandbox %q: apply the network policy to the sandbox (a pod has one allow list)", id, conf.SharedFilter))
	case conf != nil && conf.SharedFilter != "":
		return 0, failedPrecondition(fmt.Errorf("container %q shares the egress filter of container %q, whose network namespace it joined: apply the network policy to %q", id, conf.SharedFilter, conf.SharedFilter))
	}
	if conf == nil || conf.Egress == nil {
		return 0, failedPrecondition(fmt.Errorf("container %q has no egress filter (its policy has no network_policies)", id))
	}
	next, err := policy.Parse(name, data)
	if err != nil {
		return 0, invalidArgument(err)
	}
	if !next.HasNetwork {
		return 0, invalidArgument(fmt.Errorf("%s: no network_policies section (an empty one denies everything)", name))
	}
	// Keep every other layer (the floor's), replace the container's own.
	var layers []policy.NetworkLayer
	if floorLayer, _ := splitNetwork(conf.Plan, conf.Floor); floorLayer != nil {
		layers = append(layers, *floorLayer)
	}
	layers = append(layers, policy.NetworkLayer{Source: next.Name, Policies: next.NetworkPolicies})
	current, err := filter.LoadRules(filepath.Join(stateDir, egressRulesFile))
	if err != nil {
		return 0, err
	}
	proposal, _ := rules.FromPlan(layers, current.Generation+1)
	rec, err := readEgressRecord(stateDir)
	if err != nil {
		return 0, err
	}
	if rec == nil {
		return 0, fmt.Errorf("container %q: its egress filter record is missing", id)
	}
	// The filter loads the proposal, or refuses it whole; either way its
	// status says so, and what it enforces is what it says.
	rulesFile := filepath.Join(stateDir, egressRulesFile)
	proposed := time.Now()
	if err := filter.ProposeRules(rulesFile, proposal); err != nil {
		return 0, err
	}
	if err := syscall.Kill(rec.SupervisorPid, syscall.SIGHUP); err != nil {
		_ = os.Remove(filter.ProposalFile(rulesFile))
		return 0, fmt.Errorf("egress filter (pid %d): %w", rec.SupervisorPid, err)
	}
	if err := filter.WaitLoaded(filepath.Join(stateDir, egressStatusFile), rulesFile, proposal.Generation, proposed, egressReloadTimeout); err != nil {
		return 0, err
	}
	if err := recordApplied(stateDir, proposal.Generation, layers[len(layers)-1]); err != nil {
		return 0, fmt.Errorf("network policy generation %d applied, but not recorded for policy suggest: %w", proposal.Generation, err)
	}
	return proposal.Generation, nil
}

// egressReloadTimeout bounds the wait for the filter to load a generation.
const egressReloadTimeout = 10 * time.Second

// EgressFailure is the last failure of the egress filter of container
// owner (AuditLog's filteredBy), "" when it had none.
func (r *Runtime) EgressFailure(owner string) string {
	st, err := filter.ReadStatus(filepath.Join(r.Root, owner, egressStatusFile))
	if err != nil || st.LastFailure == nil {
		return ""
	}
	return describeFailure(st.LastFailure)
}

// EgressLogFailure says since when and why the decision log of container
// owner's filter cannot be written, "" while it can: what audit shows is
// then incomplete.
func (r *Runtime) EgressLogFailure(owner string) string {
	st, err := filter.ReadStatus(filepath.Join(r.Root, owner, egressStatusFile))
	if err != nil || st.LogFailure == nil {
		return ""
	}
	return describeFailure(st.LogFailure)
}
