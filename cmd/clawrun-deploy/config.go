package main

import (
	"fmt"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
)

// The edits of containerd's and k3s's configuration files. Each is a pure
// function of the file's text: installing twice gives what installing once
// gives, and uninstalling gives back the original bytes.

const (
	beginMarker = "# BEGIN clawrun-deploy (removed by clawrun-deploy uninstall)\n"
	endMarker   = "# END clawrun-deploy\n"
	// createdMarker heads a file the installer created: uninstall removes it.
	createdMarker = "# Created by clawrun-deploy: its uninstall removes this file.\n"
	// importsWas precedes the imports line the installer rewrote, with the
	// original line.
	importsWas = "# clawrun-deploy: imports was: "
	// addedImport ends the imports line the installer added.
	addedImport = " # added by clawrun-deploy"
	k3sBase     = "{{ template \"base\" . }}\n"
)

// handlerRoot is the runc shim's Root of the handlers: their containers'
// state goes to handlerRoot/<namespace>, apart from the node's runc's
// (/run/containerd/runc/<namespace>).
const handlerRoot = "/run/containerd/clawrun"

// handler is a CRI runtime handler: its name (a RuntimeClass's handler)
// and the runtime binary containerd's runc shim runs for it.
type handler struct {
	Name       string
	BinaryName string
}

var (
	versionRe = regexp.MustCompile(`(?m)^version[ \t]*=[ \t]*(\d+)[ \t]*(#.*)?$`)
	importsRe = regexp.MustCompile(`(?m)^imports[ \t]*=.*$`)
	// A one-line imports array: its entries.
	importsLineRe = regexp.MustCompile(`^imports\s*=\s*\[(.*)\]\s*(#.*)?$`)
	tableRe       = regexp.MustCompile(`(?m)^\s*\[`)
	rewrittenRe   = regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(importsWas) + `(.*)\nimports[ \t]*=.*$`)
)

// configVersion is the version of a containerd config (0 if it has none).
func configVersion(config string) (int, error) {
	m := versionRe.FindStringSubmatch(config)
	if m == nil {
		return 0, nil
	}
	v, err := strconv.Atoi(m[1])
	if err != nil {
		return 0, fmt.Errorf("version %q: %w", m[1], err)
	}
	return v, nil
}

// runtimeTables is the TOML of the handlers for a config version: 2
// (containerd 1.x, "io.containerd.grpc.v1.cri") or 3 (containerd 2.x).
func runtimeTables(version int, handlers []handler) (string, error) {
	var plugin string
	switch version {
	case 2:
		plugin = `"io.containerd.grpc.v1.cri"`
	case 3:
		plugin = `'io.containerd.cri.v1.runtime'`
	default:
		return "", fmt.Errorf("containerd config version %d: clawrun-deploy knows versions 2 and 3", version)
	}
	var b strings.Builder
	for i, h := range handlers {
		if i > 0 {
			b.WriteString("\n")
		}
		fmt.Fprintf(&b, `[plugins.%[1]s.containerd.runtimes.%[2]s]
  runtime_type = 'io.containerd.runc.v2'
  pod_annotations = ['run.clawrun.*']
  container_annotations = ['run.clawrun.*']

[plugins.%[1]s.containerd.runtimes.%[2]s.options]
  BinaryName = %[3]s
  Root = %[4]s
`, plugin, h.Name, tomlString(h.BinaryName), tomlString(handlerRoot))
	}
	return b.String(), nil
}

// tomlString is s as a TOML literal string (no escapes in it), or a basic
// string when s has a quote.
func tomlString(s string) string {
	if !strings.ContainsAny(s, "'\n") {
		return "'" + s + "'"
	}
	return strconv.Quote(s)
}

// dropIn is the file the installer adds to a version 3 config's imports.
func dropIn(tables string) string {
	return "# clawrun's runtime handlers, written by clawrun-deploy (removed by its uninstall).\nversion = 3\n\n" + tables
}

// installContainerdConfig returns the node's config.toml (old; exists
// says whether the file exists) as it must be for the handlers of
// tables: for version 3, with dropInPath in its imports (unchanged if an
// import already covers it); for version 2, whose imports containerd 1.x
// merges plugin by plugin (an import would replace the node's whole CRI
// section), with the tables appended between markers.
func installContainerdConfig(old string, exists bool, dropInPath string, tables2 string) (string, error) {
	if !exists || strings.HasPrefix(old, createdMarker) {
		return createdMarker + "version = 3\n" + importLine(dropInPath) + "\n", nil
	}
	clean, _ := uninstallContainerdConfig(old, true, dropInPath)
	if err := checkNoClawrunRuntime(clean); err != nil {
		return "", err
	}
	v, err := configVersion(clean)
	if err != nil {
		return "", err
	}
	switch v {
	case 2:
		return appendBlock(clean, tables2), nil
	case 3:
		return addImport(clean, dropInPath)
	case 0:
		return "", fmt.Errorf("the config has no version line (a version 1 config): clawrun-deploy edits versions 2 and 3")
	default:
		return "", fmt.Errorf("containerd config version %d: clawrun-deploy edits versions 2 and 3", v)
	}
}

