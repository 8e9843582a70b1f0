package main

import (
	"encoding/json"
	"fmt"
	"os"

	"github.com/urfave/cli/v2"

	"github.com/clawrun/clawrun/runtime"
)

var explainCommand = &cli.Command{
	Name:      "explain",
	Usage:     "say in plain words what a policy lets an agent do",
	ArgsUsage: "[FILE|NAME]",
	Description: `Explains what an agent under the policy can read, write, execute and reach,
what is denied by default, which system calls the seccomp profile denies, who
the agent runs as, and the policy's warnings. The floor the runtime would put
under it (the global --policy flag, else the config file's floor_policy) is
taken into account, and what it takes away is listed. It says what the runtime
would enforce: the policies compiled as for a container, and for the network
what the egress filter's rules built from them allow.

FILE (an argument with a "/" or ending in .yaml, .yml or .json) is read as a
policy file; NAME is a built-in preset or NAME.yaml in the policy directory,
as the run.clawrun.policy annotation names it. Without an argument: the
config's default_policy, what a container without a policy annotation gets.

Examples:
    clawrun policy explain agent-default
    clawrun policy explain contrib/policies/clinical-genomics.yaml
    clawrun --policy agent-default policy explain ./team.yaml
    clawrun policy explain --json agent-coding`,
	Flags: []cli.Flag{
		&cli.BoolFlag{Name: "json", Usage: "print the explanation as JSON"},
	},
	Action: policyExplain,
}

func init() {
	policyCommand.Subcommands = append(policyCommand.Subcommands, explainCommand)
}

func policyExplain(c *cli.Context) error {
	if err := argRange(c, 0, 1); err != nil {
		return err
	}
	opts := policyOptions(c)
	e, err := opts.Explain(c.Args().First())
	if err != nil {
		return err
	}
	if c.Bool("json") {
		enc := json.NewEncoder(os.Stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(e)
	}
	fmt.Print(e.String())
	return nil
}

// policyOptions reads the global flags the way newRuntime reads them,
// without a Runtime: explaining and checking need no state directory.
func policyOptions(c *cli.Context) runtime.PolicyOptions {
	return runtime.PolicyOptions{
		Floor:          c.String("policy"),
		ConfigFile:     c.String("config"),
		ConfigExplicit: c.IsSet("config"),
	}
}
