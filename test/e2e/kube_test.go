package e2e

import (
	"path/filepath"
	"testing"
	"time"
)

// TestKube runs clawrun as a RuntimeClass of a real single-node cluster
// (kube_cluster_test.go).
func TestKube(t *testing.T) {
	start := time.Now()
	k := startKubeCluster(t)
	must(t, k.kubectl("apply", "-f", filepath.Join(theEnv.repo, "contrib/kubernetes/runtimeclass.yaml")))
	step(t, start, "done")
}
