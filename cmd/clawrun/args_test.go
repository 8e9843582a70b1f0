package main

import (
	"slices"
	"strings"
	"testing"
)

func TestFlagsFirst(t *testing.T) {
	app := newApp()
	for in, want := range map[string]string{
		// runc's order and the flags-after-arguments order parse alike.
		"update --pids-limit 50 ID":             "update --pids-limit 50 ID",
		"update ID --pids-limit 50":             "update --pids-limit 50 ID",
		"update ID --pids-limit=50 --memory 1G": "update --pids-limit=50 --memory 1G ID",
		"--root /r --debug kill ID KILL -a":     "--root /r --debug kill -a ID KILL",
		"--root=/r delete ID -f":                "--root=/r delete -f ID",
		"state ID --help":                       "state --help ID",
		"update ID --memory -1":                 "update --memory -1 ID",
		"run ID --bundle /b -d":                 "run --bundle /b -d ID",
		"kill ID -- -9":                         "kill -- ID -9",
		"kill ID --no-such-flag":                "kill ID --no-such-flag",
		"update ID --pids-limit":                "update --pids-limit ID",
		// exec and ps pass what follows the id to the container or ps(1).
		"exec ID sh -c --help":                          "exec ID sh -c --help",
		"ps ID -ef":                                     "ps ID -ef",
		"policy check a.yaml --json":                    "policy check a.yaml --json",
		"update ID --memory --generate-bash-completion": "update --memory ID --generate-bash-completion",
		"--log /l":                                      "--log /l",
		"":                                              "",
	} {
		args := append([]string{"clawrun"}, strings.Fields(in)...)
		got := strings.Join(flagsFirst(app, args)[1:], " ")
		if got != want {
			t.Errorf("flagsFirst(%q) = %q, want %q", in, got, want)
		}
		if !slices.Equal(flagsFirst(app, args), flagsFirst(app, flagsFirst(app, args))) {
			t.Errorf("flagsFirst(%q) is not stable", in)
		}
	}
}
