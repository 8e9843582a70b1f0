package filter

import (
	"crypto/x509"
	"errors"
	"fmt"
	"os"

	"github.com/clawrun/clawrun/egress/inspect"
	"github.com/clawrun/clawrun/egress/rules"
)

// newEngine makes the container's inspection engine from the CA files of
// cfg, trusting cfg's upstream CAs (or the host's roots); nil when cfg
// names no CA.
func newEngine(cfg *Config) (*inspect.Engine, error) {
	if cfg.CACert == "" && cfg.CAKey == "" {
		return nil, nil
	}
	if cfg.CACert == "" || cfg.CAKey == "" {
		return nil, errors.New("egress CA: ca_cert and ca_key go together")
	}
	certPEM, err := os.ReadFile(cfg.CACert)
	if err != nil {
		return nil, fmt.Errorf("egress CA certificate: %w", err)
	}
	ca, err := inspect.LoadCA(certPEM, cfg.CAKey)
	if err != nil {
		return nil, fmt.Errorf("egress CA %s: %w", cfg.CACert, err)
	}
	roots, err := UpstreamRoots(cfg.UpstreamCAFile)
	if err != nil {
		return nil, err
	}
	return inspect.NewEngine(inspect.Config{CA: ca, RootCAs: roots})
}

// UpstreamRoots reads the CAs inspected upstreams must verify against
// from path (PEM, at least one certificate); nil, the host's system
// roots, when path is empty.
func UpstreamRoots(path string) (*x509.CertPool, error) {
	if path == "" {
		return nil, nil
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("egress.upstream_ca_file: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(data) {
		return nil, fmt.Errorf("egress.upstream_ca_file %s: no PEM certificate in it", path)
	}
	return pool, nil
}

// canInspect refuses rules with an inspected endpoint when there is no
// engine to inspect with: they would deny what they mean to allow
// checked, so the filter says why instead.
func canInspect(r *rules.Rules, engine *inspect.Engine) error {
	if host := r.InspectedEndpoint(); host != "" && engine == nil {
		return fmt.Errorf("endpoint %s is inspected, but the container has no egress CA (it was created without inspected endpoints): recreate it to inspect", host)
	}
	return nil
}
