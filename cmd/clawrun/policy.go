package main

import (
	"fmt"
	"os"

	"github.com/urfave/cli/v2"

	"github.com/clawrun/clawrun/egress/rules"
	"github.com/clawrun/clawrun/runtime/policy"
)

var policyCommand = &cli.Command{
	Name:  "policy",
	Usage: "check policies and change a running container's network policy",
	Subcommands: []*cli.Command{
		{
			Name:      "check",
			Usage:     "validate policy files (exit status 1 on any error)",
			ArgsUsage: "FILE...",
			Description: `Parses and validates each file, printing FILE:LINE: FIELD: REASON for
every error and every warning (fields accepted but not enforced).

Example:
    clawrun policy check contrib/policies/*.yaml`,
			Action: policyCheck,
		},
		{
			Name:      "apply",
			Usage:     "replace the network policies of a running container (hot reload)",
			ArgsUsage: "<container-id> FILE",
			Description: `Loads the network_policies of FILE as the container's new egress allow list,
without restarting it: the filter switches to the new generation at once
and closes open connections it no longer allows. The floor policy still
bounds it. An invalid file is rejected and the running policy stays. The
command waits for the filter to load the new generation and fails, saying
why, when it does not (a filter older than this clawrun that cannot read
it whole, a filter that is down): the running policy then stays too.

Example:
    clawrun policy apply agent1 agent-more-hosts.yaml`,
			Action: func(c *cli.Context) error {
				if err := exactArgs(c, 2); err != nil {
					return err
				}
				rt, err := newRuntime(c)
				if err != nil {
					return err
				}
				path := c.Args().Get(1)
				data, err := os.ReadFile(path)
				if err != nil {
					return err
				}
				gen, err := rt.ApplyNetworkPolicy(c.Args().First(), path, data)
				if err != nil {
					return err
				}
				fmt.Printf("%s: network policy generation %d applied\n", c.Args().First(), gen)
				return nil
			},
		},
	},
}

func policyCheck(c *cli.Context) error {
	if c.NArg() == 0 {
		_ = cli.ShowSubcommandHelp(c)
		return fmt.Errorf("policy check: no file given")
	}
	opts := policyOptions(c)
	creds, err := opts.Credentials()
	if err != nil {
		return err
	}
	failed := 0
	for _, path := range c.Args().Slice() {
		data, err := os.ReadFile(path)
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			failed++
			continue
		}
		p, err := policy.Parse(path, data)
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			failed++
			continue
		}
		plan, err := policy.Compile(nil, p, policy.CompileOptions{Workdir: "/sandbox"})
		if err != nil {
			fmt.Fprintf(os.Stderr, "%s: %v\n", path, err)
			failed++
			continue
		}
		warnings := p.Warnings
		// What the egress filter cannot enforce is denied: say why.
		_, egressWarnings := rules.FromPlan(plan.Network, 1)
		warnings = append(warnings, egressWarnings...)
		for _, w := range warnings {
			fmt.Fprintf(os.Stderr, "warning: %s\n", w.String())
		}
		for _, ep := range policy.InspectedEndpoints(p.NetworkPolicies, creds) {
			fmt.Printf("%s: %s: inspected: every request is checked (TLS to it is terminated with the container's CA)\n", path, ep)
		}
		fmt.Printf("%s: ok\n", path)
	}
	if failed > 0 {
		return cli.Exit("", 1)
	}
	return nil
}
