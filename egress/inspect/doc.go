// Package inspect is the HTTPS inspection engine of clawrun's egress
// filter. The filter splices TLS it cannot read; for an endpoint whose
// policy names requests (methods, paths, JSON-RPC methods, MCP tools), it
// hands the connection to this engine instead, which terminates TLS with a
// certificate of the container's own CA, decides every request, and sends
// the allowed ones to the upstream over TLS of its own.
//
// One Engine per container (NewEngine, with the container's CA); the
// filter calls Engine.Serve for each connection it inspects, with the SNI
// it matched, the bytes it read, a way to dial the address it checked, and
// the policy as Options.Decide.
//
// What the engine promises, on every connection it serves:
//
//   - Every request is decided (Options.Decide) before any byte of it goes
//     upstream, HTTP/1.1 keep-alive requests and HTTP/2 streams alike, and
//     every decision is logged (Options.Log), refusals by the engine
//     itself and by the HTTP parsers included (but for the HTTP/2 streams
//     golang.org/x/net's server resets as malformed before the engine
//     sees them: a Host field that disagrees with the :authority, an
//     :authority that is no host).
//   - A request is for the server name the filter matched, or it is
//     refused before Decide is asked: the Host or :authority is that name
//     (a port only if it is the connection's), an absolute-form target
//     names it, an HTTP/2 Host field agrees with the :authority; CONNECT is
//     refused. Domain fronting inside an inspected connection is closed.
//   - What was decided is what is sent: requests are written anew for the
//     upstream, not copied (no second reading of their framing, no
//     hop-by-hop fields, no Forwarded or X-Forwarded-For, no trailers); a
//     JSON-RPC body is read whole (up to a bound) and parsed strictly (no
//     duplicate or case-variant members) before it is decided, and those
//     bytes are sent. A body some servers would not read (on GET, HEAD,
//     DELETE, TRACE) is refused.
//   - The upstream is the address the filter resolved and checked, and it
//     must prove the server name with a certificate that verifies against
//     the configured roots; if it does not, the request is refused,
//     never sent unverified.
//   - Responses stream: server-sent events and chunked bodies reach the
//     client as they arrive. An allowed WebSocket upgrade (HTTP/1.1)
//     becomes a tunnel once the upstream switches protocols.
//   - What one container can make the engine hold is bounded: JSON-RPC
//     bodies held at once, upstream connections per client connection,
//     HTTP/2 streams per connection.
//   - The CA's key never leaves the process but through CA.WriteKeyFile,
//     and leaves are issued once per name, cached, signed with ECDSA P-256.
//
// What a refused request is answered, on a connection that stays open:
// 403 and a JSON object naming the rule and the reason when the policy
// refuses it; for a JSON-RPC request with ids, HTTP 200 and a JSON-RPC
// error object for each id instead (RPCCodeDenied, or RPCCodeWithheld for
// the other calls of a batch, which is sent whole or not at all), so that
// an MCP client's call fails with the rule's name; 421 for a request for
// another name (an honest client retries on a connection of its own, which
// the filter checks); 400, 413 or 415 for what cannot be read one way; 502
// when the upstream cannot be reached or does not prove its name
// (upstream_cert).
//
// What it does not do:
//
//   - Clients that pin certificates, or that do not read the container's
//     trust bundle (a Java keystore, a Rust client with compiled-in roots),
//     fail their handshake (logged as client_handshake): such endpoints must
//     not be inspected.
//   - HTTP/2 extended CONNECT (WebSocket over HTTP/2, RFC 8441) is not
//     offered; a stream that tries it is reset. Clients use WebSocket over
//     HTTP/1.1, which is inspected up to its upgrade.
//   - WebSocket frames, response bodies and server-to-client JSON-RPC
//     messages are not inspected; client certificates are not presented
//     upstream; h2c, HTTP/3 and TLS inside the tunnel are not spoken.
//   - It holds no policy: Decide is the policy. Credential injection will
//     hook into Options.Rewrite.
package inspect
