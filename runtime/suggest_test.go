package runtime

import (
	"fmt"
	"path/filepath"
	"strings"
	"testing"

	"github.com/clawrun/clawrun/egress/filter"
	"github.com/clawrun/clawrun/egress/rules"
	"github.com/clawrun/clawrun/runtime/policy"
)

// TestPlanPolicy: the policy a suggestion starts from is the container's
// part of its Plan, never the floor's.
func TestPlanPolicy(t *testing.T) {
	parse := func(name, text string) *policy.Policy {
		p, err := policy.Parse(name, []byte(text))
		if err != nil {
			t.Fatal(err)
		}
		return p
	}
	floor := parse("site-floor", `
version: 1
filesystem_policy: {read_only: [/], read_write: [/tmp]}
network_policies:
  site: {endpoints: [{host: "*.example.com", port: 443}]}
clawrun: {seccomp: {deny_syscalls: [mount]}}
`)
	agent := parse("agent", `
version: 1
filesystem_policy: {read_only: [/usr], read_write: [/work]}
landlock: {compatibility: hard_requirement}
process: {run_as_user: "1000"}
network_policies:
  api: {endpoints: [{host: api.example.com, port: 443, enforcement: audit}]}
clawrun: {landlock: {tcp_connect: [443]}}
`)
	plan, err := policy.Compile(floor, agent, policy.CompileOptions{Workdir: "/work"})
	if err != nil {
		t.Fatal(err)
	}
	p := planPolicy(plan, "site-floor")
	if !p.HasFilesystem || fmt.Sprint(p.FilesystemPolicy) != fmt.Sprint(agent.FilesystemPolicy) {
		t.Errorf("filesystem %+v, want the agent's %+v", p.FilesystemPolicy, agent.FilesystemPolicy)
	}
	if p.Process != agent.Process || p.Landlock != agent.Landlock || fmt.Sprint(p.Clawrun.Landlock.TCPConnect) != "[443]" {
		t.Errorf("process %+v, landlock %+v %+v: want the agent's", p.Process, p.Landlock, p.Clawrun.Landlock)
	}
	if err := p.Validate(); err != nil {
		t.Errorf("not valid: %v", err)
	}
	floorNet, own := splitNetwork(plan, "site-floor")
	if floorNet == nil || own == nil || floorNet.Source != "site-floor" || own.Policies["api"].Endpoints[0].Host != "api.example.com" {
		t.Errorf("network layers: floor %+v, own %+v", floorNet, own)
	}
	if floorNet, own := splitNetwork(plan, ""); floorNet != nil || own == nil {
		t.Errorf("without a floor: floor %+v, own %+v", floorNet, own)
	}
}

// The network layer in force is create's until policy apply loads a later
// generation, then the one apply recorded for that generation; a later
// generation without its record is unknown, not guessed.
func TestAppliedNetwork(t *testing.T) {
	layer := policy.NetworkLayer{Source: "applied.yaml", Policies: map[string]policy.NetworkPolicy{"applied": {}}}
	for _, c := range []struct {
		name     string
		inForce  int64
		recorded int64 // 0: no record
		want     string
	}{
		{"create's generation", 1, 0, ""},
		{"the applied generation", 2, 2, "applied.yaml"},
		{"a generation without a record", 2, 0, "error"},
		{"a generation past the record", 3, 2, "error"},
	} {
		t.Run(c.name, func(t *testing.T) {
			dir := t.TempDir()
			if err := filter.WriteRules(filepath.Join(dir, egressRulesFile), &rules.Rules{Generation: c.inForce}); err != nil {
				t.Fatal(err)
			}
			if c.recorded > 0 {
				if err := recordApplied(dir, c.recorded, layer); err != nil {
					t.Fatal(err)
				}
			}
			got, err := appliedNetwork(dir)
			switch {
			case c.want == "error":
				if err == nil || !strings.Contains(err.Error(), "--base") {
					t.Errorf("got %v, %v; want an error naming --base", got, err)
				}
			case c.want == "":
				if got != nil || err != nil {
					t.Errorf("got %v, %v; want none", got, err)
				}
			case err != nil || got == nil || got.Source != c.want || len(got.Policies) != 1:
				t.Errorf("got %+v, %v; want the layer of %s", got, err, c.want)
			}
		})
	}
}
