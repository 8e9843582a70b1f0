package main

import (
	"fmt"
	"os"
	"path/filepath"

	"github.com/urfave/cli/v2"

	"github.com/clawrun/clawrun/runtime"
)

// Flags shared by create and run.
func containerFlags() []cli.Flag {
	return []cli.Flag{
		&cli.StringFlag{Name: "bundle", Aliases: []string{"b"}, Usage: "path to the bundle directory (default: the current directory)"},
		&cli.StringFlag{Name: "console-socket", Usage: "AF_UNIX socket that receives the master end of the container's pty"},
		&cli.StringFlag{Name: "pidfd-socket", Usage: "AF_UNIX socket that receives a pidfd of the container's init"},
		&cli.StringFlag{Name: "pid-file", Usage: "write the init's host pid to this file"},
		&cli.BoolFlag{Name: "no-pivot", Usage: "do not use pivot_root (for a rootfs on a ramdisk)"},
		&cli.BoolFlag{Name: "no-new-keyring", Usage: "keep the caller's session keyring"},
		&cli.IntFlag{Name: "preserve-fds", Usage: "pass N more file descriptors to the container (stdio + $LISTEN_FDS + N in total)"},
	}
}

func createOptions(c *cli.Context) runtime.CreateOptions {
	return runtime.CreateOptions{
		ProcessIO: runtime.ProcessIO{
			ConsoleSocket: c.String("console-socket"),
			PidfdSocket:   c.String("pidfd-socket"),
			PidFile:       c.String("pid-file"),
			PreserveFDs:   c.Int("preserve-fds"),
		},
		ID:           c.Args().First(),
		Bundle:       c.String("bundle"),
		NoPivot:      c.Bool("no-pivot"),
		NoNewKeyring: c.Bool("no-new-keyring"),
	}
}

// commandFailed words a failed create or run as runc does, "NAME COMMAND
// failed: ...", NAME being the name the binary was called by: installed as
// runc, clawrun words it as runc, and tools that match runc's text work.
func commandFailed(c *cli.Context, err error) error {
	return fmt.Errorf("%s %s failed: %w", filepath.Base(os.Args[0]), c.Command.Name, err)
}

var createCommand = &cli.Command{
	Name:      "create",
	Usage:     "create a container whose process waits for `start`",
	ArgsUsage: "<container-id>",
	Description: `Creates a container from the bundle (config.json + root filesystem): its
namespaces, cgroups and root filesystem are set up and its init waits until
"clawrun start <container-id>" runs the process of config.json.

Example:
    clawrun create --bundle /containers/agent --pid-file /run/agent.pid agent1
    clawrun start agent1`,
	Flags: containerFlags(),
	Action: func(c *cli.Context) error {
		if err := exactArgs(c, 1); err != nil {
			return err
		}
		rt, err := newRuntime(c)
		if err != nil {
			return err
		}
		if err := rt.Create(createOptions(c)); err != nil {
			return commandFailed(c, err)
		}
		return nil
	},
}
