package main

import (
	"os"

	"github.com/urfave/cli/v2"
)

var runCommand = &cli.Command{
	Name:      "run",
	Usage:     "create and start a container",
	ArgsUsage: "<container-id>",
	Description: `Creates and starts a container from the bundle. In the foreground, clawrun
forwards signals to the container, exits with the container's exit status
and removes the container (unless --keep).

Example:
    cd /containers/agent && clawrun run agent1
    clawrun run -d --bundle /containers/agent agent2`,
	Flags: append(containerFlags(),
		&cli.BoolFlag{Name: "detach", Aliases: []string{"d"}, Usage: "return as soon as the container runs"},
		&cli.BoolFlag{Name: "keep", Usage: "do not delete the container after it exits"},
		&cli.BoolFlag{Name: "no-subreaper", Usage: "do not reap processes reparented to clawrun"},
	),
	Action: func(c *cli.Context) error {
		if err := exactArgs(c, 1); err != nil {
			return err
		}
		rt, err := newRuntime(c)
		if err != nil {
			return err
		}
		opts := createOptions(c)
		opts.Detach = c.Bool("detach")
		opts.Keep = c.Bool("keep")
		opts.NoSubreaper = c.Bool("no-subreaper")
		status, err := rt.Run(opts)
		if err != nil {
			return commandFailed(c, err)
		}
		os.Exit(status)
		return nil
	},
}
