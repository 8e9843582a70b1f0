package policy

import (
	"slices"

	"go.yaml.in/yaml/v3"
)

// Parse parses and validates one policy document: YAML, or JSON (which is
// YAML). name identifies the document in errors and becomes Policy.Name. On
// failure the error is an ErrorList holding every problem found, each with
// its line and field path.
func Parse(name string, data []byte) (*Policy, error) {
	d := &decoder{file: name}
	p := newPolicy(name)
	if root := d.decodeDocument(data); root != nil {
		d.policy(root, p)
		d.includes(root, p) // clawrun.include: include.go
	}
	if err := d.errs.asError(); err != nil {
		return nil, err
	}
	p.Warnings = d.warns
	return p, nil
}

// newPolicy is a policy with every default set: version 1, best_effort,
// the agent seccomp profile, both Landlock scopes.
func newPolicy(name string) *Policy {
	return &Policy{
		Name:     name,
		Version:  1,
		Landlock: Landlock{Compatibility: BestEffort},
		Clawrun: Extensions{
			Seccomp:  SeccompSettings{Profile: ProfileAgent},
			Landlock: LandlockSettings{ScopeSignals: true, ScopeAbstractUnix: true},
		},
	}
}

var topKeys = []string{"version", "filesystem_policy", "landlock", "process", "network_policies", "network_middlewares", "clawrun"}

func (d *decoder) policy(root *yaml.Node, p *Policy) {
	var clawrunLandlock *yaml.Node
	d.mapping(root, "", topKeys, nil, func(key string, k, v *yaml.Node, sub string) {
		switch key {
		case "version":
			if n, ok := d.integer(v, sub); ok && n != 1 {
				d.fail(v, sub, "version %d is not supported; the only version is 1", n)
			}
		case "filesystem_policy":
			if d.section(v, sub) {
				p.HasFilesystem = true
				d.filesystem(k, v, sub, &p.FilesystemPolicy)
			}
		case "landlock":
			d.mapping(v, sub, []string{"compatibility"}, nil, func(_ string, _, v *yaml.Node, sub string) {
				if s, ok := d.enum(v, sub, compats...); ok {
					p.Landlock.Compatibility = Compatibility(s)
				}
			})
		case "process":
			d.mapping(v, sub, []string{"run_as_user", "run_as_group"}, nil, func(key string, _, v *yaml.Node, sub string) {
				s, ok := d.str(v, sub)
				if !ok {
					return
				}
				id, reason := normIdentity(s)
				if reason != "" {
					d.fail(v, sub, "%s", reason)
				} else if key == "run_as_user" {
					p.Process.RunAsUser = id
				} else {
					p.Process.RunAsGroup = id
				}
			})
		case "network_policies":
			if d.section(v, sub) {
				p.HasNetwork = true
				p.NetworkPolicies = d.networkPolicies(v, sub)
			}
		case "network_middlewares":
			// OpenShell's middlewares rewrite traffic inside its proxy;
			// clawrun has no such proxy. Accepting them keeps OpenShell
			// policies loadable, and the warning says they do nothing.
			d.warn(k, sub, "accepted but not enforced by clawrun")
		case "clawrun":
			clawrunLandlock = d.extensions(v, sub, &p.Clawrun)
		}
	})
	if clawrunLandlock != nil && !p.HasFilesystem {
		d.fail(clawrunLandlock, "clawrun.landlock", "has no effect without a filesystem_policy section, whose Landlock layer it configures")
	}
}

// section refuses a null top-level section: "filesystem_policy:" alone
// could mean "absent" (no confinement) or "empty" (deny every file), and
// the difference is too large to guess.
func (d *decoder) section(v *yaml.Node, field string) bool {
	if isNull(resolve(v)) {
		d.fail(v, field, "is null; give a mapping (an empty one is {}) or remove the key")
		return false
	}
	return true
}

// enum reads a string that must be one of valid.
func (d *decoder) enum(v *yaml.Node, field string, valid ...string) (string, bool) {
	s, ok := d.str(v, field)
	if !ok {
		return "", false
	}
	if reason := oneOf(s, valid...); reason != "" {
		d.fail(v, field, "%s", reason)
		return "", false
	}
	return s, true
}

type pathEntry struct {
	path  string
	node  *yaml.Node
	field string
}

