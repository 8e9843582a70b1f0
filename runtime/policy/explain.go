package policy

import (
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/clawrun/clawrun/runtime/policy/hostname"
)

// ExplainFacts are what the runtime does to every confined container on
// top of the policy's own fields. The caller passes them in, so that this
// package stays free of the seccomp and runtime packages.
type ExplainFacts struct {
	// SeccompDenied are the calls the agent profile denies with EPERM
	// (seccomp.AgentDenied).
	SeccompDenied []string
	// SeccompRules describe the agent profile's rules that depend on a
	// call's arguments, one sentence each.
	SeccompRules []string
	// RefusedCapabilities make the creation of a confined container fail;
	// DroppedCapabilities are removed from it.
	RefusedCapabilities []string
	DroppedCapabilities []string
	// Filter reads a Plan's network layers as the egress filter does
	// (rules.ExplainFilter): what its rules allow, and its warnings.
	// Explain fails on network policies without it.
	Filter func([]NetworkLayer) (NetworkFilter, []Warning)
	// Credentials are the config's egress.credentials: Explain names those
	// bound to each inspected endpoint.
	Credentials []Credential
	// RoutesInference: the config routes inference.local
	// (CompileOptions.RoutesInference).
	RoutesInference bool
}

// NetworkFilter answers for the egress filter's rules built from a Plan.
type NetworkFilter interface {
	// FloorAllowance is what every network layer but the last (the
	// floor's) allows of an endpoint host of the last layer on port.
	FloorAllowance(host string, port int) Allowance
}

// Allowance is what some network layers allow of an endpoint (a host
// pattern) on one port.
type Allowance struct {
	// All: every name of the host, Names: else only these names of a
	// wildcard host; neither: nothing.
	All   bool
	Names []string
	// Only are the binaries conditions of the entries that allow it; none
	// when an entry without binaries does.
	Only []Condition
}

// Condition is one network_policies entry's binaries.
type Condition struct {
	Policy   string
	Binaries []string
}

// Explanation is what an agent may do under a floor policy and a
// container policy together: the Plan Compile makes of them, and for the
// network what the egress filter's rules built from that Plan allow, for
// people to read: String renders it.
type Explanation struct {
	// Floor and Container name the policies ("" when absent); the caller
	// may say where each came from (a preset, a file) in the From fields.
	Floor         string `json:"floor,omitempty"`
	FloorFrom     string `json:"floor_from,omitempty"`
	Container     string `json:"container,omitempty"`
	ContainerFrom string `json:"container_from,omitempty"`
	// Files is the effective Landlock access; nil when no policy has a
	// filesystem_policy (files are not confined).
	Files *FileAccess `json:"files,omitempty"`
	// Network is the effective egress allow list; nil when no policy has
	// network_policies (egress is not filtered).
	Network *Egress `json:"network,omitempty"`
	// RunAsUser and RunAsGroup are "" when the spec's user is kept.
	RunAsUser  string `json:"run_as_user,omitempty"`
	RunAsGroup string `json:"run_as_group,omitempty"`
	// Seccomp is the agent profile (or none) and the extra denied calls.
	Seccomp SeccompPlan `json:"seccomp"`
	// The Landlock scopes, on if any layer asks (only with Files).
	ScopeSignals      bool `json:"scope_signals"`
	ScopeAbstractUnix bool `json:"scope_abstract_unix"`
	// TCPBind and TCPConnect are the only ports allowed by every layer
	// that restricts them; nil: not restricted.
	TCPBind    []uint16 `json:"tcp_bind,omitempty"`
	TCPConnect []uint16 `json:"tcp_connect,omitempty"`
	// Compatibility is hard_requirement if any policy asks for it; MinABI
	// is then the Landlock ABI the kernel must have (0: no Landlock layer).
	Compatibility Compatibility `json:"compatibility"`
	MinABI        int           `json:"min_abi,omitempty"`
	// FloorTakes says, one sentence each, what the container's policy
	// allows that the floor takes away (nil without a floor).
	FloorTakes []string `json:"floor_takes,omitempty"`
	// Warnings are the policies' warnings and the egress filter's.
	Warnings []Warning `json:"warnings,omitempty"`

	facts ExplainFacts
}

