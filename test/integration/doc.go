// Package integration drives the runtime binary named by $CLAWRUN (clawrun,
// or any runc-compatible runtime such as bin/runc-1.5.2) as a real container
// runtime, as root, with real busybox containers. The tests are in the
// _test.go files; they skip when $CLAWRUN is unset or the user is not root.
package integration
