// Package shim is clawrun's containerd shim v2: containerd's runc shim
// with clawrun as its runtime binary.
package shim

import (
	"context"

	"github.com/containerd/containerd/v2/cmd/containerd-shim-runc-v2/manager"
	// Registers the runc task service with the shim.
	_ "github.com/containerd/containerd/v2/cmd/containerd-shim-runc-v2/task/plugin"
	"github.com/containerd/containerd/v2/pkg/shim"
	gorunc "github.com/containerd/go-runc"
)

// RuntimeType is the containerd runtime type of this shim.
const RuntimeType = "io.containerd.clawrun.v2"

// Run runs the shim.
func Run() {
	// A runtime without BinaryName must run clawrun, never runc.
	gorunc.DefaultCommand = "clawrun"
	shim.Run(context.Background(), manager.NewShimManager(RuntimeType))
}
