package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"time"

	"github.com/containerd/errdefs"
	"github.com/urfave/cli/v2"
	"golang.org/x/sys/unix"

	"github.com/clawrun/clawrun/egress/decisionlog"
	"github.com/clawrun/clawrun/runtime"
)

var auditCommand = &cli.Command{
	Name:      "audit",
	Usage:     "show a container's egress decisions (DNS queries and connections) and file denials",
	ArgsUsage: "<container-id>",
	Description: `Prints the egress filter's decision log of a container whose policy has
network_policies: one line per DNS query and TCP connection, with the
decision, the reason (rule name, or not_allowed / private_ip / no_sni /
ip_literal / ech / port, or one of the filter's limits: conn_limit /
handshake_limit / handshake_timeout / handshake_too_large) and the bytes
each way. The log is the file <egress.log_dir>/<id>.egress.jsonl (default
/var/log/clawrun), size-capped and rotated; its lines are the filter's
records, or OCSF events with egress.log_format: ocsf (audit reads both). So that a container cannot
rotate the evidence away, the repeats of a denial within 10 s are counted
on one summary line ("N more like it, aggregated"), and past 100 lines a
second (bursts of 1000) decisions are only counted ("not logged: the
log's rate limit"); audit says how many in the end. The filter's last
failure (a worker that died, a generation it refused) is shown first. For a container of a pod, the log is its pod sandbox's (the
pod's containers share one filter); likewise for a container that joined
another's network namespace.

Beside the decisions, in time order, are the container's Landlock denials
(a path, the access refused, the process) that the kernel's audit
reported: from /dev/kmsg, or auditd's log when an audit daemon runs. The
kernel reports them only with Landlock ABI 7 (Linux 6.15) and the host's
audit on (auditctl -e 1); audit says so when it does not. A container
without network_policies shows its file denials only. With --follow, the
file denials so far are printed first; new ones are not followed.

Example:
    clawrun audit --denied agent1
    clawrun audit --follow --json agent1`,
	Flags: []cli.Flag{
		&cli.BoolFlag{Name: "follow", Aliases: []string{"f"}, Usage: "keep printing new decisions"},
		&cli.BoolFlag{Name: "denied", Usage: "only denied (and audit-mode) decisions"},
		&cli.BoolFlag{Name: "json", Usage: "print the JSON lines as they are"},
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
		files, err := rt.FileDenials(id)
		if err != nil {
			return err
		}
		out := newAuditPrinter(os.Stdout, c.Bool("json"), files.Denials)
		if files.NotReported != "" {
			fmt.Fprintf(os.Stderr, "clawrun: file denials: %s\n", files.NotReported)
		}
		if files.Suppressed+files.Lost > 0 {
			fmt.Fprintf(os.Stderr, "clawrun: file denials: the kernel dropped %d audit records of the host since the container was created (%d past its log's rate limit, %d past its backlog; an audit daemon, auditd, keeps them)\n", files.Suppressed+files.Lost, files.Suppressed, files.Lost)
		}
		if files.Unattributed > 0 {
			fmt.Fprintf(os.Stderr, "clawrun: file denials: %d denials since the container was created cannot be attributed to a container (the record naming their process was dropped): some may be this container's\n", files.Unattributed)
		}
		path, filteredBy, err := rt.AuditLog(id)
		if errors.Is(err, errdefs.ErrFailedPrecondition) {
			// No egress filter: the file denials are all there is.
			fmt.Fprintf(os.Stderr, "clawrun: %v: only its file denials are shown\n", err)
			out.flushFiles(time.Time{})
			return nil
		}
		if err != nil {
			return err
		}
		if filteredBy != id {
			fmt.Fprintf(os.Stderr, "clawrun: %s shares the egress filter of %s (its pod's sandbox, or the container whose network namespace it joined): these are the decisions of every container in that namespace\n", id, filteredBy)
		}
		if f := rt.EgressFailure(filteredBy); f != "" {
			fmt.Fprintf(os.Stderr, "clawrun: the egress filter's last failure: %s\n", f)
		}
		if f := rt.EgressLogFailure(filteredBy); f != "" {
			fmt.Fprintf(os.Stderr, "clawrun: this log is incomplete: the egress filter cannot write it since %s\n", f)
		}
		ctx, stop := signal.NotifyContext(context.Background(), unix.SIGINT, unix.SIGTERM)
		defer stop()
		if c.Bool("follow") {
			// The file denials so far; then the decisions as they come.
			out.flushFiles(time.Time{})
		}
		var aggregated, dropped int64
		err = runtime.Audit(ctx, path, c.Bool("follow"), c.Bool("denied"), func(r decisionlog.Record) {
			aggregated += r.Aggregated
			dropped += r.Dropped
			out.decision(r)
		})
		out.flushFiles(time.Time{})
		if aggregated+dropped > 0 {
			fmt.Fprintf(os.Stderr, "clawrun: not every decision has a line of its own: %d aggregated (repeated denials, counted on summary lines), %d dropped (past the log's rate limit, counted)\n", aggregated, dropped)
		}
		return err
	},
}

