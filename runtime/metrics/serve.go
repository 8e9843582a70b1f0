package metrics

import (
	"net/http"
	"path/filepath"
	"slices"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/clawrun/clawrun/runtime"
)

// DefaultRoots are where the runtime's containers live when clawrun is
// run by hand (its --root default), by containerd's runc shim (one root
// per containerd namespace: k8s.io, default, moby; under
// /run/containerd/clawrun for the CRI handlers of contrib and the
// installer) and by Docker's runtime without the shim.
var DefaultRoots = []string{runtime.DefaultRoot, "/run/containerd/clawrun/*", "/run/containerd/runc/*", "/run/docker/runtime-runc/*"}

// ExpandRoots are the directories the patterns name (filepath.Glob), in
// order, each once; a pattern that names nothing adds nothing.
func ExpandRoots(patterns []string) ([]string, error) {
	var roots []string
	for _, p := range patterns {
		matches, err := filepath.Glob(p)
		if err != nil {
			return nil, err
		}
		for _, m := range matches {
			if !slices.Contains(roots, m) {
				roots = append(roots, m)
			}
		}
	}
	return roots, nil
}

// ObserveRoots observes the containers of the roots that the patterns
// name at each scrape (a containerd namespace may appear later). A
// container id found under two roots is reported once, from the first.
func ObserveRoots(patterns []string) Observer {
	return func() ([]runtime.Observation, error) {
		roots, err := ExpandRoots(patterns)
		if err != nil {
			return nil, err
		}
		var out []runtime.Observation
		seen := map[string]bool{}
		for _, root := range roots {
			rt, err := runtime.New(root, false, nil)
			if err != nil {
				return nil, err
			}
			obs, err := rt.Observe()
			if err != nil {
				return nil, err
			}
			for _, o := range obs {
				if !seen[o.ID] {
					seen[o.ID] = true
					out = append(out, o)
				}
			}
		}
		return out, nil
	}
}

// NewRegistry is a registry of the collector of observe alone.
func NewRegistry(observe Observer) *prometheus.Registry {
	reg := prometheus.NewRegistry()
	reg.MustRegister(NewCollector(observe))
	return reg
}

// Handler serves reg's metrics (GET /metrics).
func Handler(reg *prometheus.Registry) http.Handler {
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	return mux
}

// TextfileName is the file `clawrun metrics --textfile DIR` writes.
const TextfileName = "clawrun.prom"

// WriteTextfile writes reg's metrics to dir/TextfileName atomically (a
// temporary file renamed over it), for node_exporter's textfile
// collector.
func WriteTextfile(dir string, reg *prometheus.Registry) error {
	return prometheus.WriteToTextfile(filepath.Join(dir, TextfileName), reg)
}
