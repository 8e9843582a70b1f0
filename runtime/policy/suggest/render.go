package suggest

import (
	"bytes"
	"fmt"
	"strings"

	"go.yaml.in/yaml/v3"

	"github.com/clawrun/clawrun/runtime/policy"
)

// YAML is the suggestion as a policy file: a comment header (the caller's
// header lines, the floor that bounded it, then the notes), then the
// policy in the policy language, every endpoint with enforcement: enforce.
func (s *Suggestion) YAML(header ...string) ([]byte, error) {
	var buf bytes.Buffer
	comment := func(line string) {
		fmt.Fprintf(&buf, "# %s\n", strings.ReplaceAll(line, "\n", " "))
	}
	for _, h := range header {
		comment(h)
	}
	if s.Floor != "" {
		comment(fmt.Sprintf("Never wider than the floor policy %s: what it denies is not suggested.", s.Floor))
	}
	if len(s.Files) > 0 {
		comment("filesystem_policy: learned from Landlock denials:")
		for _, g := range s.Files {
			list := "read_only"
			if g.Write {
				list = "read_write"
			}
			comment(fmt.Sprintf("  %s %s, for %s", list, g.Path, strings.Join(g.Because, "; ")))
		}
	}
	if len(s.Notes) > 0 {
		comment("Seen but not suggested:")
		for _, n := range s.Notes {
			comment("  " + n)
		}
	}
	enc := yaml.NewEncoder(&buf)
	enc.SetIndent(2)
	if err := enc.Encode(document(s.Policy)); err != nil {
		return nil, err
	}
	if err := enc.Close(); err != nil {
		return nil, err
	}
	// What is written must read back: policy check accepts it.
	if _, err := policy.Parse(s.Policy.Name, buf.Bytes()); err != nil {
		return nil, fmt.Errorf("the suggested policy does not read back: %w", err)
	}
	return buf.Bytes(), nil
}

// The policy language's document, field for field (see policy.Parse).
type (
	doc struct {
		Version          int                  `yaml:"version"`
		FilesystemPolicy *docFilesystem       `yaml:"filesystem_policy,omitempty"`
		Landlock         docLandlock          `yaml:"landlock"`
		Process          *docProcess          `yaml:"process,omitempty"`
		NetworkPolicies  map[string]docPolicy `yaml:"network_policies"`
		Clawrun          docClawrun           `yaml:"clawrun"`
	}
	docFilesystem struct {
		ReadOnly       []string `yaml:"read_only,omitempty"`
		ReadWrite      []string `yaml:"read_write,omitempty"`
		IncludeWorkdir bool     `yaml:"include_workdir,omitempty"`
	}
	docProcess struct {
		RunAsUser  string `yaml:"run_as_user,omitempty"`
		RunAsGroup string `yaml:"run_as_group,omitempty"`
	}
	docLandlock struct {
		Compatibility string `yaml:"compatibility"`
	}
	docPolicy struct {
		Name      string        `yaml:"name,omitempty"`
		Endpoints []docEndpoint `yaml:"endpoints"`
		Binaries  []docBinary   `yaml:"binaries,omitempty"`
	}
	docBinary struct {
		Path string `yaml:"path"`
	}
	docEndpoint struct {
		Host        string    `yaml:"host"`
		Ports       []int     `yaml:"ports,flow"`
		Path        string    `yaml:"path,omitempty"`
		Protocol    string    `yaml:"protocol,omitempty"`
		TLS         string    `yaml:"tls,omitempty"`
		Enforcement string    `yaml:"enforcement"`
		Access      string    `yaml:"access,omitempty"`
		Rules       []docRule `yaml:"rules,omitempty"`
		DenyRules   []docRule `yaml:"deny_rules,omitempty"`
		AllowedIPs  []string  `yaml:"allowed_ips,omitempty"`
	}
	docRule struct {
		Allow *docRuleBody `yaml:"allow,omitempty,flow"`
		Deny  *docRuleBody `yaml:"deny,omitempty,flow"`
	}
	docRuleBody struct {
		Method string            `yaml:"method,omitempty"`
		Path   string            `yaml:"path,omitempty"`
		Query  map[string]string `yaml:"query,omitempty"`
		Tool   string            `yaml:"tool,omitempty"`
	}
	docClawrun struct {
		Seccomp  docSeccomp   `yaml:"seccomp"`
		Landlock *docLLExtras `yaml:"landlock,omitempty"`
	}
	docSeccomp struct {
		Profile      string   `yaml:"profile"`
		DenySyscalls []string `yaml:"deny_syscalls,omitempty"`
	}
	docLLExtras struct {
		ScopeSignals      bool     `yaml:"scope_signals"`
		ScopeAbstractUnix bool     `yaml:"scope_abstract_unix"`
		TCPBind           []uint16 `yaml:"tcp_bind,omitempty,flow"`
		TCPConnect        []uint16 `yaml:"tcp_connect,omitempty,flow"`
	}
)

// document is p in the policy language. Only a policy with a
// filesystem_policy has clawrun.landlock (the parser refuses it alone).
func document(p *policy.Policy) doc {
	d := doc{
		Version:         1,
		Landlock:        docLandlock{Compatibility: string(p.Landlock.Compatibility)},
		NetworkPolicies: map[string]docPolicy{},
		Clawrun:         docClawrun{Seccomp: docSeccomp{Profile: p.Clawrun.Seccomp.Profile, DenySyscalls: p.Clawrun.Seccomp.DenySyscalls}},
	}
	if p.HasFilesystem {
		fs := p.FilesystemPolicy
		d.FilesystemPolicy = &docFilesystem{ReadOnly: fs.ReadOnly, ReadWrite: fs.ReadWrite, IncludeWorkdir: fs.IncludeWorkdir}
		ll := p.Clawrun.Landlock
		d.Clawrun.Landlock = &docLLExtras{ScopeSignals: ll.ScopeSignals, ScopeAbstractUnix: ll.ScopeAbstractUnix, TCPBind: ll.TCPBind, TCPConnect: ll.TCPConnect}
	}
	if p.Process != (policy.Process{}) {
		d.Process = &docProcess{RunAsUser: p.Process.RunAsUser, RunAsGroup: p.Process.RunAsGroup}
	}
	for key, np := range p.NetworkPolicies {
		dp := docPolicy{Endpoints: []docEndpoint{}}
		if np.Name != key {
			dp.Name = np.Name
		}
		for _, b := range np.Binaries {
			dp.Binaries = append(dp.Binaries, docBinary{b.Path})
		}
		for _, ep := range np.Endpoints {
			dp.Endpoints = append(dp.Endpoints, docEndpoint{
				Host: ep.Host, Ports: ep.Ports, Path: ep.Path, Protocol: ep.Protocol, TLS: ep.TLS,
				Enforcement: "enforce", Access: ep.Access, AllowedIPs: ep.AllowedIPs,
				Rules: docRules(ep.Rules, false), DenyRules: docRules(ep.DenyRules, true),
			})
		}
		d.NetworkPolicies[key] = dp
	}
	return d
}

func docRules(rs []policy.Rule, deny bool) []docRule {
	var out []docRule
	for _, r := range rs {
		body := &docRuleBody{Method: r.Method, Path: r.Path, Query: r.Query, Tool: r.Tool}
		if deny {
			out = append(out, docRule{Deny: body})
		} else {
			out = append(out, docRule{Allow: body})
		}
	}
	return out
}
