package main

import (
	"encoding/json"
	"fmt"
	"os"
	"strconv"

	"github.com/docker/go-units"
	"github.com/urfave/cli/v2"

	"github.com/clawrun/clawrun/runtime"
)

var updateCommand = &cli.Command{
	Name:      "update",
	Usage:     "change the resource limits of a running container",
	ArgsUsage: "<container-id>",
	Description: `Limits come from flags, or from an OCI LinuxResources JSON document given
with -r FILE (or -r - for standard input), in which case the flags are ignored.

Example:
    clawrun update --memory 512M --pids-limit 100 agent1
    echo '{"pids":{"limit":50}}' | clawrun update -r - agent1`,
	Flags: []cli.Flag{
		&cli.StringFlag{Name: "resources", Aliases: []string{"r"}, Usage: "LinuxResources JSON file, or - for stdin"},
		&cli.IntFlag{Name: "blkio-weight", Usage: "block IO weight (10 to 1000)"},
		&cli.StringFlag{Name: "cpu-period", Usage: "CFS period in microseconds"},
		&cli.StringFlag{Name: "cpu-quota", Usage: "CFS quota in microseconds per period"},
		&cli.StringFlag{Name: "cpu-burst", Usage: "CFS burst in microseconds"},
		&cli.StringFlag{Name: "cpu-share", Usage: "CPU shares (relative weight)"},
		&cli.StringFlag{Name: "cpu-rt-period", Usage: "realtime period in microseconds"},
		&cli.StringFlag{Name: "cpu-rt-runtime", Usage: "realtime runtime in microseconds"},
		&cli.StringFlag{Name: "cpuset-cpus", Usage: "CPUs to use (e.g. 0-1)"},
		&cli.StringFlag{Name: "cpuset-mems", Usage: "memory nodes to use"},
		&cli.StringFlag{Name: "cpu-idle", Usage: "1 for SCHED_IDLE, 0 for the default"},
		&cli.StringFlag{Name: "memory", Usage: "memory limit (e.g. 512M, -1 for none)"},
		&cli.StringFlag{Name: "memory-reservation", Usage: "memory soft limit"},
		&cli.StringFlag{Name: "memory-swap", Usage: "memory + swap limit (-1 for none)"},
		&cli.StringFlag{Name: "kernel-memory", Hidden: true},
		&cli.StringFlag{Name: "kernel-memory-tcp", Hidden: true},
		&cli.IntFlag{Name: "pids-limit", Usage: "maximum number of processes"},
		&cli.StringFlag{Name: "l3-cache-schema", Usage: "Intel RDT/CAT L3 cache schema"},
		&cli.StringFlag{Name: "mem-bw-schema", Usage: "Intel RDT/MBA memory bandwidth schema"},
	},
	Action: func(c *cli.Context) error {
		if err := exactArgs(c, 1); err != nil {
			return err
		}
		rt, err := newRuntime(c)
		if err != nil {
			return err
		}
		u := runtime.NewUpdateOptions()
		if src := c.String("resources"); src != "" {
			in := os.Stdin
			if src != "-" {
				if in, err = os.Open(src); err != nil {
					return err
				}
				defer in.Close()
			}
			if err := json.NewDecoder(in).Decode(&u.Resources); err != nil {
				return fmt.Errorf("--resources: invalid JSON: %w", err)
			}
		} else if err := resourcesFromFlags(c, u); err != nil {
			return err
		}
		u.L3CacheSchema = c.String("l3-cache-schema")
		u.MemBwSchema = c.String("mem-bw-schema")
		return rt.Update(c.Args().First(), u)
	},
}

func resourcesFromFlags(c *cli.Context, u *runtime.UpdateOptions) error {
	r := &u.Resources
	if v := c.Int("blkio-weight"); v != 0 {
		w := uint16(v)
		r.BlockIO.Weight = &w
	}
	r.CPU.Cpus = c.String("cpuset-cpus")
	r.CPU.Mems = c.String("cpuset-mems")
	if v := c.String("cpu-idle"); v != "" {
		idle, err := strconv.ParseInt(v, 10, 64)
		if err != nil {
			return fmt.Errorf("invalid --cpu-idle: %w", err)
		}
		r.CPU.Idle = &idle
	}
	for flag, dst := range map[string]**uint64{
		"cpu-burst": &r.CPU.Burst, "cpu-period": &r.CPU.Period,
		"cpu-rt-period": &r.CPU.RealtimePeriod, "cpu-share": &r.CPU.Shares,
	} {
		if v := c.String(flag); v != "" {
			n, err := strconv.ParseUint(v, 10, 64)
			if err != nil {
				return fmt.Errorf("invalid --%s: %w", flag, err)
			}
			*dst = &n
		}
	}
	for flag, dst := range map[string]**int64{
		"cpu-quota": &r.CPU.Quota, "cpu-rt-runtime": &r.CPU.RealtimeRuntime,
	} {
		if v := c.String(flag); v != "" {
			n, err := strconv.ParseInt(v, 10, 64)
			if err != nil {
				return fmt.Errorf("invalid --%s: %w", flag, err)
			}
			*dst = &n
		}
	}
	for flag, dst := range map[string]**int64{
		"memory": &r.Memory.Limit, "memory-swap": &r.Memory.Swap,
		"memory-reservation": &r.Memory.Reservation,
		"kernel-memory":      &r.Memory.Kernel, //nolint:staticcheck // accepted and ignored, as runc does
		"kernel-memory-tcp":  &r.Memory.KernelTCP,
	} {
		if v := c.String(flag); v != "" {
			n := int64(-1)
			if v != "-1" {
				var err error
				if n, err = units.RAMInBytes(v); err != nil {
					return fmt.Errorf("invalid --%s: %w", flag, err)
				}
			}
			*dst = &n
		}
	}
	if c.IsSet("pids-limit") {
		n := int64(c.Int("pids-limit"))
		r.Pids.Limit = &n
	}
	return nil
}
