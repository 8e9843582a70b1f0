package policy

import (
	"fmt"

	"go.yaml.in/yaml/v3"
)

var (
	networkPolicyKeys = []string{"name", "endpoints", "binaries"}
	endpointKeys      = []string{"host", "port", "ports", "path", "protocol", "tls", "enforcement", "access", "rules", "deny_rules", "allowed_ips", "mcp", "json_rpc"}
	ruleKeys          = []string{"method", "path", "query", "tool"}
	binaryKeys        = []string{"path", "harness"}

	// Keys later OpenShell releases accept that clawrun does not implement.
	// They are refused rather than ignored: most narrow what is allowed, and
	// ignoring them would silently widen the policy.
	openshellEndpointKeys = notSupported("allow_encoded_slash", "websocket_credential_rewrite",
		"request_body_credential_rewrite", "allow_uninspected_credentials", "persisted_queries",
		"graphql_persisted_queries", "graphql_max_body_bytes", "credential_signing",
		"signing_service", "signing_region", "credential_binding")
	openshellRuleKeys = notSupported("command", "operation_type", "operation_name", "fields", "params")
	// The keys of an endpoint's mcp and json_rpc options.
	mcpOptionKeys     = []string{"max_body_bytes", "strict_tool_names"}
	jsonRPCOptionKeys = []string{"max_body_bytes"}
	unsupportedMCP    = map[string]string{"allow_all_known_mcp_methods": "OpenShell's MCP method profile is not supported by clawrun: list the methods in rules"}
)

func notSupported(keys ...string) map[string]string {
	m := make(map[string]string, len(keys))
	for _, k := range keys {
		m[k] = fmt.Sprintf("OpenShell's %s is not supported by clawrun", k)
	}
	return m
}

func (d *decoder) networkPolicies(n *yaml.Node, field string) map[string]NetworkPolicy {
	out := map[string]NetworkPolicy{}
	d.entries(n, field, func(key string, k, v *yaml.Node, sub string) {
		if reason := checkNetworkKey(key); reason != "" {
			d.fail(k, sub, "%s", reason)
			return
		}
		out[key] = d.networkPolicy(key, v, sub)
	})
	return out
}

func (d *decoder) networkPolicy(key string, n *yaml.Node, field string) NetworkPolicy {
	// The display name defaults to the key, as in OpenShell.
	np := NetworkPolicy{Name: key}
	hasEndpoints := false
	ok := d.mapping(n, field, networkPolicyKeys, nil, func(key string, _, v *yaml.Node, sub string) {
		switch key {
		case "name":
			if s, ok := d.str(v, sub); ok {
				if reason := checkText(s, 128); reason != "" || s == "" {
					d.fail(v, sub, "%q: a name is 1 to 128 printable characters", truncate(s))
				} else {
					np.Name = s
				}
			}
		case "endpoints":
			hasEndpoints = true
			listed := d.list(v, sub, "endpoints", func(_ int, item *yaml.Node, isub string) {
				if ep, ok := d.endpoint(item, isub); ok {
					np.Endpoints = append(np.Endpoints, ep)
				}
			})
			if listed && len(resolve(v).Content) == 0 {
				d.fail(v, sub, "at least one endpoint is required")
			}
		case "binaries":
			d.list(v, sub, "binaries", func(_ int, item *yaml.Node, isub string) {
				if b, ok := d.binary(item, isub); ok {
					np.Binaries = append(np.Binaries, b)
				}
			})
		}
	})
	if ok && !hasEndpoints {
		d.fail(n, join(field, "endpoints"), "at least one endpoint is required")
	}
	return np
}

func (d *decoder) binary(n *yaml.Node, field string) (Binary, bool) {
	var b Binary
	hasPath, valid := false, false
	ok := d.mapping(n, field, binaryKeys, nil, func(key string, k, v *yaml.Node, sub string) {
		if key == "harness" {
			d.warn(k, sub, "ignored (deprecated in OpenShell)")
			return
		}
		hasPath = true
		s, ok := d.str(v, sub)
		if !ok {
			return
		}
		if reason := checkBinary(s); reason != "" {
			d.fail(v, sub, "%s", reason)
			return
		}
		b.Path, valid = s, true
	})
	if ok && !hasPath {
		d.fail(n, join(field, "path"), "required")
	}
	return b, valid
}

