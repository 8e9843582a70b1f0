package runtime

import (
	"errors"
	"slices"

	"github.com/opencontainers/cgroups"
	"github.com/opencontainers/runc/libcontainer/intelrdt"
	"github.com/opencontainers/runtime-spec/specs-go"
	"github.com/sirupsen/logrus"
)

// UpdateOptions are new resource limits; nil fields keep their value.
type UpdateOptions struct {
	Resources     specs.LinuxResources
	L3CacheSchema string
	MemBwSchema   string
}

// NewUpdateOptions returns options with every resource group present, so
// that flags and JSON can fill them in.
func NewUpdateOptions() *UpdateOptions {
	no := false
	return &UpdateOptions{Resources: specs.LinuxResources{
		Memory:  &specs.LinuxMemory{CheckBeforeUpdate: &no},
		CPU:     &specs.LinuxCPU{},
		BlockIO: &specs.LinuxBlockIO{},
		Pids:    &specs.LinuxPids{},
	}}
}

// Update applies new resource limits to a running container's cgroups.
func (r *Runtime) Update(id string, u *UpdateOptions) (err error) {
	defer classify(&err)
	c, err := r.load(id)
	if err != nil {
		return err
	}
	res := &u.Resources
	// JSON input may omit whole groups; treat them as "no change".
	def := NewUpdateOptions().Resources
	if res.Memory == nil {
		res.Memory = def.Memory
	}
	if res.CPU == nil {
		res.CPU = def.CPU
	}
	if res.BlockIO == nil {
		res.BlockIO = def.BlockIO
	}
	if res.Pids == nil {
		res.Pids = def.Pids
	}
	config := c.Config()
	cg := config.Cgroups.Resources

	// A memory limit of -1 (unlimited) without a swap value lifts swap too.
	if res.Memory.Limit != nil && *res.Memory.Limit == -1 && res.Memory.Swap == nil {
		zero := int64(0)
		res.Memory.Swap = &zero
	}
	if res.CPU.Idle != nil && res.CPU.Shares == nil {
		zero := uint64(0)
		res.CPU.Shares = &zero
	}
	if res.Memory.Kernel != nil || res.Memory.KernelTCP != nil { //nolint:staticcheck // still accepted on input
		logrus.Warn("kernel memory settings are ignored")
	}

	if w := res.BlockIO.Weight; w != nil {
		cg.BlkioWeight = *w
	}
	if w := res.BlockIO.LeafWeight; w != nil {
		cg.BlkioLeafWeight = *w
	}
	for _, wd := range res.BlockIO.WeightDevice {
		cg.BlkioWeightDevice = upsertWeightDevice(cg.BlkioWeightDevice, wd)
	}
	for _, pair := range []struct {
		dst *[]*cgroups.ThrottleDevice
		src []specs.LinuxThrottleDevice
	}{
		{&cg.BlkioThrottleReadBpsDevice, res.BlockIO.ThrottleReadBpsDevice},
		{&cg.BlkioThrottleWriteBpsDevice, res.BlockIO.ThrottleWriteBpsDevice},
		{&cg.BlkioThrottleReadIOPSDevice, res.BlockIO.ThrottleReadIOPSDevice},
		{&cg.BlkioThrottleWriteIOPSDevice, res.BlockIO.ThrottleWriteIOPSDevice},
	} {
		for _, td := range pair.src {
			*pair.dst = upsertThrottleDevice(*pair.dst, td)
		}
	}

	// A period or a quota alone keeps the other's current value.
	var period uint64
	var quota int64
	if res.CPU.Period != nil {
		period = *res.CPU.Period
	}
	if res.CPU.Quota != nil {
		quota = *res.CPU.Quota
	}
	switch {
	case (period == 0) == (quota == 0):
		cg.CpuPeriod, cg.CpuQuota = period, quota
	case period != 0:
		cg.CpuPeriod = period
	default:
		cg.CpuQuota = quota
	}
	cg.CpuBurst = res.CPU.Burst
	if s := res.CPU.Shares; s != nil {
		cg.CpuShares = *s
		cg.CpuWeight = cgroups.ConvertCPUSharesToCgroupV2Value(*s)
	}
	if v := res.CPU.RealtimePeriod; v != nil {
		cg.CpuRtPeriod = *v
	}
	if v := res.CPU.RealtimeRuntime; v != nil {
		cg.CpuRtRuntime = *v
	}
	cg.CpusetCpus = res.CPU.Cpus
	cg.CpusetMems = res.CPU.Mems
	cg.CPUIdle = res.CPU.Idle
	if v := res.Memory.Limit; v != nil {
		cg.Memory = *v
	}
	if v := res.Memory.Reservation; v != nil {
		cg.MemoryReservation = *v
	}
	if v := res.Memory.Swap; v != nil {
		cg.MemorySwap = *v
	}
	if v := res.Memory.CheckBeforeUpdate; v != nil {
		cg.MemoryCheckBeforeUpdate = *v
	}
	cg.PidsLimit = res.Pids.Limit
	cg.Unified = res.Unified

	if u.L3CacheSchema != "" && !intelrdt.IsCATEnabled() {
		return errors.New("Intel RDT/CAT: l3 cache schema is not enabled")
	}
	if u.MemBwSchema != "" && !intelrdt.IsMBAEnabled() {
		return errors.New("Intel RDT/MBA: memory bandwidth schema is not enabled")
	}
	if u.L3CacheSchema != "" || u.MemBwSchema != "" {
		if config.IntelRdt == nil {
			return errors.New("updating a non-existent Intel RDT configuration is not supported")
		}
		if u.L3CacheSchema != "" {
			config.IntelRdt.L3CacheSchema = u.L3CacheSchema
		}
		if u.MemBwSchema != "" {
			config.IntelRdt.MemBwSchema = u.MemBwSchema
		}
	}
	// Device rules were set at create; rewriting them would briefly open
	// the device cgroup.
	config.Cgroups.SkipDevices = true
	return c.Set(config)
}

// The upserts change a device's last entry: a device listed twice is
// written to the cgroup twice, and the last write is the one that holds.

func upsertWeightDevice(devs []*cgroups.WeightDevice, wd specs.LinuxWeightDevice) []*cgroups.WeightDevice {
	for _, d := range slices.Backward(devs) {
		if d.Major == wd.Major && d.Minor == wd.Minor {
			if wd.Weight != nil {
				d.Weight = *wd.Weight
			}
			if wd.LeafWeight != nil {
				d.LeafWeight = *wd.LeafWeight
			}
			return devs
		}
	}
	var weight, leaf uint16
	if wd.Weight != nil {
		weight = *wd.Weight
	}
	if wd.LeafWeight != nil {
		leaf = *wd.LeafWeight
	}
	return append(devs, cgroups.NewWeightDevice(wd.Major, wd.Minor, weight, leaf))
}

func upsertThrottleDevice(devs []*cgroups.ThrottleDevice, td specs.LinuxThrottleDevice) []*cgroups.ThrottleDevice {
	for _, d := range slices.Backward(devs) {
		if d.Major == td.Major && d.Minor == td.Minor {
			d.Rate = td.Rate
			return devs
		}
	}
	return append(devs, cgroups.NewThrottleDevice(td.Major, td.Minor, td.Rate))
}
