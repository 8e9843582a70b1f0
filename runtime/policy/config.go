package policy

import (
	"fmt"
	"net/netip"
	"path"
	"path/filepath"
	"strings"

	"go.yaml.in/yaml/v3"
)

// Default locations of the runtime's configuration.
const (
	DefaultConfigFile = "/etc/clawrun/config.yaml"
	DefaultPolicyDir  = "/etc/clawrun/policies"
)

// Config is the runtime's configuration file.
type Config struct {
	// FloorPolicy is applied under every container's policy: a preset
	// name, a policy name (a file in PolicyDir) or an absolute file path.
	// Empty means no floor.
	FloorPolicy string `json:"floor_policy,omitempty"`
	// DefaultPolicy (a preset or policy name) is applied to containers
	// that carry no policy annotation. Empty means none.
	DefaultPolicy string `json:"default_policy,omitempty"`
	// PolicyDir holds named policies as NAME.yaml.
	PolicyDir string       `json:"policy_dir"`
	Egress    EgressConfig `json:"egress"`
}

// EgressConfig configures the egress filter.
type EgressConfig struct {
	// UpstreamDNS are the resolvers the filter's DNS forwards to, as
	// "IP:PORT" (a bare IP means port 53). Empty means the host's.
	UpstreamDNS []string `json:"upstream_dns,omitempty"`
	// AllowedUpstreamRanges are CIDR prefixes the filter may connect to
	// even though they are private.
	AllowedUpstreamRanges []string `json:"allowed_upstream_ranges,omitempty"`
	// LogDir holds one decision log per container, ID.egress.jsonl
	// (default /var/log/clawrun).
	LogDir string `json:"log_dir,omitempty"`
	// LogFormat is how the decision log writes a decision:
	// LogFormatClawrun (the default) or LogFormatOCSF.
	LogFormat string `json:"log_format,omitempty"`
	// UpstreamCAFile holds the CAs (PEM) the certificates of inspected
	// endpoints' servers must verify against, instead of the host's
	// system roots. An absolute path; the runtime checks at create that
	// it exists and holds certificates.
	UpstreamCAFile string `json:"upstream_ca_file,omitempty"`
	// Credentials are secrets the filter injects into the inspected
	// requests of the endpoints each is bound to, in place of the
	// placeholders the agent sends: the agent never holds them.
	Credentials []Credential `json:"credentials,omitempty"`
	// Inference routes inference.local to a model backend; nil: the name
	// does not resolve.
	Inference *Inference `json:"inference,omitempty"`
}

// Credential is one secret the egress filter injects. Its value comes
// from File (a file owned by root and readable by nobody else, which the
// filter reads at start) or Env (a variable of the runtime's environment,
// passed to the filter's): never from a policy or an annotation.
type Credential struct {
	// Name is what placeholders call it: openshell:resolve:env:NAME or
	// clawrun:credential:NAME.
	Name      string               `json:"name"`
	File      string               `json:"file,omitempty"`
	Env       string               `json:"env,omitempty"`
	Endpoints []CredentialEndpoint `json:"endpoints"`
}

// CredentialEndpoint is where a credential may go: a host or wildcard
// pattern (as a policy names them) and its ports (default 443).
type CredentialEndpoint struct {
	Host  string `json:"host"`
	Ports []int  `json:"ports"`
}

// The values of egress.log_format: the decision log's own records, or
// OCSF events (see decisionlog.Format).
const (
	LogFormatClawrun = "clawrun"
	LogFormatOCSF    = "ocsf"
)

// DefaultEgressLogDir is where decision logs go unless egress.log_dir says.
const DefaultEgressLogDir = "/var/log/clawrun"

// ParseConfig parses and validates the runtime's configuration file. An
// empty file is the default configuration.
func ParseConfig(name string, data []byte) (*Config, error) {
	c := &Config{PolicyDir: DefaultPolicyDir}
	d := &decoder{file: name}
	if len(strings.TrimSpace(string(data))) > 0 {
		if root := d.decodeDocument(data); root != nil {
			d.config(root, c)
		}
	}
	if err := d.errs.asError(); err != nil {
		return nil, err
	}
	return c, nil
}

