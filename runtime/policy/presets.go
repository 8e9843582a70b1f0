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

// Presets are parsed when first named, one by one: every clawrun process
// (the container's init and the launcher included) would otherwise pay
// for all of them.
var (
	presetMu    sync.Mutex
	presetCache = map[string]*Policy{}
)

func loadPreset(name string) (*Policy, bool) {
	if ValidName(name) != nil {
		return nil, false
	}
	presetMu.Lock()
	defer presetMu.Unlock()
	if p, ok := presetCache[name]; ok {
		return p, true
	}
	data, err := presetFiles.ReadFile(path.Join("presets", name+".yaml"))
	if err != nil {
		return nil, false
	}
	// A preset may include others: parse without holding the lock.
	presetMu.Unlock()
	p, err := Parse(name, data)
	presetMu.Lock()
	if err != nil {
		panic("policy: preset " + name + ": " + err.Error())
	}
	presetCache[name] = p
	return p, true
}

// Preset returns a copy of the built-in policy with that name.
func Preset(name string) (*Policy, bool) {
	p, ok := loadPreset(name)
	if !ok {
		return nil, false
	}
	return p.Clone(), true
}

// PresetNames lists the built-in policies, sorted.
func PresetNames() []string {
	entries, err := presetFiles.ReadDir("presets")
	if err != nil {
		panic("policy: presets: " + err.Error())
	}
	var names []string
	for _, e := range entries {
		names = append(names, strings.TrimSuffix(e.Name(), ".yaml"))
	}
	slices.Sort(names)
	return names
}
