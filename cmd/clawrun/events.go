package main

import (
	"context"
	"encoding/json"
	"os"
	"os/signal"
	"time"

	"github.com/opencontainers/runc/types"
	"github.com/sirupsen/logrus"
	"github.com/urfave/cli/v2"
	"golang.org/x/sys/unix"
)

var eventsCommand = &cli.Command{
	Name:      "events",
	Usage:     "print a container's resource statistics and OOM events as JSON lines",
	ArgsUsage: "<container-id>",
	Description: `Prints a stats event every --interval and an "oom" event when the container
hits its memory limit, until the container exits or clawrun is interrupted.

Example:
    clawrun events --stats agent1
    clawrun events --interval 1s agent1`,
	Flags: []cli.Flag{
		&cli.DurationFlag{Name: "interval", Value: 5 * time.Second, Usage: "time between stats events"},
		&cli.BoolFlag{Name: "stats", Usage: "print the stats once and exit"},
	},
	Action: func(c *cli.Context) error {
		if err := exactArgs(c, 1); err != nil {
			return err
		}
		rt, err := newRuntime(c)
		if err != nil {
			return err
		}
		id := c.Args().First()
		enc := json.NewEncoder(os.Stdout)
		if c.Bool("stats") {
			ev, err := rt.Stats(id)
			if err != nil {
				return err
			}
			return enc.Encode(ev)
		}
		ctx, stop := signal.NotifyContext(context.Background(), unix.SIGINT, unix.SIGTERM)
		defer stop()
		return rt.Events(ctx, id, c.Duration("interval"), func(ev *types.Event) {
			if err := enc.Encode(ev); err != nil {
				logrus.Error(err)
			}
		})
	},
}