func (d *decoder) endpoint(n *yaml.Node, field string) (Endpoint, bool) {
	var ep Endpoint
	before := len(d.errs)
	keys := map[string]*yaml.Node{}
	var ports []int
	badPort := false
	var rules, denyRules *yaml.Node
	ok := d.mapping(n, field, endpointKeys, openshellEndpointKeys, func(key string, k, v *yaml.Node, sub string) {
		keys[key] = k
		switch key {
		case "host":
			if s, ok := d.str(v, sub); ok {
				if h, reason := normHost(s); reason != "" {
					d.fail(v, sub, "%s", reason)
				} else {
					ep.Host = h
				}
			}
		case "port":
			if p, ok := d.port(v, sub); ok {
				ports = append(ports, p)
			} else {
				badPort = true
			}
		case "ports":
			if !d.list(v, sub, "ports", func(_ int, item *yaml.Node, isub string) {
				if p, ok := d.port(item, isub); ok {
					ports = append(ports, p)
				} else {
					badPort = true
				}
			}) {
				badPort = true
			}
		case "path":
			if s, ok := d.str(v, sub); ok {
				if reason := checkURLPath(s); reason != "" {
					d.fail(v, sub, "%s", reason)
				} else {
					ep.Path = s
				}
			}
		case "protocol":
			ep.Protocol, _ = d.enum(v, sub, protocols...)
		case "tls":
			ep.TLS, _ = d.enum(v, sub, tlsModes...)
		case "enforcement":
			ep.Enforcement, _ = d.enum(v, sub, enforcements...)
		case "access":
			ep.Access, _ = d.enum(v, sub, accesses...)
		case "rules":
			rules = v
		case "deny_rules":
			denyRules = v
		case "allowed_ips":
			ep.AllowedIPs = d.allowedIPs(v, sub)
		}
	})
	if !ok {
		return ep, false
	}
	// The options are read once the protocol is known.
	for _, opt := range []string{"mcp", "json_rpc"} {
		if k := keys[opt]; k != nil {
			d.rpcOptions(opt, ep.Protocol, k, optionValue(n, k), join(field, opt))
		}
	}
	// Rules are read last: how a method is checked depends on the protocol.
	if rules != nil {
		ep.Rules = d.rules(rules, join(field, "rules"), ep.Protocol, false)
	}
	if denyRules != nil {
		ep.DenyRules = d.rules(denyRules, join(field, "deny_rules"), ep.Protocol, true)
	}
	if keys["host"] == nil {
		d.fail(n, join(field, "host"), "required")
	}
	ep.Ports = sortedUnique(ports)
	if !badPort && len(ep.Ports) == 0 {
		d.fail(n, join(field, "port"), "no port: set port or ports")
	}
	if len(d.errs) != before {
		return ep, false
	}
	for _, pr := range endpointProblems(ep) {
		at := keys[pr.key]
		if at == nil {
			at = n
		}
		d.fail(at, join(field, pr.key), "%s", pr.reason)
	}
	return ep, len(d.errs) == before
}

// optionValue is the value of key node k in mapping n.
func optionValue(n, k *yaml.Node) *yaml.Node {
	m := resolve(n)
	for i := 0; i+1 < len(m.Content); i += 2 {
		if resolve(m.Content[i]) == k {
			return m.Content[i+1]
		}
	}
	return nil
}

// rpcOptions reads an endpoint's mcp or json_rpc options (key), which
// belong to protocol mcp and json-rpc. clawrun inspects JSON-RPC bodies of
// up to 1 MiB whatever max_body_bytes says, and holds MCP tool names to
// strict_tool_names always: a tool name outside [A-Za-z0-9_.-]{1,128}
// is denied.
func (d *decoder) rpcOptions(key, protocol string, k, v *yaml.Node, field string) {
	valid, unsupported, want := jsonRPCOptionKeys, map[string]string(nil), "json-rpc"
	if key == "mcp" {
		valid, unsupported, want = mcpOptionKeys, unsupportedMCP, "mcp"
	}
	if protocol != want {
		d.fail(k, field, "%s options need protocol: %s", key, want)
		return
	}
	d.mapping(v, field, valid, unsupported, func(opt string, _, ov *yaml.Node, sub string) {
		switch opt {
		case "max_body_bytes":
			if n, ok := d.integer(ov, sub); ok && n <= 0 {
				d.fail(ov, sub, "must be positive")
			} else if ok && n != maxRPCBody {
				d.warn(ov, sub, fmt.Sprintf("clawrun reads JSON-RPC bodies of up to %d bytes on every endpoint, whatever this says", maxRPCBody))
			}
		case "strict_tool_names":
			if strict, ok := d.boolean(ov, sub); ok && !strict {
				d.fail(ov, sub, "clawrun always requires tool names of [A-Za-z0-9_.-]{1,128}: false is not supported")
			}
		}
	})
}

// maxRPCBody is the largest JSON-RPC body the egress filter inspects
// (inspect.DefaultMaxRPCBody, which this package cannot import).
const maxRPCBody = 1 << 20

func (d *decoder) port(n *yaml.Node, field string) (int, bool) {
	p, ok := d.integer(n, field)
	if !ok {
		return 0, false
	}
	if reason := checkPort(p); reason != "" {
		d.fail(n, field, "%s", reason)
		return 0, false
	}
	return int(p), true
}

func (d *decoder) allowedIPs(n *yaml.Node, field string) []string {
	var out []string
	seen := map[string]bool{}
	d.list(n, field, "addresses or CIDR prefixes", func(_ int, item *yaml.Node, isub string) {
		s, ok := d.str(item, isub)
		if !ok {
			return
		}
		p, reason := normCIDR(s)
		if reason != "" {
			d.fail(item, isub, "%s", reason)
			return
		}
		if b, blocked := blockedOverlap(p); blocked {
			d.warn(item, isub, fmt.Sprintf("%s overlaps %s, which stays blocked whatever allowed_ips says", p, b))
		}
		if c := p.String(); !seen[c] {
			seen[c] = true
			out = append(out, c)
		}
	})
	return out
}

