package main

import (
	"github.com/urfave/cli/v2"

	"github.com/clawrun/clawrun/runtime"
)

// checkpoint and restore are runc commands clawrun does not implement
// (CRIU). They exist only to say so, whatever the arguments: even
// "checkpoint --help" fails, because callers such as Podman take a
// successful "checkpoint --help" to mean that the runtime can checkpoint.
var (
	checkpointCommand = unsupportedCommand("checkpoint")
	restoreCommand    = unsupportedCommand("restore")
)

func unsupportedCommand(name string) *cli.Command {
	return &cli.Command{
		Name:            name,
		Usage:           "not supported: " + runtime.ErrCheckpointUnsupported.Error(),
		Hidden:          true,
		SkipFlagParsing: true,
		HideHelp:        true,
		Action: func(*cli.Context) error {
			return runtime.ErrCheckpointUnsupported
		},
	}
}
