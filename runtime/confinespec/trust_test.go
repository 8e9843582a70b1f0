package confinespec

import (
	"slices"
	"testing"

	"github.com/opencontainers/runtime-spec/specs-go"
)

// TestAddTrust: the trust files are mounted read-only where clients are
// told to look, replacing the spec's own mounts there; the environment
// points the common clients at them but for what the spec sets itself.
func TestAddTrust(t *testing.T) {
	spec := agentSpec()
	spec.Process.Env = append(spec.Process.Env, "SSL_CERT_FILE=/opt/my.pem")
	spec.Mounts = append(spec.Mounts, specs.Mount{Source: "/host/evil.pem", Destination: TrustBundlePath, Type: "bind", Options: []string{"bind"}})
	before := len(spec.Mounts)
	if err := AddTrust(spec, Trust{Bundle: "/state/c/egress-ca-bundle.pem", CA: "/state/c/egress-ca.pem"}); err != nil {
		t.Fatal(err)
	}
	if len(spec.Mounts) != before+1 {
		t.Errorf("mounts %d, want %d (the spec's bundle mount replaced)", len(spec.Mounts), before+1)
	}
	want := map[string]string{TrustBundlePath: "/state/c/egress-ca-bundle.pem", TrustCAPath: "/state/c/egress-ca.pem"}
	for _, m := range spec.Mounts {
		src, ok := want[m.Destination]
		if !ok {
			continue
		}
		delete(want, m.Destination)
		if m.Source != src || m.Type != "bind" || !slices.Contains(m.Options, "ro") || !slices.Contains(m.Options, "bind") {
			t.Errorf("mount %+v", m)
		}
	}
	if len(want) > 0 {
		t.Errorf("not mounted: %v", want)
	}
	for _, kv := range []string{"SSL_CERT_FILE=/opt/my.pem", "REQUESTS_CA_BUNDLE=" + TrustBundlePath, "CURL_CA_BUNDLE=" + TrustBundlePath,
		"GIT_SSL_CAINFO=" + TrustBundlePath, "NODE_EXTRA_CA_CERTS=" + TrustCAPath, "API_KEY=k"} {
		if !slices.Contains(spec.Process.Env, kv) {
			t.Errorf("env lacks %s: %q", kv, spec.Process.Env)
		}
	}
	if slices.Contains(spec.Process.Env, "SSL_CERT_FILE="+TrustBundlePath) {
		t.Errorf("the spec's own SSL_CERT_FILE was overridden: %q", spec.Process.Env)
	}
	if err := AddTrust(agentSpec(), Trust{Bundle: "/b"}); err == nil {
		t.Error("a trust without its CA certificate was accepted")
	}
}

// TestTrustEnv: an exec'd process gets the same variables, once.
func TestTrustEnv(t *testing.T) {
	env := TrustEnv([]string{"PATH=/bin", "GIT_SSL_CAINFO=/mine"})
	again := TrustEnv(env)
	if !slices.Equal(env, again) {
		t.Errorf("TrustEnv is not idempotent: %q then %q", env, again)
	}
	if !slices.Contains(env, "GIT_SSL_CAINFO=/mine") || slices.Contains(env, "GIT_SSL_CAINFO="+TrustBundlePath) || len(env) != 6 {
		t.Errorf("env %q", env)
	}
}
