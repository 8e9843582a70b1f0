package runtime

import (
	"testing"

	"github.com/opencontainers/cgroups"
	"github.com/opencontainers/runtime-spec/specs-go"
)

// A device listed twice in the config is written to the cgroup twice, the
// last entry winning: an update must change that last one, as runc's does.
func TestUpsertDuplicateDevice(t *testing.T) {
	throttle := []*cgroups.ThrottleDevice{cgroups.NewThrottleDevice(8, 0, 1), cgroups.NewThrottleDevice(8, 0, 1)}
	throttle = upsertThrottleDevice(throttle, specs.LinuxThrottleDevice{LinuxBlockIODevice: specs.LinuxBlockIODevice{Major: 8, Minor: 0}, Rate: 5})
	if len(throttle) != 2 || throttle[1].Rate != 5 {
		t.Errorf("throttle devices after the update: %v, want the last one at rate 5", throttle)
	}
	throttle = upsertThrottleDevice(throttle, specs.LinuxThrottleDevice{LinuxBlockIODevice: specs.LinuxBlockIODevice{Major: 8, Minor: 16}, Rate: 7})
	if len(throttle) != 3 || throttle[2].Minor != 16 || throttle[2].Rate != 7 {
		t.Errorf("a new device is not appended: %v", throttle)
	}

	w := uint16(300)
	weights := []*cgroups.WeightDevice{cgroups.NewWeightDevice(8, 0, 100, 0), cgroups.NewWeightDevice(8, 0, 100, 0)}
	weights = upsertWeightDevice(weights, specs.LinuxWeightDevice{LinuxBlockIODevice: specs.LinuxBlockIODevice{Major: 8, Minor: 0}, Weight: &w})
	if len(weights) != 2 || weights[1].Weight != 300 {
		t.Errorf("weight devices after the update: %v, want the last one at weight 300", weights)
	}
}
