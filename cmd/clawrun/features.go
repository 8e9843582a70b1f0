package main

import (
	"encoding/json"

	"github.com/urfave/cli/v2"

	"github.com/clawrun/clawrun/runtime"
)

var featuresCommand = &cli.Command{
	Name:  "features",
	Usage: "print the features this runtime supports as JSON",
	Description: `Prints the runtime-spec features document (see the runtime-spec's
features.md), with clawrun's own annotations.

Example:
    clawrun features | jq .annotations`,
	Action: func(c *cli.Context) error {
		if err := exactArgs(c, 0); err != nil {
			return err
		}
		enc := json.NewEncoder(c.App.Writer)
		enc.SetIndent("", "    ")
		return enc.Encode(runtime.Features())
	},
}

// initCommand only documents the hidden entry point: `clawrun init` is
// taken over by libcontainer before main runs (see init.go).
var initCommand = &cli.Command{
	Name:   "init",
	Usage:  "initialize the namespaces and launch the process (do not call it outside of clawrun)",
	Hidden: true,
	Action: func(*cli.Context) error {
		panic("libcontainer.Init returned")
	},
}
