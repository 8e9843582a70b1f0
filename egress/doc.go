// Package egress is clawrun's egress filter: the only way out of a
// confined container's network namespace. It holds no code; its
// sub-packages are the pieces, from the pure to the kernel side:
//
//   - rules: what the policy allows. The network layers of a Plan
//     compiled into Rules, and the pure decisions on names, ports,
//     processes, HTTP requests and address classes, each with a typed
//     Reason that flows unchanged into the decision log.
//   - wire: the parsers of what the proxy reads before it decides (a TLS
//     ClientHello, HTTP/1.x heads and bodies): pure, strict and fuzzed.
//   - decisionlog: one Record per decision, in a rotated file, read back
//     and followed; and the limiter that keeps a container from flooding
//     it.
//   - resolver: the policy DNS resolver (names the policy does not allow
//     never leave) and the synthetic addresses of protocol: tcp endpoints.
//   - proxy: the transparent proxy every TCP connection is redirected to,
//     with its admission limits.
//   - kernel: nftables, the namespace's routes and the filter's sockets in
//     it, the processes holding a connection, a redirected connection's
//     original destination.
//   - filter: the supervisor and worker processes that wire these pieces
//     together for one container.
package egress
