package main

import (
	"fmt"
	"io"
	"os"
	"path"
	"strings"
)

// options are what the installer does on this node (main.go reads them
// from the DaemonSet's environment). Paths are the host's.
type options struct {
	host   host
	dest   string // where the binaries go
	source string // the binaries in the image
	// clawrunConfig is clawrun's --config for every handler ("": clawrun's
	// default, /etc/clawrun/config.yaml).
	clawrunConfig string
	floor         string // the clawrun-agent handler's floor policy
	flavor        string // "containerd" or "k3s"
	// containerd's config file and the drop-in the installer adds to its
	// imports (version 3 configs).
	containerdConfig string
	dropIn           string
	k3sDir           string // k3s's containerd config dir
	restart          func() error
	node             labeler
	log              io.Writer
}

// binaries are the files of the image the node gets.
var binaries = []string{"clawrun", "clawrun-egress", "clawrun-egress-worker", "clawrun-launch", "clawrun-metrics", "containerd-shim-clawrun-v2"}

// agentScript is contrib/containerd/clawrun-agent in the image, beside the
// binaries (build-image.sh): the one source of the clawrun-agent wrapper.
const agentScript = "clawrun-agent"

// contribAgentExec is the line of that script that runs clawrun; the
// installer writes it with the node's destination, config and floor.
const contribAgentExec = `exec /usr/local/bin/clawrun --policy agent-coding "$@"`

// handlers are the runtime handlers installed: "clawrun" (pods choose
// their policy with annotations) and "clawrun-agent" (the floor).
func (o *options) handlers() []handler {
	plain := path.Join(o.dest, "clawrun")
	if o.clawrunConfig != "" {
		plain = path.Join(o.dest, "clawrun-cri")
	}
	return []handler{{"clawrun", plain}, {"clawrun-agent", path.Join(o.dest, "clawrun-agent")}}
}

// wrappers are the scripts that run clawrun with flags, by host path:
// containerd's runc shim passes none of its own.
func (o *options) wrappers() (map[string]string, error) {
	flags := ""
	if o.clawrunConfig != "" {
		flags = " --config " + shellQuote(o.clawrunConfig)
	}
	clawrun := shellQuote(path.Join(o.dest, "clawrun"))
	agent, err := o.agentWrapper("exec " + clawrun + flags + " --policy " + shellQuote(o.floor) + ` "$@"`)
	if err != nil {
		return nil, err
	}
	w := map[string]string{path.Join(o.dest, "clawrun-agent"): agent}
	if o.clawrunConfig != "" {
		w[path.Join(o.dest, "clawrun-cri")] = "#!/bin/sh\n# The runtime handler clawrun: clawrun with its config (written by clawrun-deploy).\nexec " +
			clawrun + flags + " \"$@\"\n"
	}
	return w, nil
}

// agentWrapper is the image's contrib clawrun-agent with its exec line
// replaced by execLine; contrib's own on a default node.
func (o *options) agentWrapper(execLine string) (string, error) {
	p := path.Join(o.source, agentScript)
	data, err := os.ReadFile(p)
	if err != nil {
		return "", fmt.Errorf("the image's %s: %w", agentScript, err)
	}
	script := string(data)
	if strings.Count(script, "\n"+contribAgentExec+"\n") != 1 {
		return "", fmt.Errorf("the image's %s (%s): want one line %s", agentScript, p, contribAgentExec)
	}
	return strings.Replace(script, "\n"+contribAgentExec+"\n", "\n"+execLine+"\n", 1), nil
}

