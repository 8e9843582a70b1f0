package main

import (
	"errors"
	"os"
	"syscall"

	"github.com/urfave/cli/v2"

	"github.com/clawrun/clawrun/internal/sibling"
)

// metricsProgram serves `clawrun metrics`, installed next to clawrun.
const metricsProgram = "clawrun-metrics"

// metricsCommand runs clawrun-metrics with the command's arguments (and
// clawrun's --root), so that clawrun itself does not link the Prometheus
// client: `clawrun metrics --help` is its help.
var metricsCommand = &cli.Command{
	Name:            "metrics",
	Usage:           "report the node's containers and egress filters as Prometheus metrics (clawrun metrics --help)",
	SkipFlagParsing: true,
	HideHelp:        true,
	Action: func(c *cli.Context) error {
		prog, ok := sibling.Find(metricsProgram)
		if !ok {
			return errors.New("clawrun metrics: " + metricsProgram + " is not installed next to clawrun (make install installs it)")
		}
		argv := []string{metricsProgram}
		for _, ctx := range c.Lineage() {
			if ctx.IsSet("root") {
				argv = append(argv, "--root", ctx.String("root"))
				break
			}
		}
		argv = append(argv, c.Args().Slice()...)
		return syscall.Exec(prog, argv, os.Environ())
	},
}
