package runtime

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/opencontainers/runtime-spec/specs-go"

	"github.com/clawrun/clawrun/egress/kernel"
	"github.com/clawrun/clawrun/egress/rules"
	"github.com/clawrun/clawrun/internal/jsonfile"
)

// The CRI (containerd, CRI-O) tells a pod's sandbox from its containers.
const (
	annotationCRIContainerType  = "io.kubernetes.cri.container-type"
	annotationCRISandboxID      = "io.kubernetes.cri.sandbox-id"
	annotationCRIOContainerType = "io.kubernetes.cri-o.ContainerType"
	annotationCRIOSandboxID     = "io.kubernetes.cri-o.SandboxID"
	criSandbox                  = "sandbox"
	criContainer                = "container"
)

// podRole says what the CRI made container id: criSandbox for a pod's
// sandbox, criContainer for an application container of a pod, "" for
// anything else. A sandbox is a container annotated as one whose sandbox
// id is its own: containerd creates the sandbox container with the
// sandbox's id and sets io.kubernetes.cri.sandbox-id to it (an
// application container carries its sandbox's id); CRI-O does the same
// for its infra container with io.kubernetes.cri-o.SandboxID. A container
// that only claims the role is an ordinary container. Whoever chooses
// both the annotations and the id (ctr, nerdctl) can still make a
// container a sandbox, so the role never takes the floor policy away.
//
// CRI-O's application containers are left unmarked: a CRI-O pod may have
// no infra container at all (drop_infra_ctr), and then its first confined
// container runs the namespace's filter, as for any shared namespace.
func podRole(annotations map[string]string, id string) string {
	switch {
	case isSandbox(annotations, annotationCRIContainerType, annotationCRISandboxID, id),
		isSandbox(annotations, annotationCRIOContainerType, annotationCRIOSandboxID, id):
		return criSandbox
	case annotations[annotationCRIContainerType] == criContainer:
		return criContainer
	}
	return ""
}

func isSandbox(annotations map[string]string, typeKey, idKey, id string) bool {
	return annotations[typeKey] == criSandbox && id != "" && annotations[idKey] == id
}

// netnsRecord says which container runs the egress filter of a network
// namespace, and with which rules, so that the other containers of a pod
// can join it. It is a file (not a directory) under --root, so that `list`
// does not take it for a container, named after the namespace's identity
// (kernel.NetnsID: never another namespace's, unlike its inode). It is
// trusted only while its owner's filter runs in that namespace: one left
// by an owner that went without a delete is stale.
type netnsRecord struct {
	Owner  string `json:"owner"`
	Digest string `json:"rules_digest"`
}

func netnsRecordPath(root, nsID string) string {
	return filepath.Join(root, "egress-netns-"+nsID+".json")
}

// rulesDigest identifies an allow list whatever its generation and the
// names of the policies it came from (a pod's containers may name their
// policies differently and still carry the pod's allow list).
func rulesDigest(r *rules.Rules) string {
	stripped := make([]rules.Layer, len(r.Layers))
	for i, l := range r.Layers {
		l.Source = ""
		stripped[i] = l
	}
	layers, _ := json.Marshal(stripped)
	sum := sha256.Sum256(layers)
	return hex.EncodeToString(sum[:])
}

// netnsIDOf is the identity of the network namespace at path.
func netnsIDOf(path string) (string, error) {
	ns, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer ns.Close()
	return kernel.NetnsID(int(ns.Fd()))
}

// registerNetns records the filter of a namespace (at its owner's create).
// The record is written whole: a create killed meanwhile cannot leave a
// torn one that would keep the pod's containers from joining.
func registerNetns(root, nsID, owner string, r *rules.Rules) error {
	return jsonfile.Write(netnsRecordPath(root, nsID), netnsRecord{Owner: owner, Digest: rulesDigest(r)}, 0o600)
}

// readNetnsRecord returns the record of a namespace, nil when it has none.
func readNetnsRecord(root, nsID string) (*netnsRecord, error) {
	var rec netnsRecord
	switch err := jsonfile.Read(netnsRecordPath(root, nsID), &rec); {
	case errors.Is(err, os.ErrNotExist):
		return nil, nil
	case err != nil:
		return nil, err
	}
	return &rec, nil
}

// unregisterNetns removes the records owned by a container.
func unregisterNetns(root, owner string) {
	matches, _ := filepath.Glob(filepath.Join(root, "egress-netns-*.json"))
	for _, m := range matches {
		var rec netnsRecord
		if jsonfile.Read(m, &rec) == nil && rec.Owner == owner {
			os.Remove(m)
		}
	}
}

// errStaleRecord: a namespace's record whose owner has no filter there.
var errStaleRecord = errors.New("stale namespace record")

// checkFilterGuards checks that the filter of the container ownerDir
// guards the namespace nsID (at nsPath): it was started for that
// namespace (else errStaleRecord: the owner is gone, or the record is
// not its own), it runs, and its rules are in the namespace.
func checkFilterGuards(ownerDir, nsID, nsPath string) error {
	rec, err := readEgressRecord(ownerDir)
	if err != nil {
		return err
	}
	if rec == nil || rec.Netns != nsID {
		return errStaleRecord
	}
	if !filterRunning(ownerDir, rec) {
		return errors.New("is not running: nothing gets out of that namespace until that container is deleted")
	}
	ns, err := os.Open(nsPath)
	if err != nil {
		return err
	}
	defer ns.Close()
	installed, err := kernel.RulesInstalled(int(ns.Fd()))
	if err != nil {
		return err
	}
	if !installed {
		return errors.New("has no rules in that namespace")
	}
	return nil
}

// sharedFilter returns the container whose filter already guards the
// network namespace spec joins (a pod's sandbox, or a container whose
// namespace another joins, as docker run --network container:X does), ""
// when that namespace has no filter yet. It refuses a container whose
// egress policy differs (a namespace has one filter, so one allow list),
// or whose namespace's filter is down.
func (r *Runtime) sharedFilter(spec *specs.Spec, setup *egressSetup, inPod bool) (string, error) {
	ns, _ := netNamespace(spec)
	nsPath := ns.Path
	if nsPath == "" {
		return "", nil // a namespace of its own
	}
	nsID, err := netnsIDOf(nsPath)
	if err != nil {
		return "", fmt.Errorf("network_policies: the network namespace it joins: %w", err)
	}
	rec, err := readNetnsRecord(r.Root, nsID)
	if err != nil || rec == nil {
		return "", err
	}
	switch err := checkFilterGuards(filepath.Join(r.Root, rec.Owner), nsID, nsPath); {
	case errors.Is(err, errStaleRecord):
		// Left by an owner that went without a delete: no filter guards
		// the namespace.
		if err := os.Remove(netnsRecordPath(r.Root, nsID)); err != nil && !errors.Is(err, os.ErrNotExist) {
			return "", err
		}
		return "", nil
	case err != nil:
		return "", failedPrecondition(fmt.Errorf("network_policies: the filter of %s, whose network namespace this container joins, %w", rec.Owner, err))
	}
	if rec.Digest != rulesDigest(setup.Rules) {
		if inPod {
			return "", fmt.Errorf("network_policies: this container's egress policy differs from its pod's (filtered by %s); a pod has one egress policy", rec.Owner)
		}
		return "", fmt.Errorf("network_policies: this container's egress policy differs from that of %s, whose network namespace it joins: a namespace has one filter, so one egress policy", rec.Owner)
	}
	return rec.Owner, nil
}
