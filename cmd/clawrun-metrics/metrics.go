package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/signal"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/common/expfmt"
	"github.com/urfave/cli/v2"
	"golang.org/x/sys/unix"

	"github.com/clawrun/clawrun/runtime/metrics"
)

const metricsDescription = `Reports, in Prometheus' text format, every container under the runtime's
roots: how many are confined and what is enforced on them (Landlock status
and ABI, seccomp profile, egress filter), how long confined containers took
to start, and for each egress filter its decisions by protocol, decision and
reason, its DNS answers and denials, the bytes it carried up and down, its
open connections, its state, restarts and policy generation. Series are
labelled by container id and, under Kubernetes, pod name and namespace (from
the CRI's annotations); never by host name. The README's "Metrics" lists the
names.

The numbers are the filters' own: each filter's worker counts on its
decision path and writes its counts to the container's state dir every
second (and when it exits), and a restarted worker carries them on. Every
report reads the state dirs afresh.

The roots are --root when it is given, else every directory that the
--roots patterns name (by default clawrun's own root, containerd's runc
shim roots /run/containerd/clawrun/* and /run/containerd/runc/*, and Docker's
/run/docker/runtime-runc/*).

Without --textfile the metrics are printed. With --textfile DIR they go to
DIR/clawrun.prom, replaced atomically (for node_exporter's textfile
collector), once, or every --every while it runs.

Example:
    clawrun metrics serve --listen :9775
    clawrun metrics --textfile /var/lib/node_exporter/textfile --every 15s`

var metricsRootsFlag = &cli.StringSliceFlag{
	Name:  "roots",
	Value: cli.NewStringSlice(metrics.DefaultRoots...),
	Usage: "patterns (globs) of the runtime roots to report, when --root is not given",
}

var metricsCommand = &cli.Command{
	Name:        "metrics",
	Usage:       "report the node's containers and egress filters as Prometheus metrics",
	Description: metricsDescription,
	Flags: []cli.Flag{
		metricsRootsFlag,
		&cli.StringFlag{Name: "textfile", Usage: "write DIR/clawrun.prom (atomically) instead of printing"},
		&cli.DurationFlag{Name: "every", Usage: "with --textfile: rewrite the file at this interval until stopped"},
	},
	Action: func(c *cli.Context) error {
		if err := exactArgs(c, 0); err != nil {
			return err
		}
		reg := metrics.NewRegistry(metrics.ObserveRoots(metricsRoots(c)))
		dir := c.String("textfile")
		every := c.Duration("every")
		switch {
		case every < 0:
			return fmt.Errorf("invalid --every %s: want a positive interval", every)
		case dir == "" && every > 0:
			return errors.New("--every needs --textfile")
		case dir == "":
			return printMetrics(reg)
		}
		if err := writeTextfile(dir, reg); err != nil || every == 0 {
			return err
		}
		ctx, stop := signal.NotifyContext(context.Background(), unix.SIGINT, unix.SIGTERM)
		defer stop()
		tick := time.NewTicker(every)
		defer tick.Stop()
		for {
			select {
			case <-ctx.Done():
				return nil
			case <-tick.C:
				if err := writeTextfile(dir, reg); err != nil {
					fmt.Fprintln(os.Stderr, "clawrun metrics:", err)
				}
			}
		}
	},
	Subcommands: []*cli.Command{{
		Name:  "serve",
		Usage: "serve the metrics over HTTP at /metrics",
		Description: `Serves GET /metrics on --listen until SIGINT or SIGTERM; every scrape
reads the containers' state afresh. Meant for a DaemonSet (one per node)
or a systemd service.

Example:
    clawrun metrics serve --listen :9775`,
		Flags: []cli.Flag{
			metricsRootsFlag,
			&cli.StringFlag{Name: "listen", Value: "127.0.0.1:9775", Usage: "address to serve /metrics on (host:port)"},
		},
		Action: func(c *cli.Context) error {
			if err := exactArgs(c, 0); err != nil {
				return err
			}
			reg := metrics.NewRegistry(metrics.ObserveRoots(metricsRoots(c)))
			ln, err := net.Listen("tcp", c.String("listen"))
			if err != nil {
				return fmt.Errorf("--listen: %w", err)
			}
			// The address actually bound (port 0 picks one).
			fmt.Fprintf(os.Stderr, "clawrun metrics: serving http://%s/metrics\n", ln.Addr())
			srv := &http.Server{Handler: metrics.Handler(reg), ReadHeaderTimeout: 10 * time.Second}
			ctx, stop := signal.NotifyContext(context.Background(), unix.SIGINT, unix.SIGTERM)
			defer stop()
			go func() {
				<-ctx.Done()
				shutdown, cancel := context.WithTimeout(context.Background(), 5*time.Second)
				defer cancel()
				_ = srv.Shutdown(shutdown)
			}()
			if err := srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
				return err
			}
			return nil
		},
	}},
}

// exactArgs refuses positional arguments beyond n, as clawrun's commands do.
func exactArgs(c *cli.Context, n int) error {
	if c.NArg() != n {
		_ = cli.ShowSubcommandHelp(c)
		return fmt.Errorf("clawrun metrics: %q requires exactly %d argument(s)", c.Command.Name, n)
	}
	return nil
}

// writeTextfile writes the metrics to dir/clawrun.prom.
func writeTextfile(dir string, reg *prometheus.Registry) error {
	if err := metrics.WriteTextfile(dir, reg); err != nil {
		return fmt.Errorf("--textfile %s: %w", dir, err)
	}
	return nil
}

// metricsRoots are --root when it is given, else the --roots patterns.
func metricsRoots(c *cli.Context) []string {
	for _, ctx := range c.Lineage() {
		if ctx.IsSet("root") {
			return []string{ctx.String("root")}
		}
	}
	return c.StringSlice("roots")
}

// printMetrics writes the metrics to stdout in the text format.
func printMetrics(reg prometheus.Gatherer) error {
	mfs, err := reg.Gather()
	if err != nil {
		return err
	}
	enc := expfmt.NewEncoder(os.Stdout, expfmt.NewFormat(expfmt.TypeTextPlain))
	for _, mf := range mfs {
		if err := enc.Encode(mf); err != nil {
			return err
		}
	}
	return nil
}