// FileAccess is the effective file access: what every Landlock layer
// allows. Paths are sorted, and a path is left out when a listed parent
// already grants it as much.
type FileAccess struct {
	ReadOnly  []string `json:"read_only,omitempty"`  // read and execute
	ReadWrite []string `json:"read_write,omitempty"` // every file right
	// Workdir is true when every Landlock layer adds the working
	// directory read-write (include_workdir in each policy that confines
	// files); otherwise it has only what the layers' paths give it.
	Workdir bool `json:"include_workdir,omitempty"`
	// WorkdirReadOnly is true when the layers together leave the working
	// directory read-only (a policy adds it read-write, a floor's paths
	// grant it read-only) and no listed path already says so.
	WorkdirReadOnly bool `json:"workdir_read_only,omitempty"`
	// TrustDir is the directory every layer reads because the egress
	// filter terminates TLS (Plan.TrustDir); "" when it does not.
	TrustDir string `json:"trust_dir,omitempty"`
}

// Egress is the effective egress allow list: the container policy's
// entries as far as the floor allows them (or the only policy's).
type Egress struct {
	Entries []EgressEntry `json:"entries"`
	// Binaries is true when some allowed endpoint is allowed only to
	// certain executables (by its own entry's binaries or the floor's).
	Binaries bool `json:"binaries,omitempty"`
}

// EgressEntry is one network_policies entry.
type EgressEntry struct {
	Key       string           `json:"key"`
	Name      string           `json:"name,omitempty"`
	Source    string           `json:"source"`
	Endpoints []EgressEndpoint `json:"endpoints"`
	Binaries  []string         `json:"binaries,omitempty"`
}

// EgressEndpoint is a host and its ports, with what qualifies them.
type EgressEndpoint struct {
	Host  string   `json:"host"`
	Ports []int    `json:"ports"`
	Notes []string `json:"notes,omitempty"`
	// Credentials name the configured credentials the filter may inject
	// into the endpoint's requests (inspected endpoints only).
	Credentials []string `json:"credentials,omitempty"`
}

// Landlock ABIs and the Linux release that brought them.
var abiKernel = map[int]string{1: "5.13", 4: "6.7", 6: "6.12"}

// explainWorkdir stands for the container's working directory, which
// explain does not know: Explain compiles with it and reads it back from
// the Plan's layers. No policy names such a path.
const explainWorkdir = "/<the container's working directory>"

// Explain renders what an agent may do under floor and container (either
// may be nil): it compiles them as the runtime does, and fails where
// Compile would.
func Explain(floor, container *Policy, facts ExplainFacts) (*Explanation, error) {
	plan, err := Compile(floor, container, CompileOptions{Workdir: explainWorkdir, RoutesInference: facts.RoutesInference})
	if err != nil {
		return nil, err
	}
	e := &Explanation{Compatibility: BestEffort, Seccomp: SeccompPlan{Profile: ProfileNone}, facts: facts}
	if floor != nil {
		e.Floor = floor.Name
	}
	if container != nil {
		e.Container = container.Name
	}
	if plan == nil {
		return e, nil
	}
	e.Compatibility = plan.Compatibility
	e.Seccomp = SeccompPlan{Profile: plan.Seccomp.Profile, Deny: slices.Clone(plan.Seccomp.Deny)}
	e.RunAsUser, e.RunAsGroup = plan.RunAsUser, plan.RunAsGroup
	e.Warnings = slices.Clone(plan.Warnings)
	if len(plan.Layers) > 0 {
		e.explainLandlock(plan.Layers)
		e.Files.TrustDir = plan.TrustDir
	}
	var filter NetworkFilter
	if len(plan.Network) > 0 {
		if facts.Filter == nil {
			return nil, fmt.Errorf("policy: explaining network policies needs the egress filter")
		}
		var warns []Warning
		filter, warns = facts.Filter(plan.Network)
		e.Warnings = append(e.Warnings, warns...)
		e.Network = explainNetwork(plan.Network[len(plan.Network)-1], len(plan.Network) > 1, filter, facts.Credentials)
	}
	if floor != nil && container != nil {
		e.FloorTakes = e.floorTakes(plan, floor, container, filter)
	}
	return e, nil
}

// explainLandlock fills the files, scopes, TCP ports and ABI from the
// Plan's Landlock layers, which the kernel stacks: an access is allowed
// only where every layer allows it, and a scope applies if any layer
// sets it.
func (e *Explanation) explainLandlock(layers []Layer) {
	e.Files = effectiveFiles(layers)
	for _, l := range layers {
		e.ScopeSignals = e.ScopeSignals || l.ScopeSignals
		e.ScopeAbstractUnix = e.ScopeAbstractUnix || l.ScopeAbstractUnix
		e.TCPBind = intersectPorts(e.TCPBind, l.TCPBind)
		e.TCPConnect = intersectPorts(e.TCPConnect, l.TCPConnect)
	}
	if e.Compatibility == HardRequirement {
		e.MinABI = 1
		if e.TCPBind != nil || e.TCPConnect != nil {
			e.MinABI = 4
		}
		if e.ScopeSignals || e.ScopeAbstractUnix {
			e.MinABI = 6
		}
	}
}

