package proxy

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	"github.com/clawrun/clawrun/egress/credentials"
	"github.com/clawrun/clawrun/egress/decisionlog"
	"github.com/clawrun/clawrun/egress/rules"
	"github.com/clawrun/clawrun/egress/wire"
)

// serveHTTP proxies a plain-HTTP connection. Every request of the
// connection is checked (Host and the endpoint's L7 rules), not only the
// first: a keep-alive connection cannot smuggle a second host. All
// requests of one connection must name the same host, since they share
// one upstream connection. The connection stops being HTTP only when the
// server switches protocols (101) in answer to its first request.
func (p *Proxy) serveHTTP(client net.Conn, br *bufio.Reader, dst netip.AddrPort, t *ticket, rec *decisionlog.Record, finish func(rules.Decision)) {
	port := int(dst.Port())
	head, err := wire.ReadRequestHead(br, p.adm.limits.HandshakeBytes)
	p.adm.decided(t)
	rec.Host = head.Host // known when only the framing was refused
	if err != nil {
		reason := p.adm.failedFor(t, err, rules.ReasonNotHTTP)
		finish(rules.Decision{Reason: reason})
		denyHTTP(client, head.Host, port, reason)
		return
	}
	if p.isInference(head.Host) {
		_ = client.SetReadDeadline(time.Time{})
		p.inferenceFlow(client, port, append(slices.Clone(head.Raw), buffered(br)...), true, rec, finish)
		return
	}
	f := newFlow(client, head.Host, port, true)
	// The connection's line names its first request; later ones have
	// lines of their own (forwardRequests).
	rec.Method, rec.Path = head.Method, pathOf(head.Target)
	d := p.admit(f, rec, func(r *rules.Rules, exes []string) rules.Decision { return p.decideRequest(r, head, port, exes, true) })
	if !d.Allow {
		finish(d)
		denyHTTP(client, head.Host, port, d.Reason)
		return
	}
	defer p.track(f, false)
	_ = client.SetReadDeadline(time.Time{})
	up, ip, reason, err := p.dialFlow(f, d)
	if errors.Is(err, errFlowCut) {
		return
	}
	if err != nil {
		d = rules.Decision{Reason: reason, Rule: d.Rule}
		finish(d)
		denyHTTP(client, head.Host, port, reason)
		return
	}
	rec.ResolvedIP = ip.String()

	var (
		relayed  = make(chan struct{})
		switched = make(chan bool, 1) // the server's answer to an upgrade
		refusing atomic.Bool          // a 403 is still to be sent to the client
		toUp     = &stream{dst: up}
		toClient = &stream{dst: client, hold: refusing.Load}
	)
	go func() {
		defer close(relayed)
		relayResponses(toClient, up, head.Upgrade != "", switched)
		toClient.end()
	}()
	refused := p.forwardRequests(f, br, toUp, head, dst, switched)
	if refused != nil {
		refusing.Store(true)
	}
	toUp.end()
	if refused != nil {
		// The 403 answers the refused request: after the responses to
		// the requests before it, which the server sends before it closes
		// (it has read the end of the requests).
		select {
		case <-relayed:
			denyHTTP(client, refused.Host, port, refused.Reason)
		case <-time.After(drainTimeout):
			// The server keeps the connection open: cut it unanswered.
		}
		client.Close()
		up.Close()
	}
	<-relayed
	client.Close()
	p.closeUpstream(up)
	rec.BytesOut, rec.BytesIn = toUp.written, toClient.written
	// The connection is logged as what it was allowed for (its host, the
	// bytes); a later request that was refused has a record of its own.
	finish(d)
}

// drainTimeout bounds the wait for the responses that come before a
// refused request's 403.
const drainTimeout = 5 * time.Second

// refusal is a request of a connection that was refused after others
// were forwarded.
type refusal struct {
	Host   string
	Reason rules.Reason
}

// forwardRequests forwards head and the requests after it to toUp until
// the client is done or a request is refused (logged, and returned). After
// an upgrade request it reads nothing more from the client until the
// server has answered (switched): a 101 makes the rest of the connection a
// tunnel, any other answer leaves it HTTP, checked request by request.
func (p *Proxy) forwardRequests(f *flow, br *bufio.Reader, toUp *stream, head wire.RequestHead, dst netip.AddrPort, switched <-chan bool) *refusal {
	client, port, host := f.client, f.port, head.Host
	logRequest := func(generation int64, req wire.RequestHead, d rules.Decision) {
		p.log(decisionlog.Record{Generation: generation, Protocol: "http", Source: client.RemoteAddr().String(),
			Destination: dst.String(), Host: req.Host, Port: port, Decision: decisionOf(d), Reason: d.Reason, Rule: d.Rule,
			Binary: d.Binary, Method: req.Method, Path: pathOf(req.Target)})
	}
	refuse := func(generation int64, req wire.RequestHead, d rules.Decision) *refusal {
		logRequest(generation, req, d)
		return &refusal{Host: req.Host, Reason: d.Reason}
	}
	for {
		if toUp.write(head.Raw) != nil || copyBody(toUp, br, client, head) != nil {
			return nil
		}
		if head.Upgrade != "" && <-switched {
			// A tunnel: the client's bytes go up as they are, those read
			// ahead first.
			_ = toUp.relay(buffered(br), client)
			return nil
		}
		if head.Close {
			return nil
		}
		next, err := wire.ReadRequestHead(br, p.adm.limits.HandshakeBytes)
		cur := p.Rules() // hot reload applies to the next request too
		if refusedHead(err) {
			return refuse(cur.Generation, next, rules.Decision{Reason: rules.ReasonNotHTTP})
		}
		if err != nil {
			return nil // the client is done
		}
		d := p.decideRequest(cur, next, port, p.owners(f, cur), false)
		if next.Host != host {
			d = rules.Decision{Reason: rules.ReasonNotAllowed}
		}
		if !d.Allow {
			return refuse(cur.Generation, next, d)
		}
		logRequest(cur.Generation, next, d)
		head = next
	}
}

