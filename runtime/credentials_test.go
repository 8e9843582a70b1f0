package runtime

import (
	"slices"
	"strings"
	"testing"

	"github.com/clawrun/clawrun/egress/credentials"
	"github.com/clawrun/clawrun/runtime/policy"
)

// The values of env credentials go to the filter's environment only;
// a variable the runtime lacks fails create, naming the credential.
func TestCredentialEnv(t *testing.T) {
	specs := credentialSpecs([]policy.Credential{
		{Name: "API_KEY", Env: "CLAWRUN_UNIT_API_KEY", Endpoints: []policy.CredentialEndpoint{{Host: "api.example.com", Ports: []int{443}}}},
		{Name: "FROM_FILE", File: "/etc/clawrun/secret", Endpoints: []policy.CredentialEndpoint{{Host: "x.example", Ports: []int{443}}}},
	})
	want := []credentials.Spec{
		{Name: "API_KEY", Env: "CLAWRUN_UNIT_API_KEY", Endpoints: []credentials.Endpoint{{Host: "api.example.com", Ports: []int{443}}}},
		{Name: "FROM_FILE", File: "/etc/clawrun/secret", Endpoints: []credentials.Endpoint{{Host: "x.example", Ports: []int{443}}}},
	}
	if len(specs) != 2 || specs[0].Name != want[0].Name || specs[1].File != want[1].File || specs[0].Endpoints[0].Host != "api.example.com" {
		t.Fatalf("specs %+v", specs)
	}
	if _, err := credentialEnv(specs); err == nil || !strings.Contains(err.Error(), "egress.credentials API_KEY: the runtime's environment variable CLAWRUN_UNIT_API_KEY is not set") {
		t.Errorf("unset variable: %v", err)
	}
	t.Setenv("CLAWRUN_UNIT_API_KEY", "s3cret")
	env, err := credentialEnv(specs)
	if err != nil || !slices.Equal(env, []string{"_CLAWRUN_CREDENTIAL_CLAWRUN_UNIT_API_KEY=s3cret"}) {
		t.Errorf("env %q %v", env, err)
	}
}
