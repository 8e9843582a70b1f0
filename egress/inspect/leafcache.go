package inspect

import (
	"container/list"
	"crypto/tls"
	"sync"
	"sync/atomic"
	"time"
)

// leafCacheSize bounds the leaves a CA keeps: a container reaching more
// names than this gets the least recently used ones issued again.
const leafCacheSize = 1024

// leafCache holds the leaves of one CA by name, least recently used first
// out. A name being issued has an entry already: the handshakes that ask
// for it meanwhile wait for that one issuance instead of signing their own.
type leafCache struct {
	max    int
	mu     sync.Mutex
	byName map[string]*list.Element // of *leafEntry
	order  *list.List               // front: most recently used
	issued atomic.Int64             // issuances, for tests
}

type leafEntry struct {
	name  string
	ready chan struct{} // closed when cert and err are set
	cert  *tls.Certificate
	err   error
}

func newLeafCache(max int) *leafCache {
	return &leafCache{max: max, byName: make(map[string]*list.Element), order: list.New()}
}

// get returns the cached leaf for name, or the one issue makes, issuing
// it once however many callers ask at the same time. A leaf past its
// NotAfter is issued again; a failed issuance is not cached.
func (c *leafCache) get(name string, now time.Time, issue func(string, time.Time) (*tls.Certificate, error)) (*tls.Certificate, error) {
	c.mu.Lock()
	if el, ok := c.byName[name]; ok {
		e := el.Value.(*leafEntry)
		if !e.settled() || e.err == nil && now.Before(e.cert.Leaf.NotAfter) {
			c.order.MoveToFront(el)
			c.mu.Unlock()
			<-e.ready
			return e.cert, e.err
		}
		c.removeLocked(el)
	}
	e := &leafEntry{name: name, ready: make(chan struct{})}
	c.byName[name] = c.order.PushFront(e)
	for c.order.Len() > c.max {
		c.removeLocked(c.order.Back())
	}
	c.mu.Unlock()

	c.issued.Add(1)
	e.cert, e.err = issue(name, now)
	close(e.ready)
	if e.err != nil {
		c.mu.Lock()
		if el, ok := c.byName[name]; ok && el.Value == e {
			c.removeLocked(el)
		}
		c.mu.Unlock()
	}
	return e.cert, e.err
}

// settled reports whether the entry's issuance is over.
func (e *leafEntry) settled() bool {
	select {
	case <-e.ready:
		return true
	default:
		return false
	}
}

// removeLocked drops an entry (c.mu held). Callers waiting on it still
// get its result.
func (c *leafCache) removeLocked(el *list.Element) {
	delete(c.byName, el.Value.(*leafEntry).name)
	c.order.Remove(el)
}