// auditPrinter prints egress decisions and file denials in time order.
type auditPrinter struct {
	w     io.Writer
	json  *json.Encoder
	files []runtime.FileDenial
}

func newAuditPrinter(w io.Writer, asJSON bool, files []runtime.FileDenial) *auditPrinter {
	p := &auditPrinter{w: w, files: files}
	if asJSON {
		p.json = json.NewEncoder(w)
	}
	return p
}

func (p *auditPrinter) decision(r decisionlog.Record) {
	p.flushFiles(r.Time)
	if p.json != nil {
		_ = p.json.Encode(r)
		return
	}
	fmt.Fprintln(p.w, formatRecord(r))
}

// flushFiles prints the file denials before until (all for the zero time).
func (p *auditPrinter) flushFiles(until time.Time) {
	for len(p.files) > 0 && (until.IsZero() || p.files[0].Time.Before(until)) {
		f := p.files[0]
		p.files = p.files[1:]
		if p.json != nil {
			_ = p.json.Encode(fileDenialJSON{Decision: "deny", Protocol: "file", FileDenial: f})
			continue
		}
		fmt.Fprintln(p.w, formatFileDenial(f))
	}
}

// fileDenialJSON is a file denial as a JSON line beside the decisions.
type fileDenialJSON struct {
	Decision string `json:"decision"`
	Protocol string `json:"protocol"`
	runtime.FileDenial
}

// formatFileDenial is a file denial as a human reads it, in the columns
// of an egress decision.
func formatFileDenial(f runtime.FileDenial) string {
	target := f.Path
	if target == "" {
		target = f.Object
	}
	proc := strconv.Itoa(f.Pid)
	if f.Comm != "" {
		proc += " " + f.Comm
	}
	if f.Exe != "" {
		proc += " " + f.Exe
	}
	return fmt.Sprintf("%s %-5s %-5s %-40s %s (pid %s)", f.Time.Format("15:04:05.000"), "deny", "file", target, strings.Join(f.Access, ","), proc)
}

// formatRecord is one decision as a human reads it.
func formatRecord(r decisionlog.Record) string {
	if r.Dropped > 0 {
		return fmt.Sprintf("%s %d decisions since %s not logged: the log's rate limit (%s)",
			r.Time.Format("15:04:05.000"), r.Dropped, r.Since.Format("15:04:05.000"), r.Reason)
	}
	line := formatDecision(r)
	if r.Aggregated > 0 {
		line += fmt.Sprintf(" (%d more like it since %s, aggregated)", r.Aggregated, r.Since.Format("15:04:05.000"))
	}
	return line
}

// formatDecision is the line of one decision.
func formatDecision(r decisionlog.Record) string {
	target := r.Host
	if target == "" {
		target = r.Destination
	}
	if r.Port != 0 && r.Protocol != "dns" {
		target = fmt.Sprintf("%s:%d", target, r.Port)
	}
	if r.QueryType != "" {
		target += " " + r.QueryType
	}
	if r.Method != "" {
		target += " " + r.Method + " " + r.Path
	}
	if len(r.Calls) > 0 {
		target += " [" + strings.Join(r.Calls, ", ") + "]"
	}
	why := string(r.Reason)
	if r.Rule != "" {
		why += " (" + r.Rule + ")"
	}
	line := fmt.Sprintf("%s %-5s %-5s %-40s %s", r.Time.Format("15:04:05.000"), r.Decision, r.Protocol, target, why)
	if r.ResolvedIP != "" {
		line += " -> " + r.ResolvedIP
	}
	if r.Status != 0 {
		line += fmt.Sprintf(" (HTTP %d)", r.Status)
	}
	if r.Detail != "" {
		line += ": " + r.Detail
	}
	if r.BytesOut+r.BytesIn > 0 {
		line += fmt.Sprintf(" [%d B out, %d B in]", r.BytesOut, r.BytesIn)
	}
	return line
}