// filesystem reads filesystem_policy; errors about the whole section are
// reported on the line of its key.
func (d *decoder) filesystem(keyNode, n *yaml.Node, field string, fs *Filesystem) {
	var ro, rw []pathEntry
	total := 0
	d.mapping(n, field, []string{"read_only", "read_write", "include_workdir"}, nil, func(key string, _, v *yaml.Node, sub string) {
		if key == "include_workdir" {
			fs.IncludeWorkdir, _ = d.boolean(v, sub)
			return
		}
		d.list(v, sub, "paths", func(_ int, item *yaml.Node, isub string) {
			total++
			s, ok := d.str(item, isub)
			if !ok {
				return
			}
			clean, reason := cleanFSPath(s)
			switch {
			case reason != "":
				d.fail(item, isub, "%s", reason)
			case key == "read_write" && clean == "/":
				d.fail(item, isub, "%q: read-write / is not allowed", s)
			case key == "read_only":
				ro = append(ro, pathEntry{clean, item, isub})
			default:
				rw = append(rw, pathEntry{clean, item, isub})
			}
		})
	})
	if total > MaxFilesystemPaths {
		d.fail(keyNode, field, "%d paths; at most %d are allowed in read_only and read_write together", total, MaxFilesystemPaths)
	}
	roLine := map[string]int{}
	for _, e := range ro {
		if _, dup := roLine[e.path]; !dup {
			roLine[e.path] = line(e.node)
			fs.ReadOnly = append(fs.ReadOnly, e.path)
		}
	}
	rwSeen := map[string]bool{}
	for _, e := range rw {
		if l, both := roLine[e.path]; both {
			d.fail(e.node, e.field, "%q is also in read_only (line %d); list it in one of the two", e.path, l)
		} else if !rwSeen[e.path] {
			rwSeen[e.path] = true
			fs.ReadWrite = append(fs.ReadWrite, e.path)
		}
	}
	if total == 0 && !fs.IncludeWorkdir {
		d.warn(keyNode, field, "lists no paths: every file access will be denied")
	}
}

func (d *decoder) extensions(n *yaml.Node, field string, x *Extensions) (landlockKey *yaml.Node) {
	d.mapping(n, field, []string{"seccomp", "landlock", "include"}, nil, func(key string, k, v *yaml.Node, sub string) {
		if key == "include" {
			return // read and merged by includes (include.go)
		}
		if key == "seccomp" {
			d.mapping(v, sub, []string{"profile", "deny_syscalls"}, nil, func(key string, _, v *yaml.Node, sub string) {
				if key == "profile" {
					if s, ok := d.enum(v, sub, profiles...); ok {
						x.Seccomp.Profile = s
					}
					return
				}
				var names []string
				d.list(v, sub, "syscall names", func(_ int, item *yaml.Node, isub string) {
					if s, ok := d.str(item, isub); ok {
						if reason := checkSyscall(s); reason != "" {
							d.fail(item, isub, "%s", reason)
						} else {
							names = append(names, s)
						}
					}
				})
				x.Seccomp.DenySyscalls = sortedUnique(names)
			})
			return
		}
		landlockKey = k
		d.mapping(v, sub, []string{"scope_signals", "scope_abstract_unix", "tcp_bind", "tcp_connect"}, nil, func(key string, _, v *yaml.Node, sub string) {
			switch key {
			case "scope_signals":
				x.Landlock.ScopeSignals, _ = d.boolean(v, sub)
			case "scope_abstract_unix":
				x.Landlock.ScopeAbstractUnix, _ = d.boolean(v, sub)
			case "tcp_bind":
				x.Landlock.TCPBind = d.tcpPorts(v, sub, true)
			case "tcp_connect":
				x.Landlock.TCPConnect = d.tcpPorts(v, sub, false)
			}
		})
	})
	return landlockKey
}

// tcpPorts reads clawrun.landlock.tcp_bind or tcp_connect. An empty list is
// refused: nil means "no restriction" and an empty list would become nil
// in the Plan's JSON (omitempty), silently turning "no TCP" into "any TCP".
// Port 0 is accepted for bind only, where it lets the agent bind an
// ephemeral port.
func (d *decoder) tcpPorts(n *yaml.Node, field string, bind bool) []uint16 {
	var ports []uint16
	bad := false
	ok := d.list(n, field, "ports", func(_ int, item *yaml.Node, isub string) {
		p, ok := d.integer(item, isub)
		if !ok {
			bad = true
			return
		}
		if reason := checkTCPPort(p, bind); reason != "" {
			d.fail(item, isub, "%s", reason)
			bad = true
			return
		}
		ports = append(ports, uint16(p))
	})
	if ok && !bad && len(ports) == 0 {
		d.fail(n, field, "must list at least one port; remove the key to leave TCP to the egress filter")
	}
	return sortedUnique(ports)
}

func checkTCPPort(p int64, bind bool) string {
	if bind && p == 0 {
		return ""
	}
	return checkPort(p)
}

// sortedUnique returns the sorted distinct elements, nil for none.
func sortedUnique[T int | uint16 | string](xs []T) []T {
	if len(xs) == 0 {
		return nil
	}
	out := slices.Clone(xs)
	slices.Sort(out)
	return slices.Compact(out)
}