// intersectPorts combines two Landlock port lists, nil meaning "any port".
func intersectPorts(a, b []uint16) []uint16 {
	switch {
	case a == nil:
		return slices.Clone(b)
	case b == nil:
		return a
	}
	out := []uint16{}
	for _, p := range a {
		if slices.Contains(b, p) {
			out = append(out, p)
		}
	}
	return out
}

// Access levels of a path under one Landlock layer: read-write rights
// include read-only ones, so access levels are ordered.
type level int

const (
	noAccess level = iota
	readOnly
	readWrite
)

func (l level) String() string {
	return [...]string{"no access", "read-only", "read-write"}[l]
}

// under reports whether path is dir or inside it.
func under(path, dir string) bool {
	return path == dir || dir == "/" || strings.HasPrefix(path, dir+"/")
}

// levelAt is what a layer allows at path: Landlock grants the union of the
// rights of every rule on the path or one of its parents. strict leaves
// out the rule on path itself.
func levelAt(l Layer, path string, strict bool) level {
	best := noAccess
	for _, set := range []struct {
		paths []string
		lvl   level
	}{{l.ReadOnly, readOnly}, {l.ReadWrite, readWrite}} {
		for _, d := range set.paths {
			if under(path, d) && !(strict && d == path) && set.lvl > best {
				best = set.lvl
			}
		}
	}
	return best
}

// effectiveFiles intersects the layers. Access only grows down a path and
// only changes at a listed path, so the listed paths are the only places
// to look: each is shown where every layer together allows more than at
// its parent. The working directory is shown apart (Workdir) when every
// layer makes it read-write.
func effectiveFiles(layers []Layer) *FileAccess {
	var paths []string
	for _, l := range layers {
		paths = append(paths, l.ReadOnly...)
		paths = append(paths, l.ReadWrite...)
	}
	fa := &FileAccess{}
	for _, path := range sortedUnique(paths) {
		at, parent := readWrite, readWrite
		for _, l := range layers {
			at = min(at, levelAt(l, path, false))
			parent = min(parent, levelAt(l, path, true))
		}
		switch {
		case at <= parent:
		case path == explainWorkdir:
			fa.Workdir, fa.WorkdirReadOnly = at == readWrite, at == readOnly
		case at == readWrite:
			fa.ReadWrite = append(fa.ReadWrite, path)
		default:
			fa.ReadOnly = append(fa.ReadOnly, path)
		}
	}
	return fa
}

// withoutWorkdir is a layer without the working directory.
func withoutWorkdir(l Layer) Layer {
	del := func(p string) bool { return p == explainWorkdir }
	l.ReadOnly = slices.DeleteFunc(slices.Clone(l.ReadOnly), del)
	l.ReadWrite = slices.DeleteFunc(slices.Clone(l.ReadWrite), del)
	return l
}

func hasWorkdir(l Layer) bool {
	return slices.Contains(l.ReadWrite, explainWorkdir)
}

func binaryList(bs []Binary) []string {
	paths := make([]string, len(bs))
	for i, b := range bs {
		paths[i] = b.Path
	}
	return paths
}

// conditionNotes say which floor entries restrict an endpoint to their
// binaries.
func conditionNotes(only []Condition) []string {
	var notes []string
	for _, c := range only {
		notes = append(notes, fmt.Sprintf("the floor's %s allows it only for %s", c.Policy, strings.Join(c.Binaries, ", ")))
	}
	return uniqueStrings(notes)
}