// uninstallContainerdConfig undoes installContainerdConfig: the original
// text, or remove if the installer created the file.
func uninstallContainerdConfig(config string, exists bool, dropInPath string) (_ string, remove bool) {
	if !exists {
		return "", false
	}
	if strings.HasPrefix(config, createdMarker) {
		return "", true
	}
	config = removeBlock(config)
	config = rewrittenRe.ReplaceAllString(config, "${1}")
	added := importLine(dropInPath)
	if strings.Contains(config, added+"\n") {
		return strings.Replace(config, added+"\n", "", 1), false
	}
	// Added after a version line that ended the file.
	return strings.TrimSuffix(config, "\n"+added), false
}

// importLine is the imports line the installer adds to a config without one.
func importLine(path string) string {
	return "imports = [" + tomlString(path) + "]" + addedImport
}

// checkNoClawrunRuntime refuses a config that configures clawrun's
// handlers itself: the administrator's tables are not the installer's to
// change (nor to duplicate: TOML forbids a table twice).
func checkNoClawrunRuntime(config string) error {
	for _, line := range strings.Split(config, "\n") {
		l := strings.TrimSpace(line)
		if strings.HasPrefix(l, "[") && clawrunTableRe.MatchString(l) {
			return fmt.Errorf("the config already has %s: remove clawrun's runtimes from it, or configure them by hand instead of with clawrun-deploy", l)
		}
	}
	return nil
}

var clawrunTableRe = regexp.MustCompile(`\.runtimes\.['"]?clawrun(-agent)?['"]?[\].]`)

// addImport adds path to the top-level imports of a version 3 config.
func addImport(config, path string) (string, error) {
	head := config
	if loc := tableRe.FindStringIndex(config); loc != nil {
		head = config[:loc[0]]
	}
	loc := importsRe.FindStringIndex(head)
	if loc == nil {
		// A new imports line after the version line (top level: before
		// any table).
		end := versionRe.FindStringIndex(head)[1]
		if end == len(config) {
			return config + "\n" + importLine(path), nil
		}
		return config[:end+1] + importLine(path) + "\n" + config[end+1:], nil
	}
	line := config[loc[0]:loc[1]]
	m := importsLineRe.FindStringSubmatch(line)
	if m == nil {
		return "", fmt.Errorf("its imports array spans several lines: add %s to it by hand, or write it on one line", path)
	}
	entries := strings.TrimSpace(m[1])
	for _, e := range splitTOMLStrings(entries) {
		if ok, _ := filepath.Match(e, path); ok || e == path {
			return config, nil
		}
	}
	if entries != "" {
		entries = strings.TrimSuffix(entries, ",") + ", "
	}
	rewritten := importsWas + line + "\nimports = [" + entries + tomlString(path) + "]"
	return config[:loc[0]] + rewritten + config[loc[1]:], nil
}

// splitTOMLStrings splits the entries of a one-line TOML array of strings
// (quotes off).
func splitTOMLStrings(entries string) []string {
	var out []string
	for _, e := range strings.Split(entries, ",") {
		e = strings.TrimSpace(e)
		if len(e) >= 2 && (e[0] == '\'' || e[0] == '"') && e[len(e)-1] == e[0] {
			out = append(out, e[1:len(e)-1])
		}
	}
	return out
}

// appendBlock appends content between the markers, after a blank line.
func appendBlock(config, content string) string {
	return config + "\n" + beginMarker + content + endMarker
}

// removeBlock removes what appendBlock appended.
func removeBlock(config string) string {
	start := strings.Index(config, "\n"+beginMarker)
	if start < 0 {
		return config
	}
	end := strings.Index(config[start:], endMarker)
	if end < 0 {
		return config
	}
	return config[:start] + config[start+end+len(endMarker):]
}

// installK3sTemplate returns k3s's containerd config template (old; exists
// says whether there is one) with the handlers of tables (the version of
// the config k3s generates): a new template is k3s's base config plus
// the tables; an administrator's own gets them appended between markers.
func installK3sTemplate(old string, exists bool, tables string) (string, error) {
	if !exists || strings.HasPrefix(old, createdMarker) {
		return createdMarker + k3sBase + "\n" + beginMarker + tables + endMarker, nil
	}
	clean, _ := uninstallK3sTemplate(old, true)
	if err := checkNoClawrunRuntime(clean); err != nil {
		return "", err
	}
	return appendBlock(clean, tables), nil
}

// uninstallK3sTemplate undoes installK3sTemplate.
func uninstallK3sTemplate(tmpl string, exists bool) (_ string, remove bool) {
	if !exists {
		return "", false
	}
	if strings.HasPrefix(tmpl, createdMarker) {
		return "", true
	}
	return removeBlock(tmpl), false
}
