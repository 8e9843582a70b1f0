package main

import (
	"github.com/urfave/cli/v2"
)

var killCommand = &cli.Command{
	Name:      "kill",
	Usage:     "send a signal (default: SIGTERM) to the container's init",
	ArgsUsage: "<container-id> [signal]",
	Description: `The signal is a name ("KILL", "SIGKILL") or a number ("9"). Signal 0 sends
nothing: it only checks that the container runs (exit status 0) or not
("container not running").

Example:
    clawrun kill agent1 KILL
    clawrun kill agent1 0`,
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
		sig := c.Args().Get(1)
		if sig == "" {
			sig = "SIGTERM"
		}
		return rt.Kill(c.Args().First(), sig, c.Bool("all"))
	},
}
