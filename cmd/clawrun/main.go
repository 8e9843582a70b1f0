// Command clawrun is an OCI runtime with the runc command line: anything
// that drives runc (containerd's shims, dockerd, Kubernetes through CRI,
// the OCI validation suite) drives clawrun the same way.
package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"

	// Registers the cgroup device-rule managers libcontainer needs.
	_ "github.com/opencontainers/cgroups/devices"
	"github.com/sirupsen/logrus"
	"github.com/urfave/cli/v2"

	"github.com/clawrun/clawrun/runtime"
)

const usage = `run containers that confine AI agents, as a runc-compatible OCI runtime

clawrun runs OCI bundles (a directory with config.json and a root filesystem)
exactly as runc does, through the same commands and flags, so that docker,
containerd, nerdctl and Kubernetes can use it as their runtime.

To start a container from a bundle:

    clawrun run [-b bundle] <container-id>

Not supported: checkpoint and restore (CRIU). "clawrun checkpoint" and
"clawrun restore" fail saying so, and "clawrun features" reports it.`

func main() {
	app := newApp()
	cli.VersionPrinter = func(c *cli.Context) { runtime.PrintVersion(c.App.Writer) }
	cli.ErrWriter = logWriter{cli.ErrWriter}
	if err := app.Run(flagsFirst(app, os.Args)); err != nil {
		fatal(err)
	}
}

func newApp() *cli.App {
	return &cli.App{
		Name:                 "clawrun",
		Usage:                "OCI runtime for confined AI agents",
		Description:          usage,
		Version:              runtime.Version,
		EnableBashCompletion: true,
		// "-e A=1,2" is one variable, not two.
		DisableSliceFlagSeparator: true,
		Flags: []cli.Flag{
			&cli.BoolFlag{Name: "debug", Usage: "enable debug logging"},
			&cli.StringFlag{Name: "log", Usage: "write clawrun's log to this file (default: stderr)"},
			&cli.StringFlag{Name: "log-format", Value: "text", Usage: "log format: 'text' or 'json' (containerd's shims read json)"},
			&cli.StringFlag{Name: "root", Value: runtime.DefaultRoot, Usage: "directory for container state (should be on tmpfs)"},
			&cli.BoolFlag{Name: "systemd-cgroup", Usage: "use the systemd cgroup driver; cgroupsPath must be \"slice:prefix:name\""},
			&cli.StringFlag{Name: "rootless", Value: "auto", Usage: "ignore cgroup permission errors: 'true', 'false' or 'auto'"},
			&cli.StringFlag{Name: "policy", Usage: "floor policy for every container: a preset or policy name, or an absolute file path (containers can narrow it, never widen it)"},
			&cli.StringFlag{Name: "config", Value: runtime.DefaultConfigFile, Usage: "clawrun's config file (floor and default policy, policy directory); a missing default file is fine"},
		},
		Commands: []*cli.Command{
			auditCommand,
			checkpointCommand,
			createCommand,
			deleteCommand,
			eventsCommand,
			execCommand,
			featuresCommand,
			initCommand,
			killCommand,
			listCommand,
			metricsCommand,
			pauseCommand,
			policyCommand,
			psCommand,
			restoreCommand,
			resumeCommand,
			runCommand,
			specCommand,
			startCommand,
			stateCommand,
			updateCommand,
		},
		Before: configureLogging,
		// Usage errors are logged like any other failure.
		OnUsageError: func(_ *cli.Context, err error, _ bool) error { return err },
	}
}

// configureLogging sends logrus to --log in --log-format. Every error is
// logged there, because containerd's shim reports the last JSON error line
// of the log as "OCI runtime create failed: <msg>".
func configureLogging(c *cli.Context) error {
	if c.Bool("debug") {
		logrus.SetLevel(logrus.DebugLevel)
	}
	switch f := c.String("log-format"); f {
	case "", "text":
	case "json":
		logrus.SetFormatter(new(logrus.JSONFormatter))
	default:
		return fmt.Errorf("invalid --log-format %q (want text or json)", f)
	}
	if path := c.String("log"); path != "" {
		f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_APPEND|os.O_SYNC, 0o644)
		if err != nil {
			return err
		}
		logrus.SetOutput(f)
	}
	return nil
}

// newRuntime builds the Runtime from the global flags.
func newRuntime(c *cli.Context) (*runtime.Runtime, error) {
	var rootless *bool
	switch v := strings.ToLower(c.String("rootless")); v {
	case "", "auto":
	default:
		b, err := strconv.ParseBool(v)
		if err != nil {
			return nil, fmt.Errorf("invalid --rootless %q (want true, false or auto)", v)
		}
		rootless = &b
	}
	rt, err := runtime.New(c.String("root"), c.Bool("systemd-cgroup"), rootless)
	if err != nil {
		return nil, err
	}
	rt.NotifySocket = os.Getenv("NOTIFY_SOCKET")
	rt.Policy = runtime.PolicyOptions{
		Floor:          c.String("policy"),
		ConfigFile:     c.String("config"),
		ConfigExplicit: c.IsSet("config"),
	}
	return rt, nil
}

// logWriter copies the CLI library's own error output into the log.
type logWriter struct{ w io.Writer }

func (l logWriter) Write(p []byte) (int, error) {
	logrus.Error(strings.TrimSpace(string(p)))
	if logsToStderr() {
		return len(p), nil
	}
	return l.w.Write(p)
}

func logsToStderr() bool {
	f, ok := logrus.StandardLogger().Out.(*os.File)
	return ok && f.Fd() == os.Stderr.Fd()
}

// fatal logs err and exits 1; fatalWithCode lets exec exit 255 as runc does.
func fatal(err error) { fatalWithCode(err, 1) }

func fatalWithCode(err error, code int) {
	var exit cli.ExitCoder
	if errors.As(err, &exit) && err.Error() == "" {
		os.Exit(exit.ExitCode())
	}
	logrus.Error(err)
	if !logsToStderr() {
		fmt.Fprintln(os.Stderr, err)
	}
	os.Exit(code)
}

// Argument checks with runc's wording.
func exactArgs(c *cli.Context, n int) error {
	if c.NArg() != n {
		_ = cli.ShowSubcommandHelp(c)
		return fmt.Errorf("%s: %q requires exactly %d argument(s)", os.Args[0], c.Command.Name, n)
	}
	return nil
}

func argRange(c *cli.Context, min, max int) error {
	if c.NArg() < min || (max >= 0 && c.NArg() > max) {
		_ = cli.ShowSubcommandHelp(c)
		if max < 0 {
			return fmt.Errorf("%s: %q requires a minimum of %d argument(s)", os.Args[0], c.Command.Name, min)
		}
		return fmt.Errorf("%s: %q requires %d to %d argument(s)", os.Args[0], c.Command.Name, min, max)
	}
	return nil
}