// refusedHead reports an error of ReadRequestHead that refuses what the
// client sent (rather than the connection ending).
func refusedHead(err error) bool {
	var ne net.Error
	return err != nil && !errors.Is(err, io.EOF) && !errors.Is(err, io.ErrUnexpectedEOF) &&
		!errors.Is(err, net.ErrClosed) && !errors.As(err, &ne)
}

// relayResponses copies the upstream's responses to toClient. When the
// connection's first request asks for an upgrade, the heads of its answer
// are read first and switched says whether the server switched protocols;
// the rest is copied as it comes.
func relayResponses(toClient *stream, up net.Conn, upgrade bool, switched chan<- bool) {
	if !upgrade {
		_ = toClient.copyAll(up)
		return
	}
	ubr := bufio.NewReaderSize(up, 4<<10)
	ok, err := relayUpgradeAnswer(toClient, ubr)
	switched <- ok
	if err != nil {
		up.Close() // a malformed answer ends the connection
		return
	}
	if toClient.write(buffered(ubr)) == nil {
		_ = toClient.copyAll(up)
	}
}

// relayUpgradeAnswer forwards the response heads answering an upgrade
// request: interim 1xx heads, then 101 (true: the server switched) or a
// final status (false: it declined; the body that follows is not read).
func relayUpgradeAnswer(toClient *stream, ubr *bufio.Reader) (bool, error) {
	for {
		resp, err := wire.ReadResponseHead(ubr)
		if err != nil {
			return false, err
		}
		if err := toClient.write(resp.Raw); err != nil {
			return false, err
		}
		switch {
		case resp.Status == 101:
			return true, nil
		case resp.Status >= 200:
			return false, nil
		}
	}
}

// decideRequest decides one request of a connection (first: the first
// one). Beyond the rules: an upgrade to h2c is refused (HTTP/2 streams
// cannot be checked request by request), and so is an upgrade asked for
// behind other requests (its answer could not be told from theirs).
func (p *Proxy) decideRequest(current *rules.Rules, head wire.RequestHead, port int, binaries []string, first bool) rules.Decision {
	if head.Host == "" {
		return rules.Decision{Reason: rules.ReasonNoSNI}
	}
	if head.Connect {
		return rules.Decision{Reason: rules.ReasonNotAllowed}
	}
	if d, ok := refuseName(head.Host, false); !ok {
		return d
	}
	d := current.MatchRequest(head.Host, port, binaries, rules.Request{
		Method: head.Method, Target: head.Target, MethodOverrides: rules.MethodOverrides(head.Values),
		WebSocket: head.UpgradeTo("websocket")})
	if d.Allow && credentials.HasPlaceholder(string(head.Raw)) {
		// Never injected into cleartext, and not sent as it is.
		return rules.Decision{Reason: ReasonCredentialCleartext, Rule: d.Rule, Layer: d.Layer, Endpoint: d.Endpoint}
	}
	if d.Allow && head.Upgrade != "" && (!first || head.UpgradeTo("h2c")) {
		return rules.Decision{Reason: rules.ReasonUnenforceable, Rule: d.Rule, Layer: d.Layer, Endpoint: d.Endpoint}
	}
	return d
}

// decisionOf is a decision as the log writes it: allow, audit (allowed
// only because an audit endpoint waived a check) or deny.
func decisionOf(d rules.Decision) string {
	switch {
	case d.Allow && d.Audit:
		return "audit"
	case d.Allow:
		return "allow"
	default:
		return "deny"
	}
}

// ReasonCredentialCleartext: a plain-HTTP request holds a credential
// placeholder; credentials are injected only in inspected TLS.
const ReasonCredentialCleartext rules.Reason = "credential_cleartext"

// pathOf is a request-target without its query, for the decision log.
func pathOf(target string) string {
	p, _, _ := strings.Cut(target, "?")
	return p
}

// denyHTTP answers a refused request with 403 and closes the connection.
func denyHTTP(client net.Conn, host string, port int, reason rules.Reason) {
	body := fmt.Sprintf("clawrun: egress to %s:%d denied (%s)\n", host, port, reason)
	_ = client.SetWriteDeadline(time.Now().Add(2 * time.Second))
	fmt.Fprintf(client, "HTTP/1.1 403 Forbidden\r\nContent-Type: text/plain\r\nContent-Length: %d\r\nConnection: close\r\n\r\n%s", len(body), body)
	client.Close()
}

// copyBody forwards a request body to toUp. A body of known length is
// spliced from the client's socket once the read-ahead buffer is drained;
// chunked bodies go through the framing-checking reader.
func copyBody(toUp *stream, br *bufio.Reader, client net.Conn, head wire.RequestHead) error {
	if head.Chunked || head.ContentLength <= 0 {
		return toUp.copyAll(head.BodyReader(br))
	}
	fromBuf := min(int64(br.Buffered()), head.ContentLength)
	if err := toUp.copyN(br, fromBuf); err != nil || fromBuf == head.ContentLength {
		return err
	}
	return toUp.copyN(client, head.ContentLength-fromBuf)
}
