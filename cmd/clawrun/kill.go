package main

import (
	"github.com/urfave/cli/v2"

	"github.com/clawrun/clawrun/runtime"
)

var killCommand = &cli.Command{
	Name:      "kill",
	Usage:     "send a signal (default: SIGTERM) to the container's init",
	ArgsUsage: "<container-id> [signal]",
	Description: `The signal is a name ("KILL", "SIGKILL") or a number ("9").

Example:
    clawrun kill agent1 KILL`,
	Flags: []cli.Flag{
		&cli.BoolFlag{Name: "all", Aliases: []string{"a"}, Usage: "(obsolete) do not fail if the container is no longer running"},
	},
	Action: func(c *cli.Context) error {
		if err := argRange(c, 1, 2); err != nil {
			return err
		}
		rt, err := newRuntime(c)
		if err != nil {
			return err
		}
		name := c.Args().Get(1)
		if name == "" {
			name = "SIGTERM"
		}
		sig, err := runtime.ParseSignal(name)
		if err != nil {
			return err
		}
		return rt.Kill(c.Args().First(), sig, c.Bool("all"))
	},
}