// explainNetwork lists the endpoints of the last network layer (own: the
// container's policy, or the floor alone), port by port as far as the
// layers before it allow them (narrowed: there are such layers).
func explainNetwork(own NetworkLayer, narrowed bool, filter NetworkFilter, creds []Credential) *Egress {
	eg := &Egress{Entries: []EgressEntry{}}
	for _, key := range sortedKeys(own.Policies) {
		np := own.Policies[key]
		entry := EgressEntry{Key: key, Source: own.Source, Binaries: binaryList(np.Binaries)}
		if len(entry.Binaries) == 0 {
			entry.Binaries = nil
		}
		if np.Name != key {
			entry.Name = np.Name
		}
		for _, ep := range np.Endpoints {
			notes := endpointNotes(ep)
			bound := injectedCredentials(ep, creds)
			if len(bound) > 0 {
				notes = append(notes, "credentials injected in place of their placeholders: "+strings.Join(bound, ", "))
			}
			if !narrowed {
				entry.Endpoints = append(entry.Endpoints, EgressEndpoint{Host: ep.Host, Ports: slices.Clone(ep.Ports), Notes: notes, Credentials: bound})
				continue
			}
			var ports []int
			for _, port := range ep.Ports {
				a := filter.FloorAllowance(ep.Host, port)
				switch {
				case a.All:
					ports = append(ports, port)
				case len(a.Names) > 0:
					// Listed apart: only some of the wildcard's names.
					n := append(slices.Clone(notes), "only "+strings.Join(a.Names, ", ")+" (the floor allows no other name)")
					entry.Endpoints = append(entry.Endpoints, EgressEndpoint{Host: ep.Host, Ports: []int{port}, Notes: append(n, conditionNotes(a.Only)...), Credentials: bound})
					eg.Binaries = eg.Binaries || len(a.Only) > 0
					continue
				default:
					continue
				}
				notes = append(notes, conditionNotes(a.Only)...)
				eg.Binaries = eg.Binaries || len(a.Only) > 0
			}
			if len(ports) > 0 {
				entry.Endpoints = append(entry.Endpoints, EgressEndpoint{Host: ep.Host, Ports: ports, Notes: uniqueStrings(notes), Credentials: bound})
			}
		}
		if len(entry.Endpoints) > 0 {
			eg.Entries = append(eg.Entries, entry)
			eg.Binaries = eg.Binaries || len(entry.Binaries) > 0
		}
	}
	return eg
}

// injectedCredentials names the credentials bound to an inspected
// endpoint; the filter injects none into what it does not inspect.
func injectedCredentials(ep Endpoint, creds []Credential) []string {
	if !ep.Inspected() {
		return nil
	}
	return BoundCredentials(creds, ep.Host, ep.Ports)
}

func uniqueStrings(s []string) []string {
	var out []string
	for _, x := range s {
		if !slices.Contains(out, x) {
			out = append(out, x)
		}
	}
	return out
}

// endpointNotes are an endpoint's qualifications, in plain words.
func endpointNotes(ep Endpoint) []string {
	var notes []string
	if hostname.IsWildcard(ep.Host) {
		notes = append(notes, fmt.Sprintf("one label before .%s, not %s itself", ep.Host[2:], ep.Host[2:]))
	}
	if ep.Protocol == "tcp" {
		notes = append(notes, "any TCP (reached through a synthetic address)")
	}
	if ep.Enforcement == "audit" {
		notes = append(notes, "audit: what its other conditions would deny is allowed and logged")
	}
	switch ruled := len(ep.RequestFields()) > 0; {
	case ep.Inspected() && ruled:
		notes = append(notes, "inspected: its TLS is decrypted with the container's CA and every request checked against its request rules")
	case ep.Inspected():
		notes = append(notes, "inspected: its TLS is decrypted with the container's CA; every request must be for this name")
	case ruled:
		notes = append(notes, "request rules: checked on plain HTTP; tls: skip, so TLS to it is denied")
	}
	if len(ep.AllowedIPs) > 0 {
		notes = append(notes, "may resolve to "+strings.Join(ep.AllowedIPs, ", "))
	}
	return notes
}

