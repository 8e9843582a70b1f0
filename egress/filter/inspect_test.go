package filter

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/clawrun/clawrun/egress/inspect"
	"github.com/clawrun/clawrun/egress/rules"
	"github.com/clawrun/clawrun/runtime/policy"
)

// writeCA writes a fresh CA's certificate and key into dir.
func writeCA(t *testing.T, dir string) (cert, key string) {
	t.Helper()
	ca, err := inspect.NewCA("clawrun egress CA test", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	cert, key = filepath.Join(dir, "egress-ca.pem"), filepath.Join(dir, "egress-ca.key")
	if err := os.WriteFile(cert, ca.CertPEM(), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := ca.WriteKeyFile(key); err != nil {
		t.Fatal(err)
	}
	return cert, key
}

// TestNewEngine: the filter inspects with the CA its config names, and
// fails to start, saying why, on a CA it cannot use.
func TestNewEngine(t *testing.T) {
	dir := t.TempDir()
	cert, key := writeCA(t, dir)
	loose := filepath.Join(dir, "loose.key")
	data, _ := os.ReadFile(key)
	if err := os.WriteFile(loose, data, 0o644); err != nil {
		t.Fatal(err)
	}
	notPEM := filepath.Join(dir, "roots.pem")
	if err := os.WriteFile(notPEM, []byte("not a certificate"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name   string
		cfg    Config
		engine bool
		err    string
	}{
		{"no CA", Config{}, false, ""},
		{"CA", Config{CACert: cert, CAKey: key}, true, ""},
		{"CA and upstream roots", Config{CACert: cert, CAKey: key, UpstreamCAFile: cert}, true, ""},
		{"certificate without key", Config{CACert: cert}, false, "ca_cert and ca_key go together"},
		{"missing certificate", Config{CACert: filepath.Join(dir, "absent.pem"), CAKey: key}, false, "egress CA certificate"},
		{"missing key", Config{CACert: cert, CAKey: filepath.Join(dir, "absent.key")}, false, "egress CA"},
		{"key readable by others", Config{CACert: cert, CAKey: loose}, false, "egress CA"},
		{"missing upstream roots", Config{CACert: cert, CAKey: key, UpstreamCAFile: filepath.Join(dir, "absent")}, false, "egress.upstream_ca_file"},
		{"upstream roots not PEM", Config{CACert: cert, CAKey: key, UpstreamCAFile: notPEM}, false, "no PEM certificate"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e, err := newEngine(&tc.cfg)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("err %v, want %q", err, tc.err)
				}
				return
			}
			if err != nil || (e != nil) != tc.engine {
				t.Fatalf("engine %v, err %v", e, err)
			}
		})
	}
}

// TestCanInspect: rules with an inspected endpoint need an engine.
func TestCanInspect(t *testing.T) {
	layer := func(ep policy.Endpoint) []policy.NetworkLayer {
		return []policy.NetworkLayer{{Source: "c", Policies: map[string]policy.NetworkPolicy{"p": {Endpoints: []policy.Endpoint{ep}}}}}
	}
	inspected, _ := rules.FromPlan(layer(policy.Endpoint{Host: "api.example", Ports: []int{443}, Protocol: "rest", Access: "read-only"}), 1)
	spliced, _ := rules.FromPlan(layer(policy.Endpoint{Host: "api.example", Ports: []int{443}}), 1)
	if err := canInspect(inspected, nil); err == nil || !strings.Contains(err.Error(), "api.example is inspected, but the container has no egress CA") {
		t.Errorf("inspected rules without an engine: %v", err)
	}
	if err := canInspect(spliced, nil); err != nil {
		t.Errorf("spliced rules without an engine: %v", err)
	}
	cert, key := writeCA(t, t.TempDir())
	e, err := newEngine(&Config{CACert: cert, CAKey: key})
	if err != nil {
		t.Fatal(err)
	}
	if err := canInspect(inspected, e); err != nil {
		t.Errorf("inspected rules with an engine: %v", err)
	}
	// A proposal that needs an engine the worker lacks is refused whole.
	rulesFile := filepath.Join(t.TempDir(), "rules.json")
	if err := WriteRules(rulesFile, spliced); err != nil {
		t.Fatal(err)
	}
	inspected.Generation = 2
	if err := ProposeRules(rulesFile, inspected); err != nil {
		t.Fatal(err)
	}
	if _, err := takeProposal(rulesFile, func(r *rules.Rules) error { return canInspect(r, nil) }); err == nil {
		t.Fatal("a proposal to inspect was taken by a worker without a CA")
	}
	if r, err := LoadRules(rulesFile); err != nil || r.Generation != 1 {
		t.Errorf("rules in force after the refusal: %+v, %v", r, err)
	}
}
