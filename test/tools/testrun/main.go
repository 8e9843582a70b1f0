// Command testrun runs go test and keeps the list of skipped tests, so that
// `make test` can say at its end what did not run and why, and fail when a
// test was skipped for anything but a missing kernel feature (or another
// runtime under test, or an open bug the test tracks).
//
//	testrun run [-v] [-log FILE] -- go test ARGS...
//	    runs go test with -json added, prints its usual text (-v: verbose),
//	    appends each skipped test to FILE, lists the skips at the end and
//	    exits with go test's status, or 1 if a skip is not allowed.
//	testrun report FILE
//	    lists every skip in FILE by class; exits 1 if one is not allowed.
package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
)

func main() {
	if len(os.Args) < 2 {
		usage()
	}
	var err error
	switch os.Args[1] {
	case "run":
		err = runCmd(os.Args[2:])
	case "report":
		err = reportCmd(os.Args[2:])
	default:
		usage()
	}
	var code exitCode
	if errors.As(err, &code) {
		os.Exit(int(code))
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "testrun:", err)
		os.Exit(2)
	}
}

func usage() {
	fmt.Fprintln(os.Stderr, "usage: testrun run [-v] [-log FILE] -- go test ARGS... | testrun report FILE")
	os.Exit(2)
}

// exitCode ends testrun with that status and no message of its own.
type exitCode int

func (c exitCode) Error() string { return fmt.Sprintf("exit status %d", int(c)) }

func runCmd(args []string) error {
	fs := flag.NewFlagSet("run", flag.ExitOnError)
	verbose := fs.Bool("v", false, "print every test's output, as go test -v")
	logPath := fs.String("log", "", "append the skipped tests to this file (JSON lines)")
	_ = fs.Parse(args)
	argv, err := withJSON(fs.Args())
	if err != nil {
		return err
	}
	status, skips, err := runGoTest(argv, *verbose)
	if err != nil {
		return err
	}
	if *logPath != "" {
		if err := appendSkips(*logPath, skips); err != nil {
			return err
		}
	}
	if len(skips) > 0 {
		if report(os.Stdout, skips) > 0 && status == 0 {
			status = 1
		}
	}
	if status != 0 {
		return exitCode(status)
	}
	return nil
}

// withJSON checks that argv is a go test command and adds -json after
// "test".
func withJSON(argv []string) ([]string, error) {
	if len(argv) < 2 || argv[1] != "test" {
		return nil, fmt.Errorf("run wants a go test command after --, got %q", argv)
	}
	out := append([]string{argv[0], "test", "-json"}, argv[2:]...)
	return out, nil
}

// runGoTest runs argv, renders its JSON stream and returns its exit status
// and skipped tests.
func runGoTest(argv []string, verbose bool) (int, []Skip, error) {
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Stdin, cmd.Stderr = os.Stdin, os.Stderr
	stream, err := cmd.StdoutPipe()
	if err != nil {
		return 0, nil, err
	}
	if err := cmd.Start(); err != nil {
		return 0, nil, err
	}
	r := newRenderer(os.Stdout, os.Stderr, verbose)
	readErr := r.consume(stream)
	if readErr != nil {
		_, _ = io.Copy(io.Discard, stream) // let go test finish
	}
	waitErr := cmd.Wait()
	if readErr != nil {
		return 0, nil, fmt.Errorf("reading go test -json: %v", readErr)
	}
	var exit *exec.ExitError
	switch {
	case errors.As(waitErr, &exit):
		return exit.ExitCode(), r.skips, nil
	case waitErr != nil:
		return 0, nil, waitErr
	}
	return 0, r.skips, nil
}

func reportCmd(args []string) error {
	if len(args) != 1 {
		usage()
	}
	skips, err := readSkips(args[0])
	if err != nil {
		return err
	}
	if n := report(os.Stdout, skips); n > 0 {
		fmt.Printf("skipped tests: FAIL: %d test(s) skipped for a reason that is not allowed\n", n)
		return exitCode(1)
	}
	return nil
}
