package policy

import (
	"fmt"
	"slices"

	"go.yaml.in/yaml/v3"

	"github.com/clawrun/clawrun/runtime/policy/hostname"
)

// credentialName is what a placeholder can name: an environment variable's
// name, as OpenShell's openshell:resolve:env:NAME takes it.
var credentialName = lazyRE(`^[A-Za-z_][A-Za-z0-9_]{0,127}$`)

// credentials reads egress.credentials: each has a unique name, exactly
// one value source and at least one endpoint.
func (d *decoder) credentials(n *yaml.Node, field string) []Credential {
	var out []Credential
	seen := map[string]bool{}
	d.list(n, field, "credentials", func(_ int, item *yaml.Node, isub string) {
		c, ok := d.credential(item, isub)
		if !ok {
			return
		}
		if seen[c.Name] {
			d.fail(item, isub+".name", "%q: a credential of that name is already configured", c.Name)
			return
		}
		seen[c.Name] = true
		out = append(out, c)
	})
	return out
}

func (d *decoder) credential(n *yaml.Node, field string) (Credential, bool) {
	var c Credential
	errs := len(d.errs)
	d.mapping(n, field, []string{"name", "file", "env", "endpoints"}, nil, func(key string, _, v *yaml.Node, sub string) {
		switch key {
		case "endpoints":
			d.list(v, sub, "endpoints", func(_ int, item *yaml.Node, isub string) {
				if ep, ok := d.credentialEndpoint(item, isub); ok {
					c.Endpoints = append(c.Endpoints, ep)
				}
			})
			return
		case "file":
			c.File = d.absPath(v, sub)
			return
		}
		s, ok := d.str(v, sub)
		if !ok {
			return
		}
		if !credentialName.MatchString(s) {
			d.fail(v, sub, "%q: not a name of [A-Za-z_][A-Za-z0-9_]*", truncate(s))
			return
		}
		if key == "name" {
			c.Name = s
		} else {
			c.Env = s
		}
	})
	if len(d.errs) > errs {
		return c, false
	}
	switch {
	case c.Name == "":
		d.fail(n, field+".name", "missing")
	case (c.File == "") == (c.Env == ""):
		d.fail(n, field, "credential %q: give exactly one of file and env", c.Name)
	case len(c.Endpoints) == 0:
		d.fail(n, field+".endpoints", "credential %q: bound to no endpoint", c.Name)
	default:
		return c, true
	}
	return c, false
}

func (d *decoder) credentialEndpoint(n *yaml.Node, field string) (CredentialEndpoint, bool) {
	var ep CredentialEndpoint
	errs := len(d.errs)
	d.mapping(n, field, []string{"host", "ports"}, nil, func(key string, _, v *yaml.Node, sub string) {
		if key == "ports" {
			d.list(v, sub, "ports", func(_ int, item *yaml.Node, isub string) {
				if p, ok := d.port(item, isub); ok {
					ep.Ports = append(ep.Ports, p)
				}
			})
			return
		}
		s, ok := d.str(v, sub)
		if !ok {
			return
		}
		h, err := hostname.ParsePattern(s)
		if err != nil {
			d.fail(v, sub, "%v", err)
			return
		}
		ep.Host = h
	})
	if len(d.errs) > errs {
		return ep, false
	}
	if ep.Host == "" {
		d.fail(n, field+".host", "missing")
		return ep, false
	}
	if len(ep.Ports) == 0 {
		ep.Ports = []int{443}
	}
	return ep, true
}

// String names the credential and its source, never its value (which
// the runtime never reads).
func (c Credential) String() string {
	if c.File != "" {
		return fmt.Sprintf("%s (file %s)", c.Name, c.File)
	}
	return fmt.Sprintf("%s (env %s)", c.Name, c.Env)
}

// BoundCredentials names the credentials the egress filter may inject into
// the requests to an endpoint: those bound to one of its ports and to its
// host, or for a wildcard endpoint to the same pattern or one of its
// names. Names only: the runtime never reads a value.
func BoundCredentials(creds []Credential, host string, ports []int) []string {
	var names []string
	for _, c := range creds {
		if slices.ContainsFunc(c.Endpoints, func(ep CredentialEndpoint) bool { return ep.covers(host, ports) }) {
			names = append(names, c.Name)
		}
	}
	return names
}

// covers reports whether some request to host (a pattern) on one of ports
// may carry the credential.
func (ep CredentialEndpoint) covers(host string, ports []int) bool {
	if !slices.ContainsFunc(ports, func(p int) bool { return slices.Contains(ep.Ports, p) }) {
		return false
	}
	if hostname.IsWildcard(host) {
		return ep.Host == host || hostname.Match(host, ep.Host)
	}
	return hostname.Match(ep.Host, host)
}
