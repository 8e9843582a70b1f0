package inspect

import (
	"net"
	"net/http"
	"net/url"
	"strings"
)

// A connection is inspected because the filter matched its SNI; a request
// inside it must be for that same name, or the check of the SNI checked
// nothing (domain fronting: SNI an allowed CDN name, Host another site on
// the same CDN). These checks run before Decide is even asked.

// refusal is a request the engine refuses by itself.
type refusal struct {
	status int
	reason string
	detail string
}

// newRequest checks r against the connection and returns what Decide is to
// see of it, or why it is refused: CONNECT; a Host or :authority that is
// not the connection's server name (a port, if any, must be the
// connection's); a Host field that disagrees with the :authority (HTTP/2);
// an absolute-form target of another scheme than the connection's; a body on a method whose body
// some servers ignore; an upgrade to anything but WebSocket.
func (s *session) newRequest(r *http.Request) (*Request, *refusal) {
	req := &Request{
		Proto:     r.Proto,
		Method:    r.Method,
		Host:      s.opts.ServerName,
		Authority: r.Host,
		Header:    r.Header,
	}
	if r.Method == http.MethodConnect {
		return req, &refusal{http.StatusForbidden, ReasonConnect, "CONNECT is not inspected"}
	}
	if !s.authorityIsServerName(r.Host) {
		return req, &refusal{http.StatusMisdirectedRequest, ReasonMisdirected, "Host " + clip(r.Host) + " is not " + s.opts.ServerName}
	}
	for _, h := range r.Header.Values("Host") { // HTTP/2 (net/http takes HTTP/1's out)
		if h != r.Host {
			return req, &refusal{http.StatusMisdirectedRequest, ReasonMisdirected, "Host field " + clip(h) + " differs from :authority"}
		}
	}
	if r.URL.IsAbs() && r.URL.Scheme != s.scheme() {
		return req, &refusal{http.StatusMisdirectedRequest, ReasonMisdirected, "absolute-form target with scheme " + clip(r.URL.Scheme)}
	}
	req.Path, req.RawQuery = targetPath(r.RequestURI), r.URL.RawQuery
	if !strings.HasPrefix(req.Path, "/") && (req.Path != "*" || r.Method != http.MethodOptions) {
		return req, &refusal{http.StatusBadRequest, ReasonMalformed, "request target " + clip(r.RequestURI)}
	}
	decoded, err := url.PathUnescape(req.Path)
	if err != nil {
		return req, &refusal{http.StatusBadRequest, ReasonMalformed, "path: " + err.Error()}
	}
	req.DecodedPath = decoded
	if r.ContentLength != 0 && bodyless[r.Method] {
		return req, &refusal{http.StatusBadRequest, ReasonMalformed, "a body on " + r.Method}
	}
	if up := upgradeOf(r.Header); up != "" {
		if !strings.EqualFold(up, "websocket") || r.ProtoMajor != 1 {
			return req, &refusal{http.StatusForbidden, ReasonUpgrade, "upgrade to " + clip(up)}
		}
		req.WebSocket = true
	}
	return req, nil
}

// scheme is the scheme of the client's connection.
func (s *session) scheme() string {
	if s.opts.Cleartext {
		return "http"
	}
	return "https"
}

// bodyless are the methods whose body some servers do not read, and would
// read as the next request: such a body is refused, as the filter refuses
// it on plain HTTP.
var bodyless = map[string]bool{http.MethodGet: true, http.MethodHead: true, http.MethodDelete: true, http.MethodTrace: true}

// authorityIsServerName reports whether a Host or :authority names the
// connection's server name (any case), and no port or the connection's.
func (s *session) authorityIsServerName(authority string) bool {
	host, port := authority, ""
	if i := strings.LastIndexByte(authority, ':'); i >= 0 {
		var err error
		if host, port, err = net.SplitHostPort(authority); err != nil {
			return false
		}
		if port != s.port || port == "" {
			return false
		}
	}
	return equalFoldASCII(host, s.opts.ServerName)
}

// equalFoldASCII compares host names without regard to ASCII case, and
// only ASCII case: strings.EqualFold would take "ſ" (U+017F) for "s" and
// the Kelvin sign for "k", which no DNS name has.
func equalFoldASCII(a, b string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := 0; i < len(a); i++ {
		if lowerASCII(a[i]) != lowerASCII(b[i]) {
			return false
		}
	}
	return true
}

func lowerASCII(c byte) byte {
	if 'A' <= c && c <= 'Z' {
		return c + 'a' - 'A'
	}
	return c
}

// targetPath is the path of a request target as sent (origin-form, or the
// part of an absolute-form target after its authority), "*" for an
// asterisk-form one; newRequest refuses anything else it returns.
func targetPath(target string) string {
	if !strings.HasPrefix(target, "/") && target != "*" {
		// Absolute-form: scheme "://" authority path-abempty.
		if _, rest, ok := strings.Cut(target, "://"); ok {
			target = rest
			if i := strings.IndexAny(target, "/?"); i >= 0 {
				target = target[i:]
			} else {
				target = ""
			}
		}
	}
	if path, _, ok := strings.Cut(target, "?"); ok {
		target = path
	}
	if target == "" {
		return "/"
	}
	return target
}

// upgradeOf is the protocol a request asks to upgrade to (an Upgrade
// field named by Connection: upgrade), "" if none.
func upgradeOf(h http.Header) string {
	for _, v := range h.Values("Connection") {
		for t := range strings.SplitSeq(v, ",") {
			if strings.EqualFold(strings.TrimSpace(t), "upgrade") {
				return strings.Join(h.Values("Upgrade"), ", ")
			}
		}
	}
	return ""
}

// clip bounds what a client sent before it goes into a log line or an
// answer.
func clip(s string) string {
	const max = 200
	if len(s) > max {
		return s[:max] + "..."
	}
	return s
}
