package main

import (
	"slices"
	"strings"

	"github.com/urfave/cli/v2"
)

// runc's command line (urfave/cli v1) takes a command's flags after its
// arguments too ("runc update ID --pids-limit 50"), except for exec and
// ps, whose trailing arguments are a command line of their own. urfave/cli
// v2 stops parsing flags at the first argument, so clawrun moves the
// command's flags in front of its arguments before parsing.

// commandsWithOwnArgs keep what follows the container id untouched.
var commandsWithOwnArgs = []string{"exec", "ps"}

// flagsFirst returns args (os.Args) with the flags of the command that
// follow its arguments moved before them. What follows "--" stays an
// argument.
func flagsFirst(app *cli.App, args []string) []string {
	// Shell completion asks with its flag last, where it must stay.
	if n := len(args); n > 1 && args[n-1] == "--"+cli.BashCompletionFlag.Names()[0] {
		return append(flagsFirst(app, args[:n-1]), args[n-1])
	}
	i := 1
	for i < len(args) && isFlagLike(args[i]) {
		i += flagWidth(app.Flags, args[i])
	}
	if i >= len(args) {
		return args
	}
	cmd := app.Command(args[i])
	if cmd == nil || len(cmd.Subcommands) > 0 || cmd.SkipFlagParsing || slices.Contains(commandsWithOwnArgs, cmd.Name) {
		return args
	}
	out := slices.Clone(args[:i+1])
	var operands []string
	tail := args[i+1:]
	for j := 0; j < len(tail); j++ {
		a := tail[j]
		if a == "--" {
			operands = append([]string{"--"}, append(operands, tail[j+1:]...)...)
			break
		}
		w := 0
		if isFlagLike(a) && lookupFlag(cmd.Flags, a) != nil {
			w = min(flagWidth(cmd.Flags, a), len(tail)-j)
		}
		if w == 0 {
			operands = append(operands, a)
			continue
		}
		out = append(out, tail[j:j+w]...)
		j += w - 1
	}
	return append(out, operands...)
}

func isFlagLike(arg string) bool {
	return len(arg) > 1 && arg[0] == '-' && arg != "--"
}

// flagWidth is how many arguments a flag takes up: 2 for "--name value",
// 1 for a boolean flag, "--name=value" or a flag it does not know.
func flagWidth(flags []cli.Flag, arg string) int {
	f := lookupFlag(flags, arg)
	if f == nil || strings.Contains(arg, "=") {
		return 1
	}
	if _, isBool := f.(*cli.BoolFlag); isBool {
		return 1
	}
	return 2
}

// lookupFlag finds the flag arg ("-x", "--name", "--name=value") names
// among flags and the help flag every command has.
func lookupFlag(flags []cli.Flag, arg string) cli.Flag {
	name, _, _ := strings.Cut(strings.TrimLeft(arg, "-"), "=")
	for _, f := range append(slices.Clone(flags), cli.HelpFlag) {
		if slices.Contains(f.Names(), name) {
			return f
		}
	}
	return nil
}
