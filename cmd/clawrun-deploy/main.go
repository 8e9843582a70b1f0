// Command clawrun-deploy installs clawrun on a Kubernetes node, and
// uninstalls it, from a privileged DaemonSet pod that has the host's / at
// /host (contrib/kubernetes/deploy): it copies clawrun's binaries onto the
// node, adds the runtime handlers clawrun and clawrun-agent to containerd's
// config (a drop-in in its imports) or to k3s's config template, restarts
// the runtime when that config changed, and labels the node
// clawrun.dev/runtime=installed, which the RuntimeClasses schedule on.
// Uninstall undoes each step; the node's files come back byte for byte.
//
//	clawrun-deploy install|uninstall [-wait]
//
// Settings (environment; paths are the host's):
//
//	NODE_NAME                the node (the DaemonSet sets it from spec.nodeName)
//	HOST_ROOT                where the host's / is mounted (/host)
//	CLAWRUN_DEST             where the binaries go (/usr/local/bin)
//	CLAWRUN_CONFIG           clawrun's --config for every handler (none: /etc/clawrun/config.yaml)
//	CLAWRUN_AGENT_FLOOR      the clawrun-agent handler's floor policy (agent-coding)
//	CLAWRUN_RUNTIME          containerd, k3s, or auto (k3s if K3S_CONTAINERD_DIR exists)
//	CONTAINERD_CONFIG        containerd's config (/etc/containerd/config.toml)
//	CONTAINERD_DROPIN        the drop-in added to its imports (/etc/containerd/conf.d/clawrun.toml)
//	K3S_CONTAINERD_DIR       k3s's (/var/lib/rancher/k3s/agent/etc/containerd)
//	CLAWRUN_RESTART          shell command that restarts the runtime (default: systemctl in
//	                         the host's mount namespace: containerd, or k3s / k3s-agent)
//	CLAWRUN_DEPLOY_STATE     the installer's record and the files it replaced (/var/lib/clawrun-deploy)
//	CLAWRUN_DEPLOY_SOURCE    the binaries in the image, and contrib's clawrun-agent (/opt/clawrun/bin)
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"syscall"
)

// doneFile is written once the work is done: the DaemonSet's readiness
// probe, so that `kubectl rollout status` waits for every node.
const doneFile = "/tmp/clawrun-deploy.done"

func main() {
	wait := flag.Bool("wait", false, "once done, stay until SIGTERM (a DaemonSet's container)")
	flag.Usage = func() {
		fmt.Fprintln(os.Stderr, "usage: clawrun-deploy install|uninstall [-wait]")
		flag.PrintDefaults()
	}
	if len(os.Args) < 2 {
		flag.Usage()
		os.Exit(2)
	}
	mode := os.Args[1]
	_ = flag.CommandLine.Parse(os.Args[2:])
	if err := run(mode); err != nil {
		fmt.Fprintln(os.Stderr, "clawrun-deploy:", err)
		os.Exit(1)
	}
	if *wait {
		if err := os.WriteFile(doneFile, []byte(mode+"\n"), 0o644); err != nil {
			fmt.Fprintln(os.Stderr, "clawrun-deploy:", err)
			os.Exit(1)
		}
		ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
		defer stop()
		<-ctx.Done()
	}
}

func run(mode string) error {
	o, err := optionsFromEnv()
	if err != nil {
		return err
	}
	switch mode {
	case "install":
		return install(o)
	case "uninstall":
		return uninstall(o)
	default:
		return fmt.Errorf("unknown mode %q (install or uninstall)", mode)
	}
}

func env(name, def string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return def
}

func optionsFromEnv() (*options, error) {
	o := &options{
		host:             host{root: env("HOST_ROOT", "/host"), state: env("CLAWRUN_DEPLOY_STATE", "/var/lib/clawrun-deploy")},
		dest:             env("CLAWRUN_DEST", "/usr/local/bin"),
		source:           env("CLAWRUN_DEPLOY_SOURCE", "/opt/clawrun/bin"),
		clawrunConfig:    os.Getenv("CLAWRUN_CONFIG"),
		floor:            env("CLAWRUN_AGENT_FLOOR", "agent-coding"),
		flavor:           env("CLAWRUN_RUNTIME", "auto"),
		containerdConfig: env("CONTAINERD_CONFIG", "/etc/containerd/config.toml"),
		dropIn:           env("CONTAINERD_DROPIN", "/etc/containerd/conf.d/clawrun.toml"),
		k3sDir:           env("K3S_CONTAINERD_DIR", "/var/lib/rancher/k3s/agent/etc/containerd"),
		log:              os.Stdout,
	}
	for name, p := range map[string]string{"CLAWRUN_DEST": o.dest, "CONTAINERD_CONFIG": o.containerdConfig, "CONTAINERD_DROPIN": o.dropIn,
		"K3S_CONTAINERD_DIR": o.k3sDir, "CLAWRUN_DEPLOY_STATE": o.host.state} {
		if !filepath.IsAbs(p) {
			return nil, fmt.Errorf("%s: %q is not an absolute path", name, p)
		}
	}
	if o.clawrunConfig != "" && !filepath.IsAbs(o.clawrunConfig) {
		return nil, fmt.Errorf("CLAWRUN_CONFIG: %q is not an absolute path", o.clawrunConfig)
	}
	if o.flavor == "auto" {
		o.flavor = "containerd"
		if st, err := os.Stat(o.host.path(o.k3sDir)); err == nil && st.IsDir() {
			o.flavor = "k3s"
		}
	}
	if o.flavor != "containerd" && o.flavor != "k3s" {
		return nil, fmt.Errorf("CLAWRUN_RUNTIME: %q (want containerd, k3s or auto)", o.flavor)
	}
	command := os.Getenv("CLAWRUN_RESTART")
	if command == "" {
		command = defaultRestart(o.flavor)
	}
	o.restart = func() error { return shell(command) }
	node, err := inClusterNode(os.Getenv("NODE_NAME"))
	if err != nil {
		return nil, err
	}
	o.node = node
	return o, nil
}

// defaultRestart restarts the runtime's systemd unit from the host's mount
// namespace (the pod has hostPID: PID 1 is the host's init).
func defaultRestart(flavor string) string {
	if flavor == "k3s" {
		return "nsenter -t 1 -m -- sh -c 'if systemctl is-active --quiet k3s; then systemctl restart k3s; else systemctl restart k3s-agent; fi'"
	}
	return "nsenter -t 1 -m -- systemctl restart containerd"
}

func shell(command string) error {
	cmd := exec.Command("/bin/sh", "-c", command)
	cmd.Stdout, cmd.Stderr = os.Stdout, os.Stderr
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("%q: %w", command, err)
	}
	return nil
}
