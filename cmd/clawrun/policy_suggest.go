package main

import (
	"fmt"
	"os"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/clawrun/clawrun/egress/decisionlog"
	"github.com/clawrun/clawrun/runtime"
	"github.com/clawrun/clawrun/runtime/policy"
	"github.com/clawrun/clawrun/runtime/policy/suggest"
)

var suggestCommand = &cli.Command{
	Name:      "suggest",
	Usage:     "write the enforcing policy that allows what a container was seen doing",
	ArgsUsage: "<container-id> | --from-log FILE",
	Description: fmt.Sprintf(`Learns a policy from a run: run the agent under a policy whose network
endpoints say enforcement: audit, let it do its work, then suggest reads the
egress decision log (as clawrun audit finds it, or FILE with --from-log) and
writes a policy that allows what the run did, and enforces it.

The policy starts from the container's own, with the network policies in
force (the last policy apply's, if any; --base FILE instead, or with
--from-log; without either, a policy of network_policies only): its
filesystem_policy (with what Landlock refused, below), process and Landlock
sections are kept, and so are the network endpoints that enforce. The endpoints with
enforcement: audit are what the run was to learn: each is replaced by what
was seen through it, in a network policy of the same key (KEY-2 when KEY
keeps endpoints that enforce):
  - the exact names and ports connected to (a wildcard host becomes the
    names seen), with protocol: tcp where the filter saw raw TCP;
  - binaries, when every connection through the policy names its
    executable (the log names them when some policy lists binaries);
  - for plain HTTP and inspected HTTPS, the requests as rules[].allow, one
    per method and path; when more than %d paths of one method lie in one
    directory (other than /), they become one rule DIR/* (any one segment);
    the endpoint keeps the deny_rules it was learned under;
  - on a json-rpc or mcp endpoint, the calls (method, tool) seen.
What was allowed by no endpoint of the policy (an earlier generation's) is
learned into the network policy "learned".

The file accesses Landlock refused the container (as clawrun audit shows
them; the host's audit must be on: auditctl -e 1) are added to its
filesystem_policy, each as narrow as sensible: a refused write makes the
directory it was in read_write, a refused read or execute makes it
read_only (the path itself when it names a directory, lies under /dev,
/proc or /sys, or is directly under /); / itself is never suggested, and
neither is what the floor denies. A write is never learned inside a
directory the policy lists read_only (other than /), nor on a directory
that holds one: the policy made it read-only on purpose. A policy without
filesystem_policy gets none (adding one would confine every other path).
The grants are listed in the header as learned from Landlock denials.

Nothing the egress filter denied is suggested: names, ports and requests the policy
refused are listed as comments, and so are the denials no policy can lift
(private addresses, IP literals, TLS without SNI, encrypted ClientHellos),
requests a deny rule matched, names resolved and never connected to, and
what the floor policy denies: the suggestion is never wider than the floor
(the container's, or with --from-log the one --policy or the config names).
Check the result with clawrun policy check and review it before use.

Examples:
    clawrun policy suggest agent1 > agent.yaml
    clawrun policy suggest -o agent.yaml --base learning.yaml agent1
    clawrun policy suggest --from-log /var/log/clawrun/agent1.egress.jsonl`, suggest.CollapseAbove),
	Flags: []cli.Flag{
		&cli.StringFlag{Name: "from-log", Usage: "read this decision log instead of a container's"},
		&cli.StringFlag{Name: "base", Usage: "the policy file to start from, instead of the container's policy"},
		&cli.StringFlag{Name: "output", Aliases: []string{"o"}, Usage: "write the policy to this file instead of stdout"},
	},
	Action: policySuggest,
}

func init() {
	policyCommand.Subcommands = append(policyCommand.Subcommands, suggestCommand)
}