// floorTakes lists what the container's policy asks for and the Plan
// does not give it, field by field: what the floor takes away.
func (e *Explanation) floorTakes(plan *Plan, floor, container *Policy, filter NetworkFilter) []string {
	out := []string{}
	add := func(format string, args ...any) { out = append(out, fmt.Sprintf(format, args...)) }
	// Compile puts the floor's layer first, the container's last.
	var fl, cl *Layer
	if floor.HasFilesystem {
		fl = &plan.Layers[0]
	}
	if container.HasFilesystem {
		cl = &plan.Layers[len(plan.Layers)-1]
	}
	switch {
	case fl != nil && cl == nil:
		add("Files: %s does not confine files; the floor's filesystem_policy does.", container.Name)
	case fl != nil:
		out = append(out, floorTakesFiles(withoutWorkdir(*fl), withoutWorkdir(*cl), container.Name)...)
		if hasWorkdir(*cl) && !hasWorkdir(*fl) {
			add("Working directory: %s adds it read-write; the floor allows only what its own paths cover of it.", container.Name)
		}
	}

	switch {
	case floor.HasNetwork && !container.HasNetwork:
		add("Network: %s does not filter egress; the floor allows only its own network_policies.", container.Name)
	case floor.HasNetwork:
		out = append(out, floorTakesNetwork(plan.Network[len(plan.Network)-1], filter)...)
	}

	if plan.RunAsUser != "" && container.Process.RunAsUser == "" {
		add("User: the floor makes the agent run as %s.", plan.RunAsUser)
	}
	if plan.RunAsGroup != "" && container.Process.RunAsGroup == "" {
		add("Group: the floor makes the agent run as group %s.", plan.RunAsGroup)
	}
	if plan.Seccomp.Profile != ProfileNone && container.Clawrun.Seccomp.Profile == ProfileNone {
		add("System calls: %s asks for no agent seccomp profile; the floor keeps it.", container.Name)
	}
	var extra []string
	for _, s := range plan.Seccomp.Deny {
		if !slices.Contains(container.Clawrun.Seccomp.DenySyscalls, s) {
			extra = append(extra, s)
		}
	}
	if len(extra) > 0 {
		add("System calls: the floor also denies %s.", strings.Join(extra, ", "))
	}
	if plan.Compatibility == HardRequirement && container.Landlock.Compatibility != HardRequirement {
		add("Enforcement: the floor is hard_requirement: any gap in enforcement fails the container's creation.")
	}
	if fl != nil {
		out = append(out, e.floorTakesLandlock(cl)...)
	}
	return out
}

// floorTakesFiles compares the container's Landlock layer with what the
// floor's leaves of it.
func floorTakesFiles(fl, cl Layer, container string) []string {
	var out []string
	// Paths the floor cuts down the same way are reported together.
	type cut struct{ had, left level }
	var order []cut
	groups := map[cut][]string{}
	var partial []string
	for _, set := range []struct {
		paths []string
		lvl   level
	}{{cl.ReadOnly, readOnly}, {cl.ReadWrite, readWrite}} {
		for _, path := range set.paths {
			f := levelAt(fl, path, false)
			// A path its own parent already grants is reported with
			// the parent.
			if f >= set.lvl || levelAt(cl, path, true) >= set.lvl {
				continue
			}
			var inside []string
			for _, d := range append(slices.Clone(fl.ReadOnly), fl.ReadWrite...) {
				if d != path && under(d, path) && min(levelAt(fl, d, false), set.lvl) > f {
					inside = append(inside, fmt.Sprintf("%s (%s)", d, min(levelAt(fl, d, false), set.lvl)))
				}
			}
			if len(inside) > 0 {
				slices.Sort(inside)
				partial = append(partial, fmt.Sprintf("Files: %s is %s in %s; the floor allows %s there, and more only inside it: %s.",
					path, set.lvl, container, f, strings.Join(inside, ", ")))
				continue
			}
			c := cut{set.lvl, f}
			if _, ok := groups[c]; !ok {
				order = append(order, c)
			}
			groups[c] = append(groups[c], path)
		}
	}
	for _, c := range order {
		out = append(out, fmt.Sprintf("Files %s in %s, %s under the floor: %s.", c.had, container, c.left, strings.Join(groups[c], " ")))
	}
	return append(out, partial...)
}

// floorTakesNetwork lists the ports of the container's endpoints that
// the floor allows only for some names, or not at all.
func floorTakesNetwork(own NetworkLayer, filter NetworkFilter) []string {
	var out, denied []string
	for _, key := range sortedKeys(own.Policies) {
		for _, ep := range own.Policies[key].Endpoints {
			for _, port := range ep.Ports {
				a := filter.FloorAllowance(ep.Host, port)
				switch {
				case a.All:
				case len(a.Names) > 0:
					out = append(out, fmt.Sprintf("Network: %s:%d (%s) only for %s.", ep.Host, port, key, strings.Join(a.Names, ", ")))
				default:
					denied = append(denied, fmt.Sprintf("%s:%d (%s)", ep.Host, port, key))
				}
			}
		}
	}
	if len(denied) > 0 {
		out = append(out, fmt.Sprintf("Network denied by the floor: %s.", strings.Join(denied, ", ")))
	}
	return out
}

