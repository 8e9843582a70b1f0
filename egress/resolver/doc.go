// Package resolver is the egress filter's policy DNS resolver for one
// network namespace: names the policy does not allow never leave, allowed
// names are resolved upstream (through a cache shared with the proxy's own
// lookups) and answered without the addresses of blocked classes, and the
// names of protocol: tcp endpoints get a synthetic address (SyntheticPool)
// that the proxy maps back to the name.
package resolver