// rules reads rules or deny_rules. Items may be wrapped as OpenShell writes
// them ({allow: {...}} in rules, {deny: {...}} in deny_rules) or be the
// bare {method, path, query}.
func (d *decoder) rules(n *yaml.Node, field, protocol string, deny bool) []Rule {
	var out []Rule
	want, other := "allow", "deny"
	if deny {
		want, other = "deny", "allow"
	}
	d.list(n, field, "rules", func(_ int, item *yaml.Node, isub string) {
		m := resolve(item)
		wrapper := ""
		if m != nil && m.Kind == yaml.MappingNode {
			for i := 0; i+1 < len(m.Content); i += 2 {
				if k := resolve(m.Content[i]); k != nil && (k.Value == "allow" || k.Value == "deny") {
					wrapper = k.Value
					break
				}
			}
		}
		switch wrapper {
		case "":
			if r, ok := d.rule(item, isub, protocol); ok {
				out = append(out, r)
			}
		case other:
			where := "deny_rules"
			if deny {
				where = "rules"
			}
			d.fail(item, isub, "a %q entry belongs in %s", other, where)
		default:
			d.mapping(item, isub, []string{want}, nil, func(_ string, _, v *yaml.Node, sub string) {
				if r, ok := d.rule(v, sub, protocol); ok {
					out = append(out, r)
				}
			})
		}
	})
	return out
}

func (d *decoder) rule(n *yaml.Node, field, protocol string) (Rule, bool) {
	var r Rule
	before := len(d.errs)
	ok := d.mapping(n, field, ruleKeys, openshellRuleKeys, func(key string, _, v *yaml.Node, sub string) {
		switch key {
		case "method":
			if s, ok := d.str(v, sub); ok {
				if m, reason := normMethod(s, protocol); reason != "" {
					d.fail(v, sub, "%s", reason)
				} else {
					r.Method = m
				}
			}
		case "path":
			if s, ok := d.str(v, sub); ok {
				if reason := checkURLPath(s); reason != "" {
					d.fail(v, sub, "%s", reason)
				} else {
					r.Path = s
				}
			}
		case "tool":
			if s, ok := d.str(v, sub); ok {
				if reason := checkTool(s, protocol); reason != "" {
					d.fail(v, sub, "%s", reason)
				} else {
					r.Tool = s
				}
			}
		case "query":
			d.entries(v, sub, func(key string, k, v *yaml.Node, sub string) {
				if reason := checkQueryKey(key); reason != "" {
					d.fail(k, sub, "%s", reason)
					return
				}
				if m := resolve(v); m != nil && m.Kind == yaml.MappingNode {
					d.fail(v, sub, "query matchers such as {any: [...]} are not supported by clawrun; write one rule per value")
					return
				}
				s, ok := d.str(v, sub)
				if !ok {
					return
				}
				if reason := checkText(s, 1024); reason != "" {
					d.fail(v, sub, "%s", reason)
					return
				}
				if r.Query == nil {
					r.Query = map[string]string{}
				}
				r.Query[key] = s
			})
		}
	})
	if !ok || len(d.errs) != before {
		return r, false
	}
	if r.Method == "" && r.Path == "" && len(r.Query) == 0 {
		d.fail(n, field, "an empty rule; set method, path or query")
		return r, false
	}
	if reason := checkToolMethod(r); reason != "" {
		d.fail(n, join(field, "tool"), "%s", reason)
		return r, false
	}
	return r, true
}

func checkQueryKey(k string) string {
	if k == "" {
		return "empty query parameter name"
	}
	return checkText(k, 256)
}

// problem is a cross-field error in an endpoint; key names the field.
type problem struct{ key, reason string }

const l7Protocols = "rest, websocket, graphql, mcp or json-rpc"

// endpointProblems are the checks that involve several fields of an
// endpoint, shared by the parser and Validate. Each refuses a combination
// that would be silently ignored, and so allow more than it says.
func endpointProblems(ep Endpoint) []problem {
	var out []problem
	l7 := ep.Protocol != "" && ep.Protocol != "tcp"
	if ep.Access != "" && len(ep.Rules) > 0 {
		out = append(out, problem{"access", "access and rules are mutually exclusive"})
	}
	if !l7 {
		what := "no protocol"
		if ep.Protocol == "tcp" {
			what = "protocol tcp"
		}
		for _, f := range []struct {
			key string
			set bool
		}{{"path", ep.Path != ""}, {"access", ep.Access != ""}, {"rules", len(ep.Rules) > 0}, {"deny_rules", len(ep.DenyRules) > 0}} {
			if f.set {
				out = append(out, problem{f.key, fmt.Sprintf("needs an L7 protocol (%s): with %s the connection is not inspected", l7Protocols, what)})
			}
		}
	}
	if len(ep.DenyRules) > 0 && len(ep.Rules) == 0 && ep.Access == "" && ep.Protocol != "mcp" {
		out = append(out, problem{"deny_rules", "deny_rules need rules or access to define what is allowed"})
	}
	return out
}
