package policy

import (
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"

	"github.com/clawrun/clawrun/runtime/policy/hostname"
)

// InferenceHost is the name under which the agent reaches the model
// backend of egress.inference.
const InferenceHost = "inference.local"

// Inference routes the agent's requests to inference.local to a model
// backend the administrator chose, with the backend's key, which the
// agent never holds.
type Inference struct {
	// BaseURL is the backend: https://HOST[:PORT], no path. A request's
	// path and query go to it as the agent sent them.
	BaseURL string `json:"base_url"`
	// Credential names the egress.credentials entry whose value is the
	// backend's key; it must be bound to the backend's host and port.
	// Empty: no key is sent.
	Credential string `json:"credential,omitempty"`
	// KeyHeader carries the key (default Authorization), after KeyPrefix
	// (default "Bearer " for Authorization, else none).
	KeyHeader string `json:"key_header"`
	KeyPrefix string `json:"key_prefix"`
	// ForwardHeaders are the only header fields of the agent's request
	// sent to the backend (canonical form).
	ForwardHeaders []string `json:"forward_headers"`
}

// DefaultInferenceHeaders are forwarded unless forward_headers says
// otherwise: content negotiation and the OpenAI and Anthropic API version
// and feature fields.
var DefaultInferenceHeaders = []string{"Accept", "Content-Type", "User-Agent",
	"Anthropic-Version", "Anthropic-Beta", "Openai-Beta", "Openai-Organization", "Openai-Project"}

// BackendHostPort is the backend's host and port.
func (i *Inference) BackendHostPort() (string, int) {
	u, _ := url.Parse(i.BaseURL) // checked when parsed
	port := 443
	if p := u.Port(); p != "" {
		port, _ = strconv.Atoi(p)
	}
	return u.Hostname(), port
}

// inference reads egress.inference; credentials are the entries read so
// far (egress.credentials), which credential must name.
func (d *decoder) inference(n *yaml.Node, field string) *Inference {
	in := &Inference{}
	errs := len(d.errs)
	forward := false
	d.mapping(n, field, []string{"base_url", "credential", "key_header", "key_prefix", "forward_headers"}, nil, func(key string, _, v *yaml.Node, sub string) {
		if key == "forward_headers" {
			forward = true
			in.ForwardHeaders = []string{}
			d.list(v, sub, "header names", func(_ int, item *yaml.Node, isub string) {
				if h, ok := d.headerName(item, isub); ok {
					in.ForwardHeaders = append(in.ForwardHeaders, h)
				}
			})
			return
		}
		s, ok := d.str(v, sub)
		if !ok {
			return
		}
		switch key {
		case "base_url":
			if reason := checkBaseURL(s); reason != "" {
				d.fail(v, sub, "%q: %s", truncate(s), reason)
			}
			in.BaseURL = strings.TrimSuffix(s, "/")
		case "credential":
			if !credentialName.MatchString(s) {
				d.fail(v, sub, "%q: not a name of [A-Za-z_][A-Za-z0-9_]*", truncate(s))
			}
			in.Credential = s
		case "key_header":
			if h, ok := d.headerName(v, sub); ok {
				in.KeyHeader = h
			}
		case "key_prefix":
			if strings.ContainsFunc(s, func(r rune) bool { return r < 0x20 || r == 0x7f }) {
				d.fail(v, sub, "holds a control character")
			}
			in.KeyPrefix = s
		}
	})
	if len(d.errs) > errs {
		return nil
	}
	if in.BaseURL == "" {
		d.fail(n, field+".base_url", "missing")
		return nil
	}
	if in.KeyHeader == "" {
		in.KeyHeader = "Authorization"
		if in.KeyPrefix == "" {
			in.KeyPrefix = "Bearer "
		}
	}
	if !forward {
		in.ForwardHeaders = slices.Clone(DefaultInferenceHeaders)
	}
	return in
}

// checkInferenceCredential checks that the credential of in is configured
// and bound to its backend: a secret goes only where it is bound.
func (d *decoder) checkInferenceCredential(n *yaml.Node, field string, in *Inference, creds []Credential) {
	if in == nil || in.Credential == "" {
		return
	}
	host, port := in.BackendHostPort()
	for _, c := range creds {
		if c.Name == in.Credential {
			if !slices.Contains(BoundCredentials([]Credential{c}, host, []int{port}), c.Name) {
				d.fail(n, field+".credential", "credential %q is not bound to the backend %s:%d", c.Name, host, port)
			}
			return
		}
	}
	d.fail(n, field+".credential", "%q: no such entry in egress.credentials", in.Credential)
}

// checkBaseURL says what is wrong with a backend URL ("" when nothing).
func checkBaseURL(s string) string {
	u, err := url.Parse(s)
	switch {
	case err != nil:
		return "not a URL"
	case u.Scheme != "https":
		return "must be an https:// URL"
	case u.User != nil || u.RawQuery != "" || u.Fragment != "" || u.Opaque != "":
		return "must be https://HOST[:PORT] only (no user, query or fragment)"
	case u.Path != "" && u.Path != "/":
		return "must have no path: the agent's request path goes to the backend as it is"
	}
	if _, err := hostname.ParsePattern(u.Hostname()); err != nil || hostname.IsWildcard(u.Hostname()) {
		return "the host must be a name (not an address or a wildcard)"
	}
	if p := u.Port(); p != "" {
		if n, err := strconv.Atoi(p); err != nil || n < 1 || n > 65535 {
			return "port out of range"
		}
	}
	if strings.EqualFold(u.Hostname(), InferenceHost) {
		return "the backend cannot be " + InferenceHost + " itself"
	}
	return ""
}

// headerName reads a header field name, in canonical form.
func (d *decoder) headerName(v *yaml.Node, field string) (string, bool) {
	s, ok := d.str(v, field)
	if !ok {
		return "", false
	}
	if s == "" || strings.IndexFunc(s, func(r rune) bool { return !isTokenChar(r) }) >= 0 {
		d.fail(v, field, "%q: not a header field name", truncate(s))
		return "", false
	}
	return http.CanonicalHeaderKey(s), true
}

func isTokenChar(r rune) bool {
	return r < 0x7f && (r >= '0' && r <= '9' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || strings.ContainsRune("!#$%&'*+-.^_`|~", r))
}
