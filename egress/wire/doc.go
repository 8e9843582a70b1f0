// Package wire parses what the egress proxy reads off a connection before
// it decides: a TLS ClientHello (its server name) and HTTP/1.x request and
// response heads and bodies. The parsers are pure and strict: whatever a
// server could read differently from the filter is an error, never a
// guess. They are fuzzed (FuzzParseClientHello, FuzzReadRequestHead).
package wire
