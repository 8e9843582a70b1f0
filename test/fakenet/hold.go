package fakenet

import (
	"fmt"
	"maps"
	"os"
	"os/signal"
	"slices"
	"strings"
	"syscall"
	"time"
)

// WriteEnv writes vars as shell assignments (NAME='VALUE', sorted by
// name) to path, atomically: a shell that waits for the file sources it
// whole.
func WriteEnv(path string, vars map[string]string) error {
	var b strings.Builder
	for _, k := range slices.Sorted(maps.Keys(vars)) {
		fmt.Fprintf(&b, "%s='%s'\n", k, strings.ReplaceAll(vars[k], "'", `'\''`))
	}
	if err := os.WriteFile(path+".tmp", []byte(b.String()), 0o644); err != nil {
		return err
	}
	return os.Rename(path+".tmp", path)
}

// Hold serves until the process is told to stop (SIGINT, SIGTERM,
// SIGHUP), or for maxLife at most, then closes n: the way a command that
// only runs a fake internet ends.
func Hold(n *Net, maxLife time.Duration) error {
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP)
	select {
	case <-sigs:
	case <-time.After(maxLife):
		fmt.Fprintf(os.Stderr, "fake internet: %s are up, closing\n", maxLife)
	}
	return n.Close()
}
