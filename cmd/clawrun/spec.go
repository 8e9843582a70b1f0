package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/opencontainers/runc/libcontainer/specconv"
	"github.com/urfave/cli/v2"

	"github.com/clawrun/clawrun/runtime"
)

var specCommand = &cli.Command{
	Name:  "spec",
	Usage: "write a starter config.json for a bundle",
	Description: `Writes config.json into the bundle directory (default: the current one),
running "sh" in ./rootfs. It never overwrites an existing file.

Example:
    mkdir -p agent/rootfs && cd agent && clawrun spec`,
	Flags: []cli.Flag{
		&cli.StringFlag{Name: "bundle", Aliases: []string{"b"}, Usage: "bundle directory"},
		&cli.BoolFlag{Name: "rootless", Usage: "write a config for a rootless container"},
	},
	Action: func(c *cli.Context) error {
		if err := exactArgs(c, 0); err != nil {
			return err
		}
		spec := specconv.Example()
		if c.Bool("rootless") {
			specconv.ToRootless(spec)
		}
		path := filepath.Join(c.String("bundle"), runtime.SpecConfig)
		if _, err := os.Stat(path); err == nil {
			return fmt.Errorf("file %s exists: remove it first", path)
		} else if !errors.Is(err, os.ErrNotExist) {
			return err
		}
		data, err := json.MarshalIndent(spec, "", "\t")
		if err != nil {
			return err
		}
		return os.WriteFile(path, data, 0o666)
	},
}
