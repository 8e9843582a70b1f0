package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"

	"github.com/urfave/cli/v2"
)

var psCommand = &cli.Command{
	Name:      "ps",
	Usage:     "show the processes running in a container",
	ArgsUsage: "<container-id> [ps options]",
	Description: `With --format table, runs the host's ps (default options: -ef) and keeps
the container's processes; with --format json, prints their host pids.

Example:
    clawrun ps --format json agent1`,
	Flags: []cli.Flag{
		&cli.StringFlag{Name: "format", Aliases: []string{"f"}, Value: "table", Usage: "table or json"},
	},
	Action: func(c *cli.Context) error {
		if err := argRange(c, 1, -1); err != nil {
			return err
		}
		rt, err := newRuntime(c)
		if err != nil {
			return err
		}
		pids, err := rt.Processes(c.Args().First())
		if err != nil {
			return err
		}
		switch c.String("format") {
		case "json":
			if pids == nil {
				pids = []int{}
			}
			return json.NewEncoder(os.Stdout).Encode(pids)
		case "table":
		default:
			return fmt.Errorf("invalid --format %q (want table or json)", c.String("format"))
		}
		psArgs := c.Args().Tail()
		if len(psArgs) == 0 {
			psArgs = []string{"-ef"}
		}
		out, err := exec.Command("ps", psArgs...).CombinedOutput()
		if err != nil {
			return fmt.Errorf("ps: %w: %s", err, out)
		}
		lines := strings.Split(string(out), "\n")
		pidCol := slices.Index(strings.Fields(lines[0]), "PID")
		if pidCol < 0 {
			return errors.New("no PID column in the output of ps")
		}
		fmt.Println(lines[0])
		for _, line := range lines[1:] {
			fields := strings.Fields(line)
			if len(fields) <= pidCol {
				continue
			}
			if pid, err := strconv.Atoi(fields[pidCol]); err == nil && slices.Contains(pids, pid) {
				fmt.Println(line)
			}
		}
		return nil
	},
}
