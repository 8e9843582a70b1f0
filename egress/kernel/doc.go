// Package kernel is the egress filter's kernel side, everything it asks of
// Linux for one network namespace: the nftables rules that force its
// traffic through the filter (nft.go), its routes and the filter's
// listening sockets inside it (netns.go), the processes holding one of its
// connections (owner.go), where a redirected connection was really sent
// (origdst.go), and, in the host's namespace, the end of the TIME_WAIT its
// upstream connections leave (timewait.go).
package kernel
