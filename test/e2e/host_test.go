package e2e

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// What the front-ends leave on the host outside the tests' private dirs,
// and how the tests put the host back as they found it.

// hostDirs are directories outside the private ones that the front-ends
// create as they run.
var hostDirs = []string{"/run/containerd", "/run/docker", "/run/nerdctl", "/var/lib/nerdctl", "/var/lib/cni", "/run/cni", "/etc/cni"}

// cgroupParents are the parent cgroups the front-ends put containers
// under with the cgroupfs driver (docker: /docker; containerd: /<namespace>).
var cgroupParents = []string{"docker", "k8s.io", "clawrun-e2e-ctr", "clawrun-e2e-nerdctl"}

// newCgroupParents lists the parent cgroups, in every hierarchy, that do
// not exist yet: the tests' front-ends create them.
func newCgroupParents() []string { return missingCgroups(cgroupParents) }

// missingCgroups lists the cgroups of these names, in every hierarchy,
// that do not exist.
func missingCgroups(names []string) []string {
	// cgroup v1 (and hybrid): one per hierarchy; v2: the root itself.
	hierarchies, _ := filepath.Glob("/sys/fs/cgroup/*")
	hierarchies = append(hierarchies, "/sys/fs/cgroup")
	var out []string
	for _, h := range hierarchies {
		for _, name := range names {
			if p := filepath.Join(h, name); !exists(p) {
				out = append(out, p)
			}
		}
	}
	return out
}

// removeCgroupParents removes those cgroups (rmdir, children first) once
// they hold no process.
func removeCgroupParents(paths []string) {
	var rm func(string)
	rm = func(dir string) {
		entries, err := os.ReadDir(dir)
		if err != nil {
			return
		}
		for _, e := range entries {
			if e.IsDir() {
				rm(filepath.Join(dir, e.Name()))
			}
		}
		if err := os.Remove(dir); err != nil {
			fmt.Fprintf(os.Stderr, "e2e: cgroup %s: %v\n", dir, err)
		}
	}
	for _, p := range paths {
		if exists(p) {
			rm(p)
		}
	}
}

// Host settings a front-end may change behind the test's back (the CNI
// bridge plugin turns forwarding on for a gateway): put back at the end.
var watchedSysctls = []string{"/proc/sys/net/ipv4/ip_forward", "/proc/sys/net/ipv6/conf/all/forwarding"}

func snapshotSysctls() map[string]string { return readSysctls(watchedSysctls) }

func readSysctls(paths []string) map[string]string {
	out := map[string]string{}
	for _, p := range paths {
		if data, err := os.ReadFile(p); err == nil {
			out[p] = strings.TrimSpace(string(data))
		}
	}
	return out
}

func restoreSysctls(before map[string]string) {
	for p, v := range before {
		data, err := os.ReadFile(p)
		if err == nil && strings.TrimSpace(string(data)) != v {
			fmt.Fprintf(os.Stderr, "e2e: %s was changed to %s during the tests: back to %s\n", p, strings.TrimSpace(string(data)), v)
			_ = os.WriteFile(p, []byte(v), 0o644)
		}
	}
}

// removeEmptyTree removes the empty directories of a tree, deepest first,
// and the fifos in it, and returns what is left (files and the
// directories holding them).
func removeEmptyTree(dir string) []string {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil
	}
	var left []string
	for _, e := range entries {
		p := filepath.Join(dir, e.Name())
		switch {
		case e.IsDir():
			left = append(left, removeEmptyTree(p)...)
		case e.Type()&os.ModeNamedPipe != 0 && os.Remove(p) == nil:
			// A front-end's stdio fifo (nerdctl leaves some behind).
		default:
			left = append(left, p)
		}
	}
	if err := os.Remove(dir); err != nil && len(left) == 0 {
		left = append(left, dir)
	}
	return left
}
