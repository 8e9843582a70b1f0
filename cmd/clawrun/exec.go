package main

import (
	"fmt"
	"os"

	"github.com/urfave/cli/v2"

	"github.com/clawrun/clawrun/runtime"
)

var execCommand = &cli.Command{
	Name:      "exec",
	Usage:     "run a new process inside a running container",
	ArgsUsage: "<container-id> <command> [args...]  |  -p process.json <container-id>",
	Description: `Starts a process in the container's namespaces and cgroups. Without -p the
process is the one of the container's config.json with the command and the
flags given here. Exits with the process's exit status (255 if it could not
be started).

Example:
    clawrun exec agent1 ps
    clawrun exec -t -u 1000:1000 --cwd /sandbox agent1 sh
    clawrun exec --detach --pid-file /run/p.pid --process proc.json agent1`,
	Flags: []cli.Flag{
		&cli.StringFlag{Name: "console-socket", Usage: "AF_UNIX socket that receives the master end of the process's pty"},
		&cli.StringFlag{Name: "pidfd-socket", Usage: "AF_UNIX socket that receives a pidfd of the process"},
		&cli.StringFlag{Name: "cwd", Usage: "working directory in the container"},
		&cli.StringSliceFlag{Name: "env", Aliases: []string{"e"}, Usage: "set an environment variable (NAME=value)"},
		&cli.BoolFlag{Name: "tty", Aliases: []string{"t"}, Usage: "allocate a pseudo-terminal"},
		&cli.StringFlag{Name: "user", Aliases: []string{"u"}, Usage: "run as UID[:GID]"},
		&cli.Int64SliceFlag{Name: "additional-gids", Aliases: []string{"g"}, Usage: "additional group ids"},
		&cli.StringFlag{Name: "process", Aliases: []string{"p"}, Usage: "path to a process.json (overrides the other process flags)"},
		&cli.BoolFlag{Name: "detach", Aliases: []string{"d"}, Usage: "return as soon as the process runs"},
		&cli.StringFlag{Name: "pid-file", Usage: "write the process's host pid to this file"},
		&cli.StringFlag{Name: "process-label", Usage: "SELinux label of the process"},
		&cli.StringFlag{Name: "apparmor", Usage: "AppArmor profile of the process"},
		&cli.BoolFlag{Name: "no-new-privs", Usage: "set no_new_privs for the process"},
		&cli.StringSliceFlag{Name: "cap", Aliases: []string{"c"}, Usage: "add a capability to the process's sets"},
		&cli.IntFlag{Name: "preserve-fds", Usage: "pass N more file descriptors to the process"},
		&cli.StringSliceFlag{Name: "cgroup", Usage: "run in a sub-cgroup: [<controller>[,<controller>]:]<path>"},
		&cli.BoolFlag{Name: "ignore-paused", Usage: "allow exec in a paused container"},
	},
	Action: func(c *cli.Context) error {
		if err := argRange(c, 1, -1); err != nil {
			return err
		}
		rt, err := newRuntime(c)
		if err != nil {
			fatalWithCode(err, 255)
		}
		opts := runtime.ExecOptions{
			ProcessIO: runtime.ProcessIO{
				ConsoleSocket: c.String("console-socket"),
				PidfdSocket:   c.String("pidfd-socket"),
				PidFile:       c.String("pid-file"),
				PreserveFDs:   c.Int("preserve-fds"),
				Detach:        c.Bool("detach"),
			},
			ProcessFile:    c.String("process"),
			Args:           c.Args().Tail(),
			Env:            c.StringSlice("env"),
			Cwd:            c.String("cwd"),
			User:           c.String("user"),
			AdditionalGIDs: c.Int64Slice("additional-gids"),
			Caps:           c.StringSlice("cap"),
			Terminal:       c.Bool("tty"),
			AppArmor:       c.String("apparmor"),
			ProcessLabel:   c.String("process-label"),
			Cgroups:        c.StringSlice("cgroup"),
			IgnorePaused:   c.Bool("ignore-paused"),
		}
		if c.IsSet("no-new-privs") {
			v := c.Bool("no-new-privs")
			opts.NoNewPrivs = &v
		}
		status, err := rt.Exec(c.Args().First(), opts)
		if err != nil {
			fatalWithCode(fmt.Errorf("exec failed: %w", err), 255)
		}
		os.Exit(status)
		return nil
	},
}
