package runtime

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"github.com/opencontainers/runc/libcontainer"

	"github.com/clawrun/clawrun/egress/filter"
	"github.com/clawrun/clawrun/internal/jsonfile"
)

// Observation is what `clawrun metrics` reports of one container: who it
// is, what is enforced on it and what its egress filter counted, read
// from its state dir as the runtime and the filter wrote them.
type Observation struct {
	ID string
	// Pod and Namespace are its Kubernetes pod's, from the CRI's
	// annotations ("" outside Kubernetes).
	Pod, Namespace string
	// Confinement is nil for a container without a policy.
	Confinement *Confinement
	// Filter is the egress filter the container runs, nil when it runs
	// none of its own (no network policies, or it shares another's).
	// Its Status and Stats are nil until the filter wrote them.
	Filter *FilterObservation
	// Startup is how long its create (or run) took to have it confined
	// and its filter up; 0 when it was not recorded.
	Startup time.Duration
}

// FilterObservation is a filter's status and counts.
type FilterObservation struct {
	// Status is nil until the supervisor wrote it.
	Status *filter.Status
	// Down: the status says the filter runs, but its supervisor is gone
	// (killed before it could say so).
	Down bool
	// Stats is nil until the worker wrote them.
	Stats *filter.Stats
}

// The CRI annotations that name a container's pod: containerd's, then
// CRI-O's.
var (
	podNameAnnotations      = []string{"io.kubernetes.cri.sandbox-name", "io.kubernetes.pod.name"}
	podNamespaceAnnotations = []string{"io.kubernetes.cri.sandbox-namespace", "io.kubernetes.pod.namespace"}
)

// Observe reports every container under the root. A container whose
// state cannot be read (being created or deleted meanwhile) is left out;
// a missing root holds none.
func (r *Runtime) Observe() ([]Observation, error) {
	entries, err := os.ReadDir(r.Root)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var out []Observation
	for _, e := range entries {
		if !e.IsDir() {
			continue
		}
		if o, ok := r.observe(e.Name()); ok {
			out = append(out, o)
		}
	}
	return out, nil
}

// observe reads one container's state dir.
func (r *Runtime) observe(id string) (Observation, bool) {
	c, err := libcontainer.Load(r.Root, id)
	if err != nil {
		return Observation{}, false
	}
	st, err := stateOf(r.Root, c)
	if err != nil {
		return Observation{}, false
	}
	stateDir := filepath.Join(r.Root, id)
	o := Observation{
		ID:          id,
		Pod:         firstAnnotation(st.Annotations, podNameAnnotations),
		Namespace:   firstAnnotation(st.Annotations, podNamespaceAnnotations),
		Confinement: st.Clawrun,
		Startup:     readStartup(stateDir),
	}
	if conf, _ := loadConfinement(stateDir); conf != nil && conf.Egress != nil {
		o.Filter = observeFilter(stateDir)
	}
	return o, true
}

func firstAnnotation(annotations map[string]string, keys []string) string {
	for _, k := range keys {
		if v := annotations[k]; v != "" {
			return v
		}
	}
	return ""
}

// observeFilter reads the status and the counts of the filter whose
// files are in stateDir.
func observeFilter(stateDir string) *FilterObservation {
	f := &FilterObservation{}
	if st, err := filter.ReadStatus(filepath.Join(stateDir, egressStatusFile)); err == nil {
		f.Status = st
		f.Down = filterDown(st)
	}
	if s, err := filter.ReadStats(filepath.Join(stateDir, egressStatsFile)); err == nil {
		f.Stats = s
	}
	return f
}

// startupFile records how long a confined container took to start.
const startupFile = "clawrun-startup.json"

type startupRecord struct {
	Seconds float64 `json:"seconds"`
}

// recordStartup notes in stateDir that the container's create (or run),
// begun at began, has it confined and its filter up now. Only a metric
// depends on it: a failure to write it fails nothing.
func recordStartup(stateDir string, began time.Time) {
	_ = jsonfile.Write(filepath.Join(stateDir, startupFile), startupRecord{Seconds: time.Since(began).Seconds()}, 0o600)
}

// readStartup is what recordStartup wrote, 0 when nothing was.
func readStartup(stateDir string) time.Duration {
	var rec startupRecord
	if err := jsonfile.Read(filepath.Join(stateDir, startupFile), &rec); err != nil {
		return 0
	}
	return time.Duration(rec.Seconds * float64(time.Second))
}
