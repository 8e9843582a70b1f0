//go:build tools

// Package tools pins the reference runtime that conformance and benchmarks
// compare clawrun against: runc built from the same libcontainer version.
package tools

import _ "github.com/opencontainers/runc"
