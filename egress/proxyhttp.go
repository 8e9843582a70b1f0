package egress

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"sync"
	"time"
)

// serveHTTP proxies a plain-HTTP connection. Every request of the
// connection is checked (Host and the endpoint's L7 rules), not only the
// first: a keep-alive connection cannot smuggle a second host. All
// requests of one connection must name the same host, since they share
// one upstream connection.
func (p *Proxy) serveHTTP(client net.Conn, br *bufio.Reader, dst netip.AddrPort, rec *Record, finish func(Decision)) {
	port := int(dst.Port())
	head, err := ReadRequestHead(br)
	if err != nil {
		finish(Decision{Reason: ReasonNotHTTP})
		denyHTTP(client, "", port, ReasonNotHTTP)
		return
	}
	rec.Host = head.Host
	f := newFlow(client, head.Host, port, true)
	d := p.admit(f, rec, func(r *Rules, exes []string) Decision { return p.decideRequest(r, head, port, exes) })
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
		d = Decision{Reason: reason, Rule: d.Rule}
		finish(d)
		denyHTTP(client, head.Host, port, reason)
		return
	}
	rec.ResolvedIP = ip.String()

	var in int64
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		in, _ = io.Copy(client, up)
		closeWrite(client)
	}()
	out, last := p.forwardRequests(f, br, up, head, dst)
	closeWrite(up)
	if !last.Allow {
		// A later request was refused: end the connection now.
		up.Close()
		client.Close()
	}
	wg.Wait()
	client.Close()
	up.Close()
	rec.BytesOut, rec.BytesIn = out, in
	// The connection is logged as what it was allowed for (its host, the
	// bytes); a later request that was refused has a record of its own.
	finish(d)
}

// forwardRequests forwards head and the requests after it until the client
// is done or a request is refused (returned as the last decision).
func (p *Proxy) forwardRequests(f *flow, br *bufio.Reader, up net.Conn, head RequestHead, dst netip.AddrPort) (int64, Decision) {
	var out int64
	client, port, host := f.client, f.port, head.Host
	for {
		n, err := up.Write(head.Raw)
		out += int64(n)
		if err != nil {
			return out, Decision{Allow: true}
		}
		m, err := copyBody(up, br, client, head)
		out += m
		if err != nil || head.Close || head.Upgrade != "" {
			if head.Upgrade != "" && err == nil {
				// After an upgrade the connection is no longer HTTP: the
				// endpoint was allowed, copy the rest as is.
				m, _ := io.Copy(up, br)
				out += m
			}
			return out, Decision{Allow: true}
		}
		next, err := ReadRequestHead(br)
		if err != nil {
			return out, Decision{Allow: true} // the client is done (or sent garbage: close)
		}
		cur := p.Rules() // hot reload applies to the next request too
		d := p.decideRequest(cur, next, port, p.owners(f, cur))
		if next.Host != host {
			d = Decision{Reason: ReasonNotAllowed}
		}
		if !d.Allow {
			p.log(Record{Generation: cur.Generation, Protocol: "http", Source: client.RemoteAddr().String(),
				Destination: dst.String(), Host: next.Host, Port: port, Decision: "deny", Reason: d.Reason, Rule: d.Rule})
			denyHTTP(client, next.Host, port, d.Reason)
			return out, d
		}
		head = next
	}
}

func (p *Proxy) decideRequest(rules *Rules, head RequestHead, port int, binaries []string) Decision {
	if head.Host == "" {
		return Decision{Reason: ReasonNoSNI}
	}
	if head.Connect {
		return Decision{Reason: ReasonNotAllowed}
	}
	if d, ok := refuseName(head.Host, false); !ok {
		return d
	}
	return rules.MatchRequest(head.Host, port, binaries, head.Method, head.Target)
}

// denyHTTP answers a refused request with 403 and closes the connection.
func denyHTTP(client net.Conn, host string, port int, reason Reason) {
	body := fmt.Sprintf("clawrun: egress to %s:%d denied (%s)\n", host, port, reason)
	_ = client.SetWriteDeadline(time.Now().Add(2 * time.Second))
	fmt.Fprintf(client, "HTTP/1.1 403 Forbidden\r\nContent-Type: text/plain\r\nContent-Length: %d\r\nConnection: close\r\n\r\n%s", len(body), body)
	client.Close()
}

// copyBody forwards a request body. A body of known length is spliced
// from the client's socket once the read-ahead buffer is drained; chunked
// bodies go through the framing-checking reader.
func copyBody(up net.Conn, br *bufio.Reader, client net.Conn, head RequestHead) (int64, error) {
	if head.Chunked || head.ContentLength <= 0 {
		return io.Copy(up, head.BodyReader(br))
	}
	fromBuf := min(int64(br.Buffered()), head.ContentLength)
	n, err := io.CopyN(up, br, fromBuf)
	if err != nil || n == head.ContentLength {
		return n, err
	}
	m, err := io.CopyN(up, client, head.ContentLength-n)
	return n + m, err
}
