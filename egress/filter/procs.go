package filter

import (
	"runtime"

	"github.com/clawrun/clawrun/egress/rules"
)

// A worker that only passes connections through (each decided on its
// ClientHello or request head, then spliced by the kernel) waits on the
// network far more than it computes: Go's scheduler, handing goroutines
// between threads as they wake, then costs it more than its own work.
// With one P (GOMAXPROCS=1) they run where they wake. Inspection
// (decrypting and re-encrypting) and the inference route compute: while
// the rules may use either, the worker has every CPU, Go's default.

// wantProcs is the worker's GOMAXPROCS under rules r: 1 when it passes
// every connection through, 0 (Go's default) when it may inspect.
func wantProcs(r *rules.Rules, inference bool) int {
	if inference || r.InspectedEndpoint() != "" {
		return 0
	}
	return 1
}

// setProcs gives the worker wantProcs.
func setProcs(r *rules.Rules, inference bool) {
	if n := wantProcs(r, inference); n > 0 {
		runtime.GOMAXPROCS(n)
	} else {
		runtime.SetDefaultGOMAXPROCS()
	}
}
