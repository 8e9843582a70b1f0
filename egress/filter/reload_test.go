package filter

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/clawrun/clawrun/egress/rules"
)

func writeTestFile(t *testing.T, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
}

func TestLoadRulesRefusesUnknownFields(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "good.json")
	writeTestFile(t, good, `{"generation":3,"layers":[{"source":"p","policies":[{"name":"web","endpoints":[{"host":"a.test","ports":[443]}]}]}]}`)
	r, err := LoadRules(good)
	if err != nil || r.Generation != 3 || r.Layers[0].Policies[0].Endpoints[0].Host != "a.test" {
		t.Fatalf("LoadRules(good) = %+v, %v", r, err)
	}
	for name, doc := range map[string]string{
		"top level":   `{"generation":4,"tls_inspection":true,"layers":[]}`,
		"in endpoint": `{"generation":4,"layers":[{"source":"p","policies":[{"name":"web","endpoints":[{"host":"a.test","ports":[443],"tls_inspection":true}]}]}]}`,
	} {
		bad := filepath.Join(dir, "bad.json")
		writeTestFile(t, bad, doc)
		if _, err := LoadRules(bad); err == nil || !strings.Contains(err.Error(), "tls_inspection") {
			t.Errorf("%s: LoadRules = %v, want an error naming the unknown field", name, err)
		}
	}
	trailing := filepath.Join(dir, "trailing.json")
	writeTestFile(t, trailing, `{"generation":4,"layers":[]} {"generation":5}`)
	if _, err := LoadRules(trailing); err == nil {
		t.Error("LoadRules accepted a second JSON value after the rules")
	}
}

func TestTakeProposal(t *testing.T) {
	dir := t.TempDir()
	rulesFile := filepath.Join(dir, "rules.json")
	if err := WriteRules(rulesFile, &rules.Rules{Generation: 1}); err != nil {
		t.Fatal(err)
	}
	// A newer runtime's generation, with a field this filter does not know.
	writeTestFile(t, ProposalFile(rulesFile), `{"generation":2,"tls_inspection":true,"layers":[]}`)
	_, err := takeProposal(rulesFile, acceptAll)
	var r refusal
	if !errors.As(err, &r) || r.generation != 2 || !strings.Contains(err.Error(), "tls_inspection") {
		t.Fatalf("takeProposal(unknown field) = %v, want generation 2 refused naming the field", err)
	}
	if cur, err := LoadRules(rulesFile); err != nil || cur.Generation != 1 {
		t.Errorf("after the refusal the rules file holds %+v (%v), want generation 1", cur, err)
	}
	if _, err := os.Stat(ProposalFile(rulesFile)); !os.IsNotExist(err) {
		t.Errorf("the refused proposal is still there (%v)", err)
	}
	// A valid one becomes the rules file.
	if err := ProposeRules(rulesFile, &rules.Rules{Generation: 2}); err != nil {
		t.Fatal(err)
	}
	next, err := takeProposal(rulesFile, acceptAll)
	if err != nil || next.Generation != 2 {
		t.Fatalf("takeProposal(valid) = %+v, %v", next, err)
	}
	if cur, err := LoadRules(rulesFile); err != nil || cur.Generation != 2 {
		t.Errorf("after loading, the rules file holds %+v (%v), want generation 2", cur, err)
	}
	// Without a proposal, the rules file is read again.
	if again, err := takeProposal(rulesFile, acceptAll); err != nil || again.Generation != 2 {
		t.Errorf("takeProposal(none) = %+v, %v, want the rules file", again, err)
	}
}

func TestLoadOutcome(t *testing.T) {
	since := time.Now()
	for _, tc := range []struct {
		name string
		st   Status
		done bool
		err  string
	}{
		{"loaded", Status{State: "running", Generation: 2}, true, ""},
		{"not yet", Status{State: "running", Generation: 1}, false, ""},
		{"refused", Status{State: "running", Generation: 1, LastFailure: &Failure{Time: since, Generation: 2, Message: "unknown field"}}, true, "refused generation 2 (generation 1 stays): unknown field"},
		{"an older refusal", Status{State: "running", Generation: 1, LastFailure: &Failure{Time: since.Add(-time.Second), Generation: 2}}, false, ""},
		{"restarting", Status{State: "restarting", Generation: 2, Error: "worker killed"}, false, ""},
		{"failed", Status{State: "failed", Generation: 1, Error: "worker exited with status 1: boom"}, true, "failed: worker exited with status 1: boom"},
	} {
		done, err := loadOutcome(&tc.st, 2, since)
		if done != tc.done || (tc.err == "") != (err == nil) || (err != nil && !strings.Contains(err.Error(), tc.err)) {
			t.Errorf("%s: loadOutcome = %v, %v; want %v, %q", tc.name, done, err, tc.done, tc.err)
		}
	}
}

func acceptAll(*rules.Rules) error { return nil }
