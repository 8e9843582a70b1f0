package runtime

import "testing"

func TestReadyLine(t *testing.T) {
	for msg, want := range map[string]string{
		"READY=1":                       "READY=1",
		"STATUS=starting\nREADY=1\n":    "READY=1",
		"READY=1\nSTATUS=up":            "READY=1",
		"STATUS=READY=1":                "",
		"WATCHDOG=1":                    "",
		"":                              "",
		"MAINPID=7\nREADY=1\nREADY=2\n": "READY=1",
	} {
		if got := string(readyLine([]byte(msg))); got != want {
			t.Errorf("readyLine(%q) = %q, want %q", msg, got, want)
		}
	}
}
