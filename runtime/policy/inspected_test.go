package policy

import (
	"strings"
	"testing"
)

func TestEndpointInspected(t *testing.T) {
	for _, tc := range []struct {
		name   string
		ep     Endpoint
		fields string
		want   bool
	}{
		{"pass-through", Endpoint{Host: "a.com", Ports: []int{443}}, "", false},
		{"rest without rules", Endpoint{Protocol: "rest", Access: "full"}, "", false},
		{"read-only", Endpoint{Protocol: "rest", Access: "read-only"}, "access", true},
		{"read-write", Endpoint{Protocol: "rest", Access: "read-write"}, "access", true},
		{"path", Endpoint{Protocol: "rest", Path: "/v1/**"}, "path", true},
		{"rules and deny_rules", Endpoint{Protocol: "rest", Rules: []Rule{{Method: "GET"}}, DenyRules: []Rule{{Method: "POST"}}}, "rules,deny_rules", true},
		{"mcp tools", Endpoint{Protocol: "mcp", Rules: []Rule{{Method: "tools/call", Tool: "search"}}}, "rules", true},
		{"terminate alone", Endpoint{TLS: "terminate"}, "", true},
		{"skip opts out", Endpoint{Protocol: "rest", Access: "read-only", TLS: "skip"}, "access", false},
		{"passthrough is not skip", Endpoint{Protocol: "rest", Access: "read-only", TLS: "passthrough"}, "access", true},
		{"tcp", Endpoint{Protocol: "tcp", TLS: "terminate"}, "", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := strings.Join(tc.ep.RequestFields(), ","); got != tc.fields {
				t.Errorf("RequestFields %q, want %q", got, tc.fields)
			}
			if got := tc.ep.Inspected(); got != tc.want {
				t.Errorf("Inspected %v, want %v", got, tc.want)
			}
		})
	}
}

func TestRPCOptions(t *testing.T) {
	for _, tc := range []struct {
		name, options, protocol string
		err, warn               string
	}{
		{"strict tool names", "mcp: {strict_tool_names: true}", "mcp", "", ""},
		{"body bound", "mcp: {max_body_bytes: 65536}", "mcp", "", "clawrun reads JSON-RPC bodies of up to 1048576 bytes"},
		{"json_rpc body bound", "json_rpc: {max_body_bytes: 131072}", "json-rpc", "", "up to 1048576 bytes"},
		{"zero bound", "json_rpc: {max_body_bytes: 0}", "json-rpc", "must be positive", ""},
		{"json_rpc on mcp", "json_rpc: {max_body_bytes: 10}", "mcp", "json_rpc options need protocol: json-rpc", ""},
		{"unknown option", "mcp: {max_tools: 3}", "mcp", `unknown key "max_tools"`, ""},
		{"method profile", "mcp: {allow_all_known_mcp_methods: true}", "mcp", "MCP method profile is not supported", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			src := "version: 1\nnetwork_policies:\n  x:\n    endpoints:\n      - host: a.example.com\n        port: 443\n        protocol: " +
				tc.protocol + "\n        rules: [{allow: {method: initialize}}]\n        " + tc.options + "\n"
			p, err := Parse("p.yaml", []byte(src))
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("err %v, want %q", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			var warns []string
			for _, w := range p.Warnings {
				warns = append(warns, w.String())
			}
			got := strings.Join(warns, "\n")
			if tc.warn == "" && got != "" || !strings.Contains(got, tc.warn) {
				t.Errorf("warnings %q, want %q", got, tc.warn)
			}
		})
	}
}
