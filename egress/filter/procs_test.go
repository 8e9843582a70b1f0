package filter

import (
	"testing"

	"github.com/clawrun/clawrun/egress/rules"
	"github.com/clawrun/clawrun/runtime/policy"
)

// TestWantProcs: one P while the worker only passes connections
// through; Go's default once the rules inspect, or with the inference
// route.
func TestWantProcs(t *testing.T) {
	layer := func(ep policy.Endpoint) []policy.NetworkLayer {
		return []policy.NetworkLayer{{Source: "c", Policies: map[string]policy.NetworkPolicy{"p": {Endpoints: []policy.Endpoint{ep}}}}}
	}
	inspected, err := rules.FromPlan(layer(policy.Endpoint{Host: "api.example", Ports: []int{443}, Protocol: "rest", Access: "read-only"}), 1)
	if err != nil {
		t.Fatal(err)
	}
	spliced, err := rules.FromPlan(layer(policy.Endpoint{Host: "api.example", Ports: []int{443}}), 1)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name      string
		r         *rules.Rules
		inference bool
		want      int
	}{
		{"passed through", spliced, false, 1},
		{"inspected", inspected, false, 0},
		{"inference route", spliced, true, 0},
	} {
		if got := wantProcs(tc.r, tc.inference); got != tc.want {
			t.Errorf("%s: wantProcs = %d, want %d", tc.name, got, tc.want)
		}
	}
}
