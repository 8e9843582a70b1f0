package main

import (
	"github.com/urfave/cli/v2"
)

var deleteCommand = &cli.Command{
	Name:      "delete",
	Usage:     "delete a stopped container and everything it holds",
	ArgsUsage: "<container-id>",
	Description: `Removes the container's state, cgroups and any other resource it holds. A
running container is refused unless --force, which kills it first.

Example:
    clawrun delete --force agent1`,
	Flags: []cli.Flag{
		&cli.BoolFlag{Name: "force", Aliases: []string{"f"}, Usage: "kill (SIGKILL) the container first if it still runs"},
	},
	Action: func(c *cli.Context) error {
		if err := exactArgs(c, 1); err != nil {
			return err
		}
		rt, err := newRuntime(c)
		if err != nil {
			return err
		}
		return rt.Delete(c.Args().First(), c.Bool("force"))
	},
}
