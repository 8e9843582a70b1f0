package runtime

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/opencontainers/cgroups"
	"github.com/opencontainers/runc/libcontainer"
	"github.com/opencontainers/runc/libcontainer/intelrdt"
	"github.com/opencontainers/runc/types"
)

// Stats returns one stats event for a container, in the JSON shape of
// runc's `events --stats` (which containerd and docker decode).
func (r *Runtime) Stats(id string) (_ *types.Event, err error) {
	defer classify(&err)
	c, err := r.loadNotStopped(id)
	if err != nil {
		return nil, err
	}
	return statsEvent(c)
}

// loadNotStopped opens a container whose cgroup still has something to
// report, failing with runc's words otherwise.
func (r *Runtime) loadNotStopped(id string) (*libcontainer.Container, error) {
	c, err := r.load(id)
	if err != nil {
		return nil, err
	}
	status, err := c.Status()
	if err != nil {
		return nil, err
	}
	if status == libcontainer.Stopped {
		return nil, failedPrecondition(fmt.Errorf("container with id %s is not running", id))
	}
	return c, nil
}

func statsEvent(c *libcontainer.Container) (*types.Event, error) {
	s, err := c.Stats()
	if err != nil {
		return nil, err
	}
	return &types.Event{Type: "stats", ID: c.ID(), Data: convertStats(s)}, nil
}

// Events emits a stats event every interval and an "oom" event whenever
// the container hits its memory limit, until ctx ends or the container's
// cgroup goes away.
func (r *Runtime) Events(ctx context.Context, id string, interval time.Duration, emit func(*types.Event)) (err error) {
	defer classify(&err)
	if interval <= 0 {
		return invalidArgument(errors.New("--interval must be greater than 0"))
	}
	c, err := r.loadNotStopped(id)
	if err != nil {
		return err
	}
	oom, err := c.NotifyOOM()
	if err != nil {
		return err
	}
	tick := time.NewTicker(interval)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case _, ok := <-oom:
			if !ok {
				return nil // the cgroup is gone: the container exited
			}
			emit(&types.Event{Type: "oom", ID: id})
		case <-tick.C:
			ev, err := statsEvent(c)
			if err != nil {
				return err
			}
			emit(ev)
		}
	}
}

func convertStats(ls *libcontainer.Stats) *types.Stats {
	cg := ls.CgroupStats
	if cg == nil {
		return nil
	}
	var s types.Stats
	s.Pids.Current = cg.PidsStats.Current
	s.Pids.Limit = cg.PidsStats.Limit

	cpu := cg.CpuStats
	s.CPU.Usage = types.CpuUsage{
		Kernel:       cpu.CpuUsage.UsageInKernelmode,
		User:         cpu.CpuUsage.UsageInUsermode,
		Total:        cpu.CpuUsage.TotalUsage,
		Percpu:       cpu.CpuUsage.PercpuUsage,
		PercpuKernel: cpu.CpuUsage.PercpuUsageInKernelmode,
		PercpuUser:   cpu.CpuUsage.PercpuUsageInUsermode,
	}
	s.CPU.Throttling = types.Throttling{
		Periods:          cpu.ThrottlingData.Periods,
		ThrottledPeriods: cpu.ThrottlingData.ThrottledPeriods,
		ThrottledTime:    cpu.ThrottlingData.ThrottledTime,
	}
	s.CPU.PSI = cpu.PSI
	s.CPUSet = types.CPUSet(cg.CPUSetStats)

	mem := cg.MemoryStats
	s.Memory.Cache = mem.Cache
	s.Memory.Kernel = memoryEntry(mem.KernelUsage)
	s.Memory.KernelTCP = memoryEntry(mem.KernelTCPUsage)
	s.Memory.Swap = memoryEntry(mem.SwapUsage)
	s.Memory.Usage = memoryEntry(mem.Usage)
	s.Memory.Raw = mem.Stats
	s.Memory.PSI = mem.PSI

	b := cg.BlkioStats
	s.Blkio.IoServiceBytesRecursive = blkioEntries(b.IoServiceBytesRecursive)
	s.Blkio.IoServicedRecursive = blkioEntries(b.IoServicedRecursive)
	s.Blkio.IoQueuedRecursive = blkioEntries(b.IoQueuedRecursive)
	s.Blkio.IoServiceTimeRecursive = blkioEntries(b.IoServiceTimeRecursive)
	s.Blkio.IoWaitTimeRecursive = blkioEntries(b.IoWaitTimeRecursive)
	s.Blkio.IoMergedRecursive = blkioEntries(b.IoMergedRecursive)
	s.Blkio.IoTimeRecursive = blkioEntries(b.IoTimeRecursive)
	s.Blkio.SectorsRecursive = blkioEntries(b.SectorsRecursive)
	s.Blkio.PSI = b.PSI

	s.Hugetlb = make(map[string]types.Hugetlb, len(cg.HugetlbStats))
	for size, h := range cg.HugetlbStats {
		s.Hugetlb[size] = types.Hugetlb{Usage: h.Usage, Max: h.MaxUsage, Failcnt: h.Failcnt}
	}

	if rdt := ls.IntelRdtStats; rdt != nil {
		if intelrdt.IsCATEnabled() && rdt.L3CacheInfo != nil {
			info := types.L3CacheInfo(*rdt.L3CacheInfo)
			s.IntelRdt.L3CacheInfo = &info
			s.IntelRdt.L3CacheSchemaRoot = rdt.L3CacheSchemaRoot
			s.IntelRdt.L3CacheSchema = rdt.L3CacheSchema
		}
		if intelrdt.IsMBAEnabled() && rdt.MemBwInfo != nil {
			info := types.MemBwInfo(*rdt.MemBwInfo)
			s.IntelRdt.MemBwInfo = &info
			s.IntelRdt.MemBwSchemaRoot = rdt.MemBwSchemaRoot
			s.IntelRdt.MemBwSchema = rdt.MemBwSchema
		}
		if intelrdt.IsMBMEnabled() {
			s.IntelRdt.MBMStats = rdt.MBMStats
		}
		if intelrdt.IsCMTEnabled() {
			s.IntelRdt.CMTStats = rdt.CMTStats
		}
		s.IntelRdt.Schemata = rdt.Schemata
	}
	s.NetworkInterfaces = ls.Interfaces
	return &s
}

func memoryEntry(m cgroups.MemoryData) types.MemoryEntry {
	return types.MemoryEntry{Limit: m.Limit, Usage: m.Usage, Max: m.MaxUsage, Failcnt: m.Failcnt}
}

func blkioEntries(in []cgroups.BlkioStatEntry) []types.BlkioEntry {
	out := make([]types.BlkioEntry, 0, len(in))
	for _, e := range in {
		out = append(out, types.BlkioEntry(e))
	}
	return out
}
