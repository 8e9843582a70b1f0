package inspect

import (
	"fmt"
	"io"
	"net/http"
	"sync"
)

// A JSON-RPC body is read whole before Decide, held while it is decided and
// sent, and the upstream gets those very bytes. The engine holds at most
// rpcBodiesAtOnce such bodies at a time (a token each): a container with
// many connections and streams cannot make the filter hold more.

// readRPC reads the body of a request to inspect as JSON-RPC into
// req.RPC, and puts it back for the upstream, framed by its length. An
// empty body (MCP's GET of the server's stream, a DELETE ending a
// session) has no calls. The returned body (nil on a refusal, or when
// there is none) gives its token back once sent or freed.
func (s *session) readRPC(r *http.Request, req *Request) (*heldBody, *refusal) {
	if ce := r.Header.Get("Content-Encoding"); ce != "" && ce != "identity" {
		return nil, &refusal{http.StatusUnsupportedMediaType, ReasonRPCInvalid, "Content-Encoding " + clip(ce)}
	}
	req.RPC = &RPC{}
	if r.ContentLength == 0 {
		return nil, nil
	}
	max := s.e.maxRPCBody
	if r.ContentLength > max {
		return nil, &refusal{http.StatusRequestEntityTooLarge, ReasonBodyTooLarge, fmt.Sprintf("body of %d bytes, over %d", r.ContentLength, max)}
	}
	select {
	case s.e.rpcBodies <- struct{}{}:
	case <-r.Context().Done():
		return nil, &refusal{http.StatusServiceUnavailable, ReasonCanceled, "waiting to read the body"}
	}
	body := &heldBody{release: func() { <-s.e.rpcBodies }}
	data, err := io.ReadAll(io.LimitReader(r.Body, max+1))
	switch {
	case err != nil:
		body.free()
		return nil, &refusal{http.StatusBadRequest, ReasonMalformed, "body: " + err.Error()}
	case int64(len(data)) > max:
		body.free()
		return nil, &refusal{http.StatusRequestEntityTooLarge, ReasonBodyTooLarge, fmt.Sprintf("body over %d bytes", max)}
	case len(data) > 0:
		if req.RPC, err = ParseRPC(data); err != nil {
			body.free()
			return nil, &refusal{http.StatusBadRequest, ReasonRPCInvalid, err.Error()}
		}
	}
	body.data = data
	r.Body = body
	r.ContentLength = int64(len(data))
	r.TransferEncoding = nil
	r.Header.Del("Expect") // the body is here already
	return body, nil
}

// heldBody is a body the engine read, on its way upstream. It drops its
// bytes and gives its token back when read to its end or closed (the
// Transport closes a request's body once it is sent, or failed), or freed
// (a request that was refused).
type heldBody struct {
	mu      sync.Mutex
	data    []byte
	release func() // gives the token back; nil once called
}

func (b *heldBody) Read(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if len(b.data) == 0 {
		b.freeLocked()
		return 0, io.EOF
	}
	n := copy(p, b.data)
	b.data = b.data[n:]
	return n, nil
}

func (b *heldBody) Close() error {
	b.free()
	return nil
}

// free drops the bytes and gives the token back (once; nil b does
// nothing).
func (b *heldBody) free() {
	if b == nil {
		return
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	b.freeLocked()
}

func (b *heldBody) freeLocked() {
	b.data = nil
	if b.release != nil {
		b.release()
		b.release = nil
	}
}
