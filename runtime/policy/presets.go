package policy

import (
	"embed"
	"path"
	"slices"
	"strings"
	"sync"
)

// Presets are embedded YAML documents parsed by Parse, so they obey the
// same rules as user policies; a test asserts each one parses.
//
//go:embed presets/*.yaml
var presetFiles embed.FS

// The presets are parsed on first use: every clawrun process (the
// container's init and the launcher included) would otherwise pay for it.
var presets = sync.OnceValue(loadPresets)

func loadPresets() map[string]*Policy {
	entries, err := presetFiles.ReadDir("presets")
	if err != nil {
		panic("policy: presets: " + err.Error())
	}
	out := map[string]*Policy{}
	for _, e := range entries {
		name := strings.TrimSuffix(e.Name(), ".yaml")
		data, err := presetFiles.ReadFile(path.Join("presets", e.Name()))
		if err != nil {
			panic("policy: preset " + name + ": " + err.Error())
		}
		p, err := Parse(name, data)
		if err != nil {
			panic("policy: preset " + name + ": " + err.Error())
		}
		out[name] = p
	}
	return out
}

// Preset returns a copy of the built-in policy with that name.
func Preset(name string) (*Policy, bool) {
	p, ok := presets()[name]
	return p.Clone(), ok
}

// PresetNames lists the built-in policies, sorted.
func PresetNames() []string {
	all := presets()
	names := make([]string, 0, len(all))
	for name := range all {
		names = append(names, name)
	}
	slices.Sort(names)
	return names
}
