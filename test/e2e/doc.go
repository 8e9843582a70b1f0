// Package e2e runs clawrun under the real front-ends, each as a private
// daemon of the test's own (sockets, state and data under a temp dir,
// cgroupfs, PATH naming clawrun and its shim first), and checks that the
// containers they launch are confined: Debian's dockerd 20.10 and a current
// dockerd (moby v2), containerd 2.2.9 through ctr, nerdctl and its CRI
// plugin (crictl: what kubelet and k3s do), and a single-node Kubernetes
// cluster whose kubelet drives that CRI plugin, with the files of contrib/
// (daemon.json, containerd and k3s configs, Kubernetes manifests).
//
// Run test/e2e/setup.sh first (it prints the tools dir), then as root:
//
//	E2E_TOOLS=DIR CLAWRUN_BIN=bin go test -tags 'seccomp netgo osusergo urfave_cli_no_docs' ./test/e2e/
//
// Tests whose tools are missing are skipped with the reason.
package e2e
