package policy

import (
	"fmt"
	"path"
	"slices"
	"strings"
	"sync"

	"go.yaml.in/yaml/v3"
)

// Inclusion: a policy names built-in network presets under clawrun.include,
//
//	clawrun:
//	  include: [github, pypi]
//
// and Parse adds their network_policies entries to the policy's own, as if
// they had been written there. Within one policy network entries add up,
// so the policy allows its own egress plus every included preset's; a
// policy without network_policies of its own now confines egress to what
// it includes. Included entries keep the preset's keys (a preset's keys are
// its name, or start with its name and "."), so that decision logs name
// the preset; a key the policy defines itself is an error, never a silent
// overwrite.
//
// Only network presets can be included: presets made of network_policies
// alone. Merging a filesystem, process or seccomp section would have to
// choose between union and intersection; policies that want both write
// their filesystem_policy themselves. Only built-in presets can be
// included, never files, so that Parse stays free of file access and a
// name means the same on every host.

const includeField = "clawrun.include"

// includable is a preset as seen by clawrun.include: its policy, or why it
// cannot be included.
type includable struct {
	policy *Policy
	reason string
}

// includables caches the presets parsed for inclusion, by name, apart
// from Preset's cache and only when named, so that parsing a preset that
// includes others never waits on itself. A preset that itself includes others is not a network
// preset, so this parse never resolves an include and cannot recurse.
var includables sync.Map // name -> includable

func loadIncludable(name string) (includable, bool) {
	if v, ok := includables.Load(name); ok {
		return v.(includable), true
	}
	if ValidName(name) != nil {
		return includable{}, false
	}
	data, err := presetFiles.ReadFile(path.Join("presets", name+".yaml"))
	if err != nil {
		return includable{}, false
	}
	inc := parseIncludable(name, data)
	includables.Store(name, inc)
	return inc, true
}

// parseIncludable parses a preset without resolving its own includes.
func parseIncludable(name string, data []byte) includable {
	d := &decoder{file: name}
	p := newPolicy(name)
	root := d.decodeDocument(data)
	if root != nil {
		d.policy(root, p)
	}
	if len(d.errs) > 0 || root == nil {
		return includable{reason: fmt.Sprintf("preset %q does not parse", name)}
	}
	var other []string
	for i := 0; i+1 < len(root.Content); i += 2 {
		if k := root.Content[i].Value; k != "version" && k != "network_policies" {
			other = append(other, k)
		}
	}
	switch {
	case len(other) > 0:
		return includable{reason: fmt.Sprintf("preset %q is not a network preset (it has %s); only presets made of network_policies alone can be included", name, strings.Join(other, ", "))}
	case !p.HasNetwork || len(p.NetworkPolicies) == 0:
		return includable{reason: fmt.Sprintf("preset %q has no network_policies", name)}
	}
	for key := range p.NetworkPolicies {
		if key != name && !strings.HasPrefix(key, name+".") {
			return includable{reason: fmt.Sprintf("preset %q: its network_policies key %q does not start with the preset's name", name, key)}
		}
	}
	return includable{policy: p}
}

// NetworkPresetNames lists the presets a policy can include, sorted.
func NetworkPresetNames() []string {
	entries, err := presetFiles.ReadDir("presets")
	if err != nil {
		panic("policy: presets: " + err.Error())
	}
	var names []string
	for _, e := range entries {
		name := strings.TrimSuffix(e.Name(), ".yaml")
		if inc, ok := loadIncludable(name); ok && inc.policy != nil {
			names = append(names, name)
		}
	}
	slices.Sort(names)
	return names
}

// lookupIncludable returns the network preset of that name, or why there
// is none to include.
func lookupIncludable(name string) (*Policy, string) {
	inc, ok := loadIncludable(name)
	switch {
	case !ok:
		return nil, fmt.Sprintf("unknown preset %q; the presets that can be included are %s (files in the policy directory cannot be)",
			truncate(name), strings.Join(NetworkPresetNames(), ", "))
	case inc.policy == nil:
		return nil, inc.reason
	}
	return inc.policy, ""
}

type includeRef struct {
	name   string
	node   *yaml.Node
	field  string
	policy *Policy
}

// includes reads clawrun.include from the document's root and merges the
// presets' network_policies into p. The walk of the clawrun section (in
// extensions) has already refused a malformed section; here only the
// include list itself is checked.
func (d *decoder) includes(root *yaml.Node, p *Policy) {
	_, section := mappingValue(root, "clawrun")
	key, list := mappingValue(section, "include")
	if key == nil {
		return
	}
	var refs []includeRef
	seen := map[string]int{}
	listed := d.list(list, includeField, "preset names", func(i int, item *yaml.Node, isub string) {
		name, ok := d.str(item, isub)
		if !ok {
			return
		}
		if first, dup := seen[name]; dup {
			d.fail(item, isub, "%q is already included (%s)", truncate(name), index(includeField, first))
			return
		}
		seen[name] = i
		inc, reason := lookupIncludable(name)
		if reason != "" {
			d.fail(item, isub, "%s", reason)
			return
		}
		refs = append(refs, includeRef{name: name, node: item, field: isub, policy: inc})
	})
	if listed && len(resolve(list).Content) == 0 {
		d.fail(key, includeField, "lists no presets; name network presets (%s) or remove the key", strings.Join(NetworkPresetNames(), ", "))
	}
	if len(refs) == 0 {
		return
	}
	// Lines of the policy's own network_policies keys, for collisions.
	own := map[string]int{}
	_, np := mappingValue(root, "network_policies")
	if np = resolve(np); np != nil && np.Kind == yaml.MappingNode {
		for i := 0; i+1 < len(np.Content); i += 2 {
			if k := resolve(np.Content[i]); k != nil {
				if _, dup := own[k.Value]; !dup {
					own[k.Value] = k.Line
				}
			}
		}
	}
	if p.NetworkPolicies == nil {
		p.NetworkPolicies = map[string]NetworkPolicy{}
	}
	p.HasNetwork = true
	brought := map[string]string{}
	for _, ref := range refs {
		for _, k := range sortedKeys(ref.policy.NetworkPolicies) {
			if l, clash := own[k]; clash {
				d.fail(ref.node, ref.field, "preset %q brings network_policies.%s, which this policy also defines (line %d); rename that entry", ref.name, k, l)
				continue
			}
			if other, clash := brought[k]; clash {
				d.fail(ref.node, ref.field, "preset %q brings network_policies.%s, which preset %q brings too", ref.name, k, other)
				continue
			}
			brought[k] = ref.name
			p.NetworkPolicies[k] = cloneNetwork(map[string]NetworkPolicy{k: ref.policy.NetworkPolicies[k]})[k]
		}
	}
}

// mappingValue returns the first key node named key in a mapping node and
// its value (nil, nil if n is not a mapping or has no such key).
func mappingValue(n *yaml.Node, key string) (*yaml.Node, *yaml.Node) {
	n = resolve(n)
	if n == nil || n.Kind != yaml.MappingNode {
		return nil, nil
	}
	for i := 0; i+1 < len(n.Content); i += 2 {
		if k := resolve(n.Content[i]); k != nil && k.Kind == yaml.ScalarNode && k.Value == key {
			return k, n.Content[i+1]
		}
	}
	return nil, nil
}
