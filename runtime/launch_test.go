package runtime

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"testing"

	"github.com/clawrun/clawrun/seccomp"
)

// TestLauncherSpecOfStoredProfile: a container's record keeps the seccomp
// profile itself (as records made before the launcher took compiled
// programs did, with the launcher's report_fd beside it), and the
// launcher of each process started gets that profile compiled; a record
// without a profile gives no program.
func TestLauncherSpecOfStoredProfile(t *testing.T) {
	profile, err := json.Marshal(seccomp.AgentProfile(nil))
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	record := `{"plan": {}, "launch": {"layers": [], "strict": true, "seccomp": ` + string(profile) + `, "report_fd": -1}, "command": ["sh"]}`
	if err := os.WriteFile(filepath.Join(dir, confinementFile), []byte(record), 0o600); err != nil {
		t.Fatal(err)
	}
	c, err := loadConfinement(dir)
	if err != nil {
		t.Fatal(err)
	}
	spec, err := launcherSpec(c.Launch)
	if err != nil {
		t.Fatal(err)
	}
	want, err := seccomp.Compile(seccomp.AgentProfile(nil))
	if err != nil {
		t.Fatal(err)
	}
	if !spec.Strict || !bytes.Equal(spec.Seccomp, want) || spec.ReportFD != -1 || spec.ExeFD != -1 {
		t.Errorf("launcher spec %+v: not the record's, with the agent profile compiled (%d bytes)", spec, len(want))
	}

	c.Launch.Seccomp = nil
	if spec, err := launcherSpec(c.Launch); err != nil || spec.Seccomp != nil {
		t.Errorf("without a profile: %d bytes of program, %v", len(spec.Seccomp), err)
	}
}