// shellQuote quotes s for sh, leaving a word that needs no quotes (a
// plain path or policy name) as it is: contrib's clawrun-agent is then
// installed unchanged.
func shellQuote(s string) string {
	if s != "" && strings.Trim(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789/._-+:@=,") == "" {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

func (o *options) logf(format string, args ...any) {
	fmt.Fprintf(o.log, "clawrun-deploy: "+format+"\n", args...)
}

// install puts clawrun on the node, configures its runtime handlers,
// restarts the runtime if its config changed, and labels the node.
func install(o *options) error {
	wrappers, err := o.wrappers()
	if err != nil {
		return err
	}
	r, err := o.host.load()
	if err != nil {
		return err
	}
	for _, b := range binaries {
		data, err := os.ReadFile(path.Join(o.source, b))
		if err != nil {
			return fmt.Errorf("the image's %s: %w", b, err)
		}
		if _, err := o.host.put(&r, path.Join(o.dest, b), data, 0o755); err != nil {
			return err
		}
	}
	for p, script := range wrappers {
		if _, err := o.host.put(&r, p, []byte(script), 0o755); err != nil {
			return err
		}
	}
	o.logf("installed %s in %s", strings.Join(binaries, ", "), o.dest)

	var changed bool
	if o.flavor == "k3s" {
		changed, err = o.configureK3s()
	} else {
		changed, err = o.configureContainerd(&r)
	}
	if err != nil {
		return err
	}
	if err := o.restartIf(changed); err != nil {
		return err
	}
	value := nodeLabelValue
	if err := o.node.label(nodeLabel, &value); err != nil {
		return err
	}
	o.logf("node labelled %s=%s", nodeLabel, value)
	return nil
}

// uninstall undoes install: the label first (nothing new is scheduled),
// then the config (the runtime restarted if it changed), then the files.
func uninstall(o *options) error {
	if err := o.node.label(nodeLabel, nil); err != nil {
		return err
	}
	o.logf("label %s removed", nodeLabel)
	var changed bool
	var err error
	if o.flavor == "k3s" {
		changed, err = o.unconfigureK3s()
	} else {
		changed, err = o.unconfigureContainerd()
	}
	if err != nil {
		return err
	}
	if err := o.host.restoreAll(); err != nil {
		return err
	}
	o.logf("files removed (and those they replaced put back), state %s removed", o.host.state)
	return o.restartIf(changed)
}

func (o *options) restartIf(changed bool) error {
	if !changed {
		o.logf("runtime config unchanged: no restart")
		return nil
	}
	o.logf("runtime config changed: restarting the runtime")
	if err := o.restart(); err != nil {
		return fmt.Errorf("restarting the runtime: %w", err)
	}
	return nil
}

// configureContainerd writes the drop-in (version 3) and edits config.toml.
func (o *options) configureContainerd(r *record) (bool, error) {
	old, exists, err := o.host.read(o.containerdConfig)
	if err != nil {
		return false, err
	}
	version := 3
	if exists {
		if version, err = configVersion(old); err != nil {
			return false, fmt.Errorf("%s: %w", o.containerdConfig, err)
		}
	}
	var tables2 string
	changed := false
	switch version {
	case 2:
		if tables2, err = runtimeTables(2, o.handlers()); err != nil {
			return false, err
		}
	case 3:
		tables, err := runtimeTables(3, o.handlers())
		if err != nil {
			return false, err
		}
		if changed, err = o.host.put(r, o.dropIn, []byte(dropIn(tables)), 0o644); err != nil {
			return false, err
		}
	}
	config, err := installContainerdConfig(old, exists, o.dropIn, tables2)
	if err != nil {
		return false, fmt.Errorf("%s: %w", o.containerdConfig, err)
	}
	edited, err := o.host.edit(o.containerdConfig, config, false)
	if err != nil {
		return false, err
	}
	o.logf("containerd: %s (version %d) edited: %v, drop-in %s changed: %v", o.containerdConfig, version, edited, o.dropIn, changed)
	return changed || edited, nil
}

func (o *options) unconfigureContainerd() (bool, error) {
	config, exists, err := o.host.read(o.containerdConfig)
	if err != nil {
		return false, err
	}
	orig, remove := uninstallContainerdConfig(config, exists, o.dropIn)
	edited := false
	if exists {
		if edited, err = o.host.edit(o.containerdConfig, orig, remove); err != nil {
			return false, err
		}
	}
	_, dropInThere, err := o.host.read(o.dropIn)
	if err != nil {
		return false, err
	}
	return edited || dropInThere, nil
}

// k3sTemplate is the template k3s renders into the config.toml it
// generated (whose version says which: 3 for k3s with containerd 2.x).
func (o *options) k3sTemplate() (string, int, error) {
	generated, exists, err := o.host.read(path.Join(o.k3sDir, "config.toml"))
	if err != nil {
		return "", 0, err
	}
	if !exists {
		return "", 0, fmt.Errorf("%s/config.toml is missing: start k3s once before installing", o.k3sDir)
	}
	v, err := configVersion(generated)
	if err != nil {
		return "", 0, err
	}
	if v == 3 {
		return path.Join(o.k3sDir, "config-v3.toml.tmpl"), 3, nil
	}
	return path.Join(o.k3sDir, "config.toml.tmpl"), 2, nil
}

func (o *options) configureK3s() (bool, error) {
	tmplPath, version, err := o.k3sTemplate()
	if err != nil {
		return false, err
	}
	tables, err := runtimeTables(version, o.handlers())
	if err != nil {
		return false, err
	}
	old, exists, err := o.host.read(tmplPath)
	if err != nil {
		return false, err
	}
	tmpl, err := installK3sTemplate(old, exists, tables)
	if err != nil {
		return false, fmt.Errorf("%s: %w", tmplPath, err)
	}
	changed, err := o.host.edit(tmplPath, tmpl, false)
	o.logf("k3s: %s changed: %v", tmplPath, changed)
	return changed, err
}

func (o *options) unconfigureK3s() (bool, error) {
	changed := false
	for _, name := range []string{"config-v3.toml.tmpl", "config.toml.tmpl"} {
		p := path.Join(o.k3sDir, name)
		tmpl, exists, err := o.host.read(p)
		if err != nil {
			return false, err
		}
		orig, remove := uninstallK3sTemplate(tmpl, exists)
		if !exists {
			continue
		}
		c, err := o.host.edit(p, orig, remove)
		if err != nil {
			return false, err
		}
		changed = changed || c
	}
	return changed, nil
}
