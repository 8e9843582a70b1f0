package policy

import (
	"fmt"
	"strings"
)

// ReadFunc reads a file; os.ReadFile in the runtime, a map in tests. It
// keeps this package free of file access.
type ReadFunc func(path string) ([]byte, error)

// LoadNamed returns the policy a name designates: a preset if there is one
// of that name (presets cannot be shadowed, so "agent-default" means the
// same on every host), else the file c.PolicyFile(name). Use it for names
// from annotations: it never accepts a path.
func (c *Config) LoadNamed(name string, read ReadFunc) (*Policy, error) {
	if err := ValidName(name); err != nil {
		return nil, err
	}
	if p, ok := Preset(name); ok {
		return p, nil
	}
	file, err := c.PolicyFile(name)
	if err != nil {
		return nil, err
	}
	data, err := read(file)
	if err != nil {
		return nil, fmt.Errorf("policy %q: %w", name, err)
	}
	return Parse(name, data)
}

// LoadFloor returns the configured floor policy, or nil if there is none.
// floor_policy may also be an absolute path, read as it is: the config
// file is the administrator's, unlike annotations.
func (c *Config) LoadFloor(read ReadFunc) (*Policy, error) {
	switch {
	case c.FloorPolicy == "":
		return nil, nil
	case strings.HasPrefix(c.FloorPolicy, "/"):
		data, err := read(c.FloorPolicy)
		if err != nil {
			return nil, fmt.Errorf("floor policy: %w", err)
		}
		return Parse(c.FloorPolicy, data)
	}
	return c.LoadNamed(c.FloorPolicy, read)
}