// floorTakesLandlock compares the container's scopes and TCP ports
// (cl: nil when it has no Landlock layer) with the Plan's.
func (e *Explanation) floorTakesLandlock(cl *Layer) []string {
	var out []string
	var bind, connect []uint16
	if cl != nil {
		bind, connect = cl.TCPBind, cl.TCPConnect
	}
	if e.ScopeSignals && (cl == nil || !cl.ScopeSignals) {
		out = append(out, "Signals: the floor confines them to the agent's own sandbox.")
	}
	if e.ScopeAbstractUnix && (cl == nil || !cl.ScopeAbstractUnix) {
		out = append(out, "Abstract unix sockets: the floor confines them to the agent's own sandbox.")
	}
	for _, f := range []struct {
		what       string
		plan, cont []uint16
	}{{"TCP bind", e.TCPBind, bind}, {"TCP connect", e.TCPConnect, connect}} {
		switch {
		case f.plan == nil:
		case f.cont == nil:
			out = append(out, fmt.Sprintf("%s: the floor allows only ports %s.", f.what, portList(f.plan)))
		default:
			var lost []uint16
			for _, p := range f.cont {
				if !slices.Contains(f.plan, p) {
					lost = append(lost, p)
				}
			}
			if len(lost) > 0 {
				out = append(out, fmt.Sprintf("%s: ports %s are denied by the floor.", f.what, portList(lost)))
			}
		}
	}
	return out
}

func portList(ports []uint16) string {
	s := make([]string, len(ports))
	for i, p := range ports {
		s[i] = strconv.Itoa(int(p))
	}
	return strings.Join(s, ", ")
}

func intPorts(ports []int) string {
	s := make([]string, len(ports))
	for i, p := range ports {
		s[i] = strconv.Itoa(p)
	}
	return strings.Join(s, ",")
}

// explainWidth is where String wraps lists.
const explainWidth = 78

// writer builds String's output: headings, indented lines and wrapped lists.
type writer struct{ strings.Builder }

func (w *writer) heading(s string) {
	if w.Len() > 0 {
		w.WriteString("\n")
	}
	w.WriteString(s + "\n")
}

func (w *writer) line(indent int, format string, args ...any) {
	w.wrap(indent, indent+2, fmt.Sprintf(format, args...))
}

// wrap writes text wrapped at explainWidth, continuation lines indented.
func (w *writer) wrap(first, rest int, text string) {
	pad := strings.Repeat(" ", first)
	col := first
	w.WriteString(pad)
	for i, word := range strings.Fields(text) {
		if i > 0 && col+1+len(word) > explainWidth {
			w.WriteString("\n" + strings.Repeat(" ", rest))
			col = rest
		} else if i > 0 {
			w.WriteString(" ")
			col++
		}
		w.WriteString(word)
		col += len(word)
	}
	w.WriteString("\n")
}

// String renders the explanation in plain language.
func (e *Explanation) String() string {
	w := &writer{}
	container, floor := withFrom(e.Container, e.ContainerFrom), withFrom(e.Floor, e.FloorFrom)
	switch {
	case e.Container != "" && e.Floor != "":
		w.line(0, "Policy %s, under the floor policy %s (the administrator's: a container's policy can narrow it, never widen it).", container, floor)
	case e.Container != "":
		w.line(0, "Policy %s, without a floor policy.", container)
	case e.Floor != "":
		w.line(0, "The floor policy %s alone (the container has no policy of its own).", floor)
	default:
		w.line(0, "No policy: the container runs unconfined, exactly as runc would run it.")
		return w.String()
	}
	e.writeFiles(w)
	e.writeNetwork(w)
	e.writeProcess(w)
	e.writeSeccomp(w)
	e.writeEnforcement(w)
	if len(e.Warnings) > 0 {
		w.heading("Warnings (accepted, but not enforced as written)")
		for _, warn := range e.Warnings {
			w.line(2, "%s", warn.String())
		}
	}
	if e.Floor != "" && e.Container != "" {
		w.heading(fmt.Sprintf("What the floor %s takes away from %s", e.Floor, e.Container))
		if len(e.FloorTakes) == 0 {
			w.line(2, "Nothing: %s stays within the floor.", e.Container)
		}
		for _, s := range e.FloorTakes {
			w.line(2, "- %s", s)
		}
	}
	return w.String()
}

func withFrom(name, from string) string {
	if from == "" {
		return name
	}
	return name + " (" + from + ")"
}

