package confinespec

import (
	"errors"
	"slices"
	"strings"

	"github.com/opencontainers/runtime-spec/specs-go"

	"github.com/clawrun/clawrun/runtime/policy"
)

// Where a container whose egress is inspected finds the filter's CA: the
// trust bundle (its image's own CAs and the filter's) and the CA alone.
const (
	TrustBundlePath = policy.TrustDir + "/ca-bundle.pem"
	TrustCAPath     = policy.TrustDir + "/ca.pem"
)

// Trust are the host files a container whose egress is inspected trusts
// the filter's CA through: its trust bundle and the CA certificate. They
// hold no key.
type Trust struct {
	Bundle string
	CA     string
}

// trustEnv are the variables that point the common TLS clients at the
// trust bundle: OpenSSL and Go (SSL_CERT_FILE), Python requests, curl,
// git; and Node, which adds NODE_EXTRA_CA_CERTS to its own roots.
var trustEnv = [][2]string{
	{"SSL_CERT_FILE", TrustBundlePath},
	{"REQUESTS_CA_BUNDLE", TrustBundlePath},
	{"CURL_CA_BUNDLE", TrustBundlePath},
	{"GIT_SSL_CAINFO", TrustBundlePath},
	{"NODE_EXTRA_CA_CERTS", TrustCAPath},
}

// AddTrust makes the container trust the filter's CA: t's files
// bind-mounted read-only at TrustBundlePath and TrustCAPath (replacing
// any mount the spec had there), and the process's environment pointed at
// them (TrustEnv).
func AddTrust(spec *specs.Spec, t Trust) error {
	if t.Bundle == "" || t.CA == "" {
		return errors.New("egress CA: a trust bundle and a CA certificate are needed")
	}
	spec.Mounts = slices.DeleteFunc(spec.Mounts, func(m specs.Mount) bool {
		return m.Destination == TrustBundlePath || m.Destination == TrustCAPath
	})
	for _, m := range [][2]string{{t.Bundle, TrustBundlePath}, {t.CA, TrustCAPath}} {
		spec.Mounts = append(spec.Mounts, specs.Mount{Source: m[0], Destination: m[1], Type: "bind",
			Options: []string{"bind", "ro", "nosuid", "nodev", "noexec"}})
	}
	if spec.Process != nil {
		spec.Process.Env = TrustEnv(spec.Process.Env)
	}
	return nil
}

// TrustEnv returns env with the variables that point TLS clients at the
// trust bundle, each unless env sets it already (the image's or the
// user's choice wins). A process exec'd into the container gets them too.
func TrustEnv(env []string) []string {
	out := slices.Clone(env)
	for _, kv := range trustEnv {
		if !slices.ContainsFunc(env, func(e string) bool { return strings.HasPrefix(e, kv[0]+"=") }) {
			out = append(out, kv[0]+"="+kv[1])
		}
	}
	return out
}
