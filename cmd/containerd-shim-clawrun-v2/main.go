// Command containerd-shim-clawrun-v2 is clawrun's containerd shim (runtime
// type io.containerd.clawrun.v2).
package main

import "github.com/clawrun/clawrun/shim"

func main() { shim.Run() }