func (e *Explanation) writeFiles(w *writer) {
	w.heading("Files (Landlock)")
	f := e.Files
	if f == nil {
		w.line(2, "Not confined: no filesystem_policy. The container's own mounts and file permissions apply.")
		return
	}
	list := func(title string, paths []string) {
		w.line(2, "%s:", title)
		if len(paths) == 0 {
			w.line(4, "nothing")
			return
		}
		w.wrap(4, 4, strings.Join(paths, " "))
	}
	list("Read and execute", f.ReadOnly)
	list("Read, write, create, delete and execute", f.ReadWrite)
	if f.Workdir {
		w.line(2, "Also the container's working directory (process.cwd), read-write: include_workdir. A working directory of / is refused.")
	}
	if f.WorkdirReadOnly {
		w.line(2, "Also the container's working directory (process.cwd), read and execute only: include_workdir asks for read-write, another layer grants it read-only.")
	}
	if f.TrustDir != "" {
		w.line(2, "%s can be read in every layer, whatever the policies list: the runtime mounts the trust bundle of the egress filter's CA there, which inspected HTTPS needs.", f.TrustDir)
	}
	w.line(2, "Denied: every other path. The agent cannot read, list, write or execute anything not listed.")
	if len(f.ReadWrite) > 0 {
		w.line(2, "Read-write includes execute: the agent can run programs it writes there.")
	}
	w.line(2, "Not controlled by Landlock: metadata (stat, chmod, chown, timestamps); file ownership and modes still apply.")
}

func (e *Explanation) writeNetwork(w *writer) {
	w.heading("Network (egress filter)")
	if e.Network == nil {
		w.line(2, "Not filtered: no network_policies, so the agent reaches whatever the container's network reaches. (network_policies, clawrun.include or the run.clawrun.egress annotation turn the filter on; network_policies: {} denies all egress.)")
	} else {
		if len(e.Network.Entries) == 0 {
			w.line(2, "No destination is allowed: every connection is denied.")
		} else {
			w.line(2, "Only these destinations (host:ports):")
		}
		for _, entry := range e.Network.Entries {
			title := entry.Key
			if entry.Name != "" {
				title += ": " + entry.Name
			}
			if entry.Source != e.Container && e.Container != "" {
				title += ", from the floor"
			}
			w.line(4, "%s", title)
			for _, ep := range entry.Endpoints {
				text := ep.Host + ":" + intPorts(ep.Ports)
				if len(ep.Notes) > 0 {
					text += ": " + strings.Join(ep.Notes, "; ")
				}
				w.line(6, "%s", text)
			}
			if len(entry.Binaries) > 0 {
				w.line(6, "only for connections of %s (the process or an ancestor)", strings.Join(entry.Binaries, ", "))
			}
		}
		w.line(2, "Denied: every other name (NXDOMAIN, never asked upstream) and connection; UDP other than DNS, QUIC and ICMP; IP literals and TLS without a server name; loopback, link-local, private and CGNAT addresses unless allowed_ips opens them.")
		w.line(2, "Connections are matched on the TLS server name (SNI) or HTTP Host, and port: what they carry is not inspected (but the requests of inspected endpoints), so an allowed host is also a way out for data.")
		if e.Network.Binaries {
			e.writeBinaries(w)
		}
	}
	if e.TCPConnect != nil {
		w.line(2, "TCP connect (Landlock): only to ports %s.", portListOrNone(e.TCPConnect))
	}
	if e.TCPBind != nil {
		w.line(2, "TCP bind (Landlock): only ports %s.", portListOrNone(e.TCPBind))
	}
}

