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