func policySuggest(c *cli.Context) error {
	fromLog := c.String("from-log")
	if err := exactArgs(c, map[bool]int{true: 0, false: 1}[fromLog != ""]); err != nil {
		return err
	}
	in, source, err := learningInput(c, fromLog)
	if err != nil {
		return err
	}
	if base := c.String("base"); base != "" {
		data, err := os.ReadFile(base)
		if err != nil {
			return err
		}
		if in.Current, err = policy.Parse(base, data); err != nil {
			return err
		}
	}
	err = decisionlog.ReadLog(source.log, false, nil, func(r decisionlog.Record) { in.Records = append(in.Records, r) })
	if err != nil {
		return fmt.Errorf("decision log: %w", err)
	}
	s, err := suggest.Suggest(in)
	if err != nil {
		return err
	}
	text, err := s.YAML(suggestHeader(source, in)...)
	if err != nil {
		return err
	}
	if out := c.String("output"); out != "" {
		return os.WriteFile(out, text, 0o644)
	}
	_, err = os.Stdout.Write(text)
	return err
}

// learnSource is where a suggestion's records come from.
type learnSource struct {
	log       string
	container string // "" with --from-log
}

// learningInput is what a container (or a log file) gives to learn from,
// without the records.
func learningInput(c *cli.Context, fromLog string) (suggest.Input, learnSource, error) {
	if fromLog != "" {
		opts := policyOptions(c)
		floor, err := opts.FloorNetwork()
		return suggest.Input{Floor: floor}, learnSource{log: fromLog}, err
	}
	rt, err := newRuntime(c)
	if err != nil {
		return suggest.Input{}, learnSource{}, err
	}
	id := c.Args().First()
	l, err := rt.LearningFor(id)
	if err != nil {
		return suggest.Input{}, learnSource{}, err
	}
	if l.InForceUnknown != nil && c.String("base") == "" {
		return suggest.Input{}, learnSource{}, fmt.Errorf("container %q: %w", id, l.InForceUnknown)
	}
	if f := rt.EgressLogFailure(l.FilteredBy); f != "" {
		fmt.Fprintf(os.Stderr, "clawrun: the decision log is incomplete: the egress filter cannot write it since %s\n", f)
	}
	denials, err := fileDenials(rt, id)
	if err != nil {
		return suggest.Input{}, learnSource{}, err
	}
	in := suggest.Input{Current: l.Current, Floor: l.Floor, FloorFiles: l.FloorFiles, FileDenials: denials}
	return in, learnSource{log: l.LogFile, container: id}, nil
}

// fileDenials are container id's Landlock denials, as clawrun audit shows
// them; when the kernel does not report them, suggest says so in one line
// and learns the network part only.
func fileDenials(rt *runtime.Runtime, id string) ([]suggest.FileDenial, error) {
	files, err := rt.FileDenials(id)
	if err != nil {
		return nil, err
	}
	if files.NotReported != "" {
		fmt.Fprintf(os.Stderr, "clawrun: file denials: %s: nothing is learned for filesystem_policy\n", files.NotReported)
	}
	if n := files.Suppressed + files.Lost + files.Unattributed; n > 0 {
		fmt.Fprintf(os.Stderr, "clawrun: file denials: %d audit records were dropped or cannot be attributed (see clawrun audit): filesystem_policy may lack some\n", n)
	}
	out := make([]suggest.FileDenial, 0, len(files.Denials))
	for _, f := range files.Denials {
		out = append(out, suggest.FileDenial{Path: f.Path, Access: f.Access})
	}
	return out, nil
}

// suggestHeader are the first comment lines of a suggestion.
func suggestHeader(source learnSource, in suggest.Input) []string {
	from := "the decision log " + source.log
	if source.container != "" {
		from = fmt.Sprintf("container %s's decision log (%s)", source.container, source.log)
	}
	lines := []string{fmt.Sprintf("Suggested by clawrun policy suggest from %d decisions of %s", len(in.Records), from)}
	if n := len(in.Records); n > 0 {
		lines = append(lines, fmt.Sprintf("logged from %s to %s.", in.Records[0].Time.Format(time.RFC3339), in.Records[n-1].Time.Format(time.RFC3339)))
	}
	if source.container != "" {
		lines = append(lines, fmt.Sprintf("Also from the container's %d Landlock file denials the kernel's audit reported.", len(in.FileDenials)))
	}
	if in.Current != nil {
		lines = append(lines, "Starting from the policy "+in.Current.Name+"; it allows what the run did, no more: review it before use.")
	}
	return lines
}