// writeBinaries says what "only for connections of" promises, and what
// it does not.
func (e *Explanation) writeBinaries(w *writer) {
	w.line(2, "Only for connections of an executable: every process that holds the connection's socket when it is decided runs that executable or descends from one that does; a socket no process holds, or whose holders cannot be told, is denied. Such names are resolved for those processes only, over TCP: a query over UDP is answered empty and truncated, so that the resolver asks again over TCP (a resolver that cannot, such as musl before 1.2.4, cannot resolve them); other processes get NXDOMAIN, and their queries never leave.")
	w.line(2, "This tells tools apart; it is not a boundary against code the agent chooses. An allowed executable that runs what it is given (a shell, python, node; git hooks and GIT_SSH_COMMAND; npm scripts), or that the agent starts with preload variables (LD_PRELOAD, LD_LIBRARY_PATH, LD_AUDIT, NODE_OPTIONS, BUN_OPTIONS, PYTHONPATH, PERL5OPT...) naming a file in any writable path, runs the agent's code as itself, and what it starts counts as it too. A socket can also change hands after the decision.")
	var closed, open []string
	if e.Seccomp.Profile == ProfileAgent {
		closed = append(closed, "the agent seccomp profile refuses injecting code into an allowed process already running (ptrace, process_vm_writev, pidfd_getfd) and running code without a file (memfd_create, execveat of a descriptor)")
	} else {
		open = append(open, "without the agent seccomp profile, a process of the same user can inject code into an allowed process already running (ptrace)")
	}
	if e.Files != nil {
		closed = append(closed, "Landlock refuses writing another process's memory through /proc/PID/mem, unless the policy makes /proc writable")
		open = append(open, "Landlock's execute right covers programs, not the libraries and scripts they load: a library in a read_write path loads")
	} else {
		open = append(open, "without a filesystem_policy, Landlock guards neither /proc/PID/mem nor where a library or script may come from")
	}
	if len(closed) > 0 {
		w.line(2, "Closed: %s.", strings.Join(closed, "; "))
	}
	w.line(2, "Open: %s.", strings.Join(open, "; "))
}

func portListOrNone(ports []uint16) string {
	if len(ports) == 0 {
		return "(none: no port at all)"
	}
	return portList(ports)
}

func (e *Explanation) writeProcess(w *writer) {
	w.heading("Process")
	switch {
	case e.RunAsUser != "":
		group := "the group the image gives that user"
		if e.RunAsGroup != "" {
			group = "group " + e.RunAsGroup
		}
		w.line(2, "Runs as user %s, %s (root is never allowed).", e.RunAsUser, group)
	case e.RunAsGroup != "":
		w.line(2, "Runs as the container's own user with group %s.", e.RunAsGroup)
	default:
		w.line(2, "Runs as the container's own user: no run_as_user. An image that runs as root runs the agent as root (within everything below); set process.run_as_user to prevent it.")
	}
	w.line(2, "no_new_privs: setuid programs and file capabilities grant nothing.")
	if len(e.facts.DroppedCapabilities) > 0 {
		w.line(2, "Capabilities removed: %s.", strings.Join(e.facts.DroppedCapabilities, ", "))
	}
	if len(e.facts.RefusedCapabilities) > 0 {
		w.line(2, "Refused: a container holding %s is not created.", strings.Join(e.facts.RefusedCapabilities, ", "))
	}
	if e.Files != nil {
		w.line(2, "Signals: %s", scopeText(e.ScopeSignals, "only to processes of its own sandbox (scope_signals)", "not scoped"))
		w.line(2, "Abstract unix sockets: %s", scopeText(e.ScopeAbstractUnix, "only those of its own sandbox (scope_abstract_unix)", "not scoped"))
	}
}

func scopeText(on bool, yes, no string) string {
	if on {
		return yes + "."
	}
	return no + "."
}

func (e *Explanation) writeSeccomp(w *writer) {
	if e.Seccomp.Profile == ProfileAgent {
		w.heading(`System calls (seccomp profile "agent", stacked on the container's own profile)`)
		if len(e.facts.SeccompDenied) > 0 {
			w.line(2, "Denied with EPERM:")
			w.wrap(4, 4, strings.Join(e.facts.SeccompDenied, " "))
		}
		for _, r := range e.facts.SeccompRules {
			w.line(2, "%s", r)
		}
	} else {
		w.heading("System calls (seccomp)")
		w.line(2, "Only the container's own seccomp profile: clawrun.seccomp.profile is none.")
	}
	if len(e.Seccomp.Deny) > 0 {
		w.line(2, "Also denied (clawrun.seccomp.deny_syscalls): %s.", strings.Join(e.Seccomp.Deny, ", "))
	}
}

func (e *Explanation) writeEnforcement(w *writer) {
	w.heading("Enforcement")
	if e.Files == nil {
		w.line(2, "%s: no Landlock layer, so the kernel's Landlock support does not matter.", e.Compatibility)
		return
	}
	if e.Compatibility == HardRequirement {
		w.line(2, "hard_requirement: the container is not created if the kernel lacks Landlock ABI %d (Linux %s or later), or if a listed path does not exist.", e.MinABI, abiKernel[e.MinABI])
		return
	}
	w.line(2, "best_effort: listed paths that do not exist are skipped, and a kernel without Landlock, or with an older ABI, enforces less (without Landlock, files are not confined at all). `clawrun state ID` reports what the kernel enforced.")
}
