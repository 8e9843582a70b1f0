package policy

import (
	"reflect"
	"strings"
	"testing"
)

func TestParseConfigCredentials(t *testing.T) {
	c, err := ParseConfig("c", []byte(`
egress:
  credentials:
    - name: API_KEY
      file: /etc/clawrun//secrets/api-key
      endpoints:
        - host: API.example.com
        - {host: "*.example.org", ports: [443, 8443]}
    - name: TOKEN
      env: CLAWRUN_TOKEN
      endpoints: [{host: api.example.net}]
`))
	if err != nil {
		t.Fatal(err)
	}
	want := []Credential{
		{Name: "API_KEY", File: "/etc/clawrun/secrets/api-key", Endpoints: []CredentialEndpoint{
			{Host: "api.example.com", Ports: []int{443}}, {Host: "*.example.org", Ports: []int{443, 8443}}}},
		{Name: "TOKEN", Env: "CLAWRUN_TOKEN", Endpoints: []CredentialEndpoint{{Host: "api.example.net", Ports: []int{443}}}},
	}
	if !reflect.DeepEqual(c.Egress.Credentials, want) {
		t.Errorf("got %+v\nwant %+v", c.Egress.Credentials, want)
	}

	const ep = "endpoints: [{host: a.example}]"
	for _, tc := range []struct{ doc, want string }{
		{"egress: {credentials: {name: K}}", "c:1: egress.credentials: expected a list of credentials"},
		{"egress: {credentials: [{file: /k, " + ep + "}]}", "c:1: egress.credentials[0].name: missing"},
		{"egress: {credentials: [{name: 'A-B', file: /k, " + ep + "}]}", `c:1: egress.credentials[0].name: "A-B": not a name`},
		{"egress: {credentials: [{name: K, " + ep + "}]}", `c:1: egress.credentials[0]: credential "K": give exactly one of file and env`},
		{"egress: {credentials: [{name: K, file: /k, env: K, " + ep + "}]}", `give exactly one of file and env`},
		{"egress: {credentials: [{name: K, file: k, " + ep + "}]}", `c:1: egress.credentials[0].file: "k": must be an absolute path`},
		{"egress: {credentials: [{name: K, env: 'A B', " + ep + "}]}", `c:1: egress.credentials[0].env: "A B": not a name`},
		{"egress: {credentials: [{name: K, env: K}]}", `c:1: egress.credentials[0].endpoints: credential "K": bound to no endpoint`},
		{"egress: {credentials: [{name: K, env: K, endpoints: [{ports: [443]}]}]}", `c:1: egress.credentials[0].endpoints[0].host: missing`},
		{"egress: {credentials: [{name: K, env: K, endpoints: [{host: 'a..b'}]}]}", `c:1: egress.credentials[0].endpoints[0].host:`},
		{"egress: {credentials: [{name: K, env: K, endpoints: [{host: a.example, ports: [0]}]}]}", `c:1: egress.credentials[0].endpoints[0].ports[0]:`},
		{"egress: {credentials: [{name: K, env: K, value: s3cret, " + ep + "}]}", `c:1: egress.credentials[0].value: unknown key "value"`},
		{"egress: {credentials: [{name: K, env: K, " + ep + "}, {name: K, env: J, " + ep + "}]}", `c:1: egress.credentials[1].name: "K": a credential of that name is already configured`},
	} {
		_, err := ParseConfig("c", []byte(tc.doc))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("ParseConfig(%q) = %v, want %q", tc.doc, err, tc.want)
		}
	}
}

func TestBoundCredentials(t *testing.T) {
	creds := []Credential{
		{Name: "EXACT", Endpoints: []CredentialEndpoint{{Host: "api.example.com", Ports: []int{443}}}},
		{Name: "WILD", Endpoints: []CredentialEndpoint{{Host: "*.example.com", Ports: []int{443, 8443}}}},
		{Name: "OTHER", Endpoints: []CredentialEndpoint{{Host: "api.example.org", Ports: []int{443}}}},
	}
	for _, tc := range []struct {
		host  string
		ports []int
		want  []string
	}{
		{"api.example.com", []int{443}, []string{"EXACT", "WILD"}},
		{"api.example.com", []int{8443}, []string{"WILD"}},
		{"api.example.com", []int{80}, nil},
		{"example.com", []int{443}, nil},
		{"a.b.example.com", []int{443}, nil},
		// A wildcard endpoint carries the credentials of its own pattern
		// and of its names.
		{"*.example.com", []int{443}, []string{"EXACT", "WILD"}},
		{"*.example.org", []int{443}, []string{"OTHER"}},
		{"*.example.net", []int{443}, nil},
	} {
		if got := BoundCredentials(creds, tc.host, tc.ports); !reflect.DeepEqual(got, tc.want) {
			t.Errorf("BoundCredentials(%s, %v) = %v, want %v", tc.host, tc.ports, got, tc.want)
		}
	}
}

func TestInspectedEndpointsNameCredentials(t *testing.T) {
	p, err := Parse("p", []byte("network_policies:\n  x:\n    endpoints: [{host: api.example.com, port: 443, tls: terminate}, {host: api.example.com, port: 8443}]\n"))
	if err != nil {
		t.Fatal(err)
	}
	creds := []Credential{{Name: "API_KEY", File: "/secret/file", Endpoints: []CredentialEndpoint{{Host: "api.example.com", Ports: []int{443, 8443}}}}}
	got := InspectedEndpoints(p.NetworkPolicies, creds)
	want := []string{"network_policies.x.endpoints[0] (api.example.com, ports 443, credentials API_KEY)"}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("got %q, want %q", got, want)
	}
}