func (d *decoder) config(root *yaml.Node, c *Config) {
	d.mapping(root, "", []string{"floor_policy", "default_policy", "policy_dir", "egress"}, nil, func(key string, _, v *yaml.Node, sub string) {
		if key == "egress" {
			d.egress(v, sub, &c.Egress)
			return
		}
		s, ok := d.str(v, sub)
		if !ok {
			return
		}
		switch key {
		case "floor_policy":
			if strings.HasPrefix(s, "/") {
				clean, reason := cleanPath(s)
				if reason == "" && clean == "/" {
					reason = "not a file"
				}
				if reason != "" {
					d.fail(v, sub, "%s", reason)
					return
				}
				s = clean
			} else if err := ValidName(s); err != nil {
				d.fail(v, sub, "%v (or an absolute file path)", err)
				return
			}
			c.FloorPolicy = s
		case "default_policy":
			if err := ValidName(s); err != nil {
				d.fail(v, sub, "%v", err)
				return
			}
			c.DefaultPolicy = s
		case "policy_dir":
			clean, reason := cleanPath(s)
			if reason != "" {
				d.fail(v, sub, "%s", reason)
				return
			}
			c.PolicyDir = clean
		}
	})
}

func (d *decoder) egress(n *yaml.Node, field string, e *EgressConfig) {
	var inferenceNode *yaml.Node
	d.mapping(n, field, []string{"upstream_dns", "allowed_upstream_ranges", "log_dir", "log_format", "upstream_ca_file", "credentials", "inference"}, nil, func(key string, _, v *yaml.Node, sub string) {
		switch key {
		case "log_format":
			e.LogFormat = d.logFormat(v, sub)
			return
		case "inference":
			inferenceNode = v
			e.Inference = d.inference(v, sub)
			return
		case "credentials":
			e.Credentials = d.credentials(v, sub)
			return
		case "log_dir":
			e.LogDir = d.absPath(v, sub)
			return
		case "upstream_ca_file":
			e.UpstreamCAFile = d.absPath(v, sub)
			return
		}
		d.list(v, sub, "addresses", func(_ int, item *yaml.Node, isub string) {
			s, ok := d.str(item, isub)
			if !ok {
				return
			}
			if key == "upstream_dns" {
				ap, reason := normAddrPort(s)
				if reason != "" {
					d.fail(item, isub, "%s", reason)
				} else {
					e.UpstreamDNS = append(e.UpstreamDNS, ap)
				}
				return
			}
			if !strings.Contains(s, "/") {
				d.fail(item, isub, "%q: not a CIDR prefix such as 10.0.0.0/8", truncate(s))
				return
			}
			p, reason := normCIDR(s)
			if reason != "" {
				d.fail(item, isub, "%s", reason)
			} else {
				e.AllowedUpstreamRanges = append(e.AllowedUpstreamRanges, p.String())
			}
		})
	})
	// After the mapping: credentials may come after inference.
	d.checkInferenceCredential(inferenceNode, field+".inference", e.Inference, e.Credentials)
}

// logFormat reads egress.log_format.
func (d *decoder) logFormat(v *yaml.Node, field string) string {
	s, ok := d.str(v, field)
	if !ok {
		return ""
	}
	if s != LogFormatClawrun && s != LogFormatOCSF {
		d.fail(v, field, "%q: want %s or %s", truncate(s), LogFormatClawrun, LogFormatOCSF)
		return ""
	}
	return s
}

// absPath reads an absolute path, cleaned ("" when it is not one).
func (d *decoder) absPath(v *yaml.Node, field string) string {
	s, ok := d.str(v, field)
	if !ok {
		return ""
	}
	if !strings.HasPrefix(s, "/") {
		d.fail(v, field, "%q: must be an absolute path", truncate(s))
		return ""
	}
	return path.Clean(s)
}

// normAddrPort accepts "IP:PORT", "[IPv6]:PORT" or a bare IP (port 53).
func normAddrPort(s string) (string, string) {
	if a, err := netip.ParseAddr(s); err == nil && a.Zone() == "" {
		return netip.AddrPortFrom(a, 53).String(), ""
	}
	ap, err := netip.ParseAddrPort(s)
	if err != nil || ap.Addr().Zone() != "" {
		return "", fmt.Sprintf("%q: not an IP:PORT address such as 1.1.1.1:53", truncate(s))
	}
	if ap.Port() == 0 {
		return "", fmt.Sprintf("%q: port 0 is not allowed", truncate(s))
	}
	return ap.String(), ""
}

// PolicyFile is where a named policy lives: PolicyDir/NAME.yaml.
func (c *Config) PolicyFile(name string) (string, error) {
	if err := ValidName(name); err != nil {
		return "", err
	}
	dir := c.PolicyDir
	if dir == "" {
		dir = DefaultPolicyDir
	}
	return filepath.Join(dir, name+".yaml"), nil
}
