// Package proxy is the egress filter's transparent TCP proxy for one
// network namespace: every TCP connection the container opens reaches it,
// is decided on its TLS server name or on each of its HTTP requests, and is
// relayed to an address the proxy resolved and checked itself (proxy.go,
// http.go). Its admission limits (limits.go) keep a container from growing
// the filter's memory by opening connections.
package proxy
