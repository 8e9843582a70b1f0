// Package inference routes the agent's requests to inference.local to the
// model backend the administrator configured (egress.inference): the
// request keeps its method, path, query and body, loses every header field
// but an allowlist (the agent's own Authorization and API keys among
// those dropped), and gets the backend's key, which the agent never holds.
package inference

import (
	"errors"
	"net/http"
	"strings"
)

// Host is the name the agent reaches the backend by.
const Host = "inference.local"

// Rule is the rule of inference.local's decision records: the config's
// egress.inference allows it, not a policy.
const Rule = "egress.inference"

// Route is the filter's part of egress.inference: where requests go and
// what they carry.
type Route struct {
	// BackendHost and BackendPort are the backend's name and port; the
	// filter connects to it over TLS verified for BackendHost.
	BackendHost string `json:"backend_host"`
	BackendPort int    `json:"backend_port"`
	// Credential names the credential whose value is the backend's key
	// (empty: no key is sent); KeyHeader carries it after KeyPrefix.
	Credential string `json:"credential,omitempty"`
	KeyHeader  string `json:"key_header"`
	KeyPrefix  string `json:"key_prefix,omitempty"`
	// Forward are the only header fields of the agent's request that go
	// to the backend, in canonical form.
	Forward []string `json:"forward"`
}

// ErrNoKey refuses a request when the route's credential has no value.
var ErrNoKey = errors.New("inference: the backend's key is not loaded")

// Rewrite makes r the backend's request: only the allowlisted header
// fields of the agent, then the key (looked up by the route's credential
// name, never the agent's) in KeyHeader. Authorization, API keys, cookies
// and anything else the agent set are dropped unless allowlisted; the key
// header itself is always the route's, whatever the allowlist says.
func (rt *Route) Rewrite(r *http.Request, key func(name string) (string, bool)) error {
	kept := http.Header{}
	for _, name := range rt.Forward {
		if name == rt.KeyHeader {
			continue
		}
		if v, ok := r.Header[name]; ok {
			kept[name] = v
		}
	}
	r.Header = kept
	r.Trailer = nil
	if rt.Credential == "" {
		return nil
	}
	v, ok := key(rt.Credential)
	if !ok || v == "" || strings.ContainsAny(v, "\r\n") {
		return ErrNoKey
	}
	r.Header.Set(rt.KeyHeader, rt.KeyPrefix+v)
	return nil
}
