// Package runtime owns libcontainer for clawrun: it turns an OCI bundle into
// a libcontainer configuration, creates, starts, signals and destroys
// containers, runs processes inside them (stdio, terminals, pid files,
// inherited file descriptors, signal forwarding) and reads their state
// under the state root.
//
// The command line in cmd/clawrun only parses flags and calls this package,
// so that every front-end (the CLI, the containerd shim, tests) shares one
// implementation of the runc contract.
package runtime
