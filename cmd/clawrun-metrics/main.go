// clawrun-metrics is `clawrun metrics`: the node's containers and egress
// filters as Prometheus metrics. It is a program of its own so that
// clawrun, which every container start runs several times (create, start,
// the container's init), does not link or initialise the Prometheus
// client; `clawrun metrics ...` runs it from clawrun's directory.
package main

import (
	"fmt"
	"os"

	"github.com/urfave/cli/v2"
)

func main() {
	app := &cli.App{
		Name:        "clawrun metrics",
		Usage:       metricsCommand.Usage,
		Description: metricsCommand.Description,
		Flags: append([]cli.Flag{
			&cli.StringFlag{Name: "root", Usage: "clawrun's root directory (only that root is reported)"},
		}, metricsCommand.Flags...),
		Action:   metricsCommand.Action,
		Commands: metricsCommand.Subcommands,
	}
	if err := app.Run(os.Args); err != nil {
		fmt.Fprintln(os.Stderr, "clawrun metrics:", err)
		os.Exit(1)
	}
}
