package main

import (
	"encoding/json"
	"fmt"
	"os"
	"regexp"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/clawrun/clawrun/runtime"
)

func policyName(c *runtime.Confinement) string {
	if c == nil {
		return "-"
	}
	return strings.ReplaceAll(c.Policy, " ", "")
}

// enforced sums up a confined container in one column.
func enforced(c *runtime.Confinement) string {
	if c == nil {
		return "-"
	}
	ll := "landlock:" + string(c.Landlock.Status)
	if c.Landlock.ABI > 0 {
		ll += fmt.Sprintf("(abi%d)", c.Landlock.ABI)
	}
	return ll + ",seccomp:" + c.Seccomp.Profile + ",egress:" + egressWord(c.Egress)
}

var generation = regexp.MustCompile(`\(generation (\d+)\)`)

// egressWord is the filter's state in one word: off, filtering/genN (with
// "(pod)" when it is the pod sandbox's filter, "(shared)" when another
// container's), or why not (down, failed, pending).
func egressWord(s string) string {
	if !strings.HasPrefix(s, "filtering") {
		return strings.FieldsFunc(s+" ", func(r rune) bool { return r == ' ' || r == ',' || r == ':' })[0]
	}
	w := "filtering"
	if m := generation.FindStringSubmatch(s); m != nil {
		w += "/gen" + m[1]
	}
	switch {
	case strings.Contains(s, "the pod's filter"):
		w += "(pod)"
	case strings.Contains(s, "shared: the filter of"):
		w += "(shared)"
	}
	return w
}

var listCommand = &cli.Command{
	Name:  "list",
	Usage: "list the containers under --root",
	Description: `Example:
    clawrun list
    clawrun --root /run/containerd/runc/default list --format json`,
	Flags: []cli.Flag{
		&cli.StringFlag{Name: "format", Aliases: []string{"f"}, Value: "table", Usage: "table or json"},
		&cli.BoolFlag{Name: "quiet", Aliases: []string{"q"}, Usage: "print container ids only"},
	},
	Action: func(c *cli.Context) error {
		if err := exactArgs(c, 0); err != nil {
			return err
		}
		rt, err := newRuntime(c)
		if err != nil {
			return err
		}
		states, err := rt.List(!c.IsSet("root"))
		if err != nil {
			return err
		}
		if c.Bool("quiet") {
			for _, s := range states {
				fmt.Println(s.ID)
			}
			return nil
		}
		switch c.String("format") {
		case "table":
			// runc's columns; confined containers add what is enforced.
			confined := slices.ContainsFunc(states, func(s runtime.State) bool { return s.Clawrun != nil })
			w := tabwriter.NewWriter(os.Stdout, 12, 1, 3, ' ', 0)
			fmt.Fprint(w, "ID\tPID\tSTATUS\tBUNDLE\tCREATED\tOWNER")
			if confined {
				fmt.Fprint(w, "\tPOLICY\tENFORCED")
			}
			fmt.Fprintln(w)
			for _, s := range states {
				fmt.Fprintf(w, "%s\t%d\t%s\t%s\t%s\t%s",
					s.ID, s.InitProcessPid, s.Status, s.Bundle, s.Created.Format(time.RFC3339Nano), s.Owner)
				if confined {
					fmt.Fprintf(w, "\t%s\t%s", policyName(s.Clawrun), enforced(s.Clawrun))
				}
				fmt.Fprintln(w)
			}
			return w.Flush()
		case "json":
			return json.NewEncoder(os.Stdout).Encode(states)
		default:
			return fmt.Errorf("invalid --format %q (want table or json)", c.String("format"))
		}
	},
}
