package main

import "testing"

func TestEgressWord(t *testing.T) {
	for in, want := range map[string]string{
		"off":                      "off",
		"pending":                  "pending",
		"filtering (generation 3)": "filtering/gen3",
		"filtering (generation 1), the pod's filter (sandbox abc)":              "filtering/gen1(pod)",
		"filtering (generation 2), shared: the filter of container abc":         "filtering/gen2(shared)",
		"down: the filter's supervisor (pid 7) is gone: nothing gets out":       "down",
		"down, restarting: nothing gets out meanwhile (exit 1)":                 "down",
		"failed: nothing gets out (exit 1)":                                     "failed",
		"down: the pod's sandbox abc and its filter are gone: nothing gets out": "down",
	} {
		if got := egressWord(in); got != want {
			t.Errorf("egressWord(%q) = %q, want %q", in, got, want)
		}
	}
}
