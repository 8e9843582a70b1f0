// Package credentials injects secrets into the requests the egress filter
// inspects: the agent sends a placeholder (OpenShell's
// openshell:resolve:env:NAME, or clawrun:credential:NAME) in a header,
// the query or a JSON body, and the filter replaces it with the secret
// NAME, only on a request to an endpoint the credential is bound to. A
// placeholder headed
// anywhere else, or naming no credential, refuses the request: the secret
// never leaves for a host it is not meant for, and a typo is not sent as
// it is. The agent never holds the secret.
package credentials

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/url"
	"os"
	"slices"
	"strconv"
	"strings"
	"syscall"

	"github.com/clawrun/clawrun/runtime/policy/hostname"
)

// Spec is one credential as the filter's configuration names it: where
// its value comes from (File, or the filter's environment variable Env),
// never the value itself.
type Spec struct {
	Name      string     `json:"name"`
	File      string     `json:"file,omitempty"`
	Env       string     `json:"env,omitempty"`
	Endpoints []Endpoint `json:"endpoints"`
}

// Endpoint is a host pattern (hostname.ParsePattern's form) and its ports.
type Endpoint struct {
	Host  string `json:"host"`
	Ports []int  `json:"ports"`
}

// Placeholder prefixes; the credential's name follows.
const (
	OpenShellPrefix = "openshell:resolve:env:"
	ClawrunPrefix   = "clawrun:credential:"
)

// Reasons of a refusal, as the decision log records them.
const (
	ReasonMisdirected = "credential_misdirected"
	ReasonUnknown     = "credential_unknown"
)

// Error refuses a request: a placeholder for a host its credential is
// not bound to, or of no credential. It names the credential, never its
// value.
type Error struct {
	Reason string // ReasonMisdirected or ReasonUnknown
	Name   string
	Host   string
}

func (e *Error) Error() string {
	if e.Reason == ReasonUnknown {
		return fmt.Sprintf("no credential %q is configured", e.Name)
	}
	return fmt.Sprintf("credential %q is not bound to %s", e.Name, e.Host)
}

// LogReason is the decision log's reason for the refusal.
func (e *Error) LogReason() string { return e.Reason }

type credential struct {
	value     string
	endpoints []Endpoint
}

// Set holds the credentials of one container. The zero Set (and nil)
// holds none: every placeholder is then unknown.
type Set struct{ byName map[string]credential }

// Load reads the value of every spec: a file must be a regular file owned
// by root that neither group nor others may read (the filter runs as
// root; nothing else should read the secret); an environment variable is
// looked up with getenv and must be set. A value may hold no control
// character: it goes into header fields.
func Load(specs []Spec, getenv func(string) (string, bool)) (*Set, error) {
	s := &Set{byName: map[string]credential{}}
	for _, sp := range specs {
		if _, dup := s.byName[sp.Name]; dup || sp.Name == "" {
			return nil, fmt.Errorf("credential %q: empty or repeated name", sp.Name)
		}
		v, err := value(sp, getenv)
		if err != nil {
			return nil, fmt.Errorf("credential %q: %w", sp.Name, err)
		}
		if v == "" || strings.ContainsFunc(v, isControl) {
			return nil, fmt.Errorf("credential %q: its value is empty or holds a control character", sp.Name)
		}
		s.byName[sp.Name] = credential{value: v, endpoints: sp.Endpoints}
	}
	return s, nil
}

// Value is the secret of credential name, for the filter's own requests
// (the inference route's backend key): it must not be logged. A nil Set
// holds none.
func (s *Set) Value(name string) (string, bool) {
	if s == nil {
		return "", false
	}
	c, ok := s.byName[name]
	return c.value, ok
}

func isControl(r rune) bool { return r < 0x20 || r == 0x7f }

func value(sp Spec, getenv func(string) (string, bool)) (string, error) {
	if (sp.File == "") == (sp.Env == "") {
		return "", errors.New("give exactly one of file and env")
	}
	if sp.Env != "" {
		v, ok := getenv(sp.Env)
		if !ok {
			return "", fmt.Errorf("environment variable %s is not set", sp.Env)
		}
		return v, nil
	}
	return readSecretFile(sp.File)
}

// readSecretFile reads a file only root can read; one trailing newline
// is not part of the value.
func readSecretFile(path string) (string, error) {
	f, err := openSecretFile(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	data := make([]byte, 64<<10)
	n, err := f.Read(data)
	if err != nil {
		return "", fmt.Errorf("%s: %w", path, err)
	}
	if n == len(data) {
		return "", fmt.Errorf("%s: larger than 64 KiB", path)
	}
	return strings.TrimSuffix(strings.TrimSuffix(string(data[:n]), "\n"), "\r"), nil
}

// CheckFile checks, without reading it, that path may hold a credential:
// a regular file (not a symbolic link) owned by root that neither group
// nor others may read.
func CheckFile(path string) error {
	f, err := openSecretFile(path)
	if err == nil {
		f.Close()
	}
	return err
}

func openSecretFile(path string) (*os.File, error) {
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NOFOLLOW|syscall.O_NONBLOCK, 0)
	if err != nil {
		return nil, err
	}
	if err := checkSecretFile(f); err != nil {
		f.Close()
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return f, nil
}

func checkSecretFile(f *os.File) error {
	fi, err := f.Stat()
	if err != nil {
		return err
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	switch {
	case !fi.Mode().IsRegular():
		return errors.New("not a regular file")
	case !ok || st.Uid != 0:
		return errors.New("not owned by root")
	case fi.Mode().Perm()&0o077 != 0:
		return fmt.Errorf("mode %04o lets group or others at it (chmod 600)", fi.Mode().Perm())
	}
	return nil
}

// boundTo reports whether c may go to host:port.
func (c credential) boundTo(host string, port int) bool {
	name, ok := hostname.Canonical(host)
	if !ok {
		return false
	}
	for _, ep := range c.endpoints {
		if slices.Contains(ep.Ports, port) && hostname.Match(ep.Host, name) {
			return true
		}
	}
	return false
}

// Rewrite replaces the placeholders of r's header fields, query and JSON
// body (jsonBody) with their secrets, for a request to host:port (the
// server name the filter matched). It changes nothing and returns an
// *Error when any placeholder names no credential or one not bound to
// host:port.
func (s *Set) Rewrite(host string, port int, r *http.Request) error {
	header, err := s.substituteHeader(r.Header, host, port)
	if err != nil {
		return err
	}
	var query string
	if r.URL != nil {
		q, err := s.substitute(r.URL.RawQuery, host, port, queryPrefixes, url.QueryEscape)
		if err != nil {
			return err
		}
		query = q
	}
	body, err := s.jsonBody(host, port, r)
	if err != nil {
		return err
	}
	r.Header = header
	if r.URL != nil {
		r.URL.RawQuery = query
	}
	if body != nil {
		setBody(r, body)
	}
	return nil
}

// MaxJSONBody bounds the JSON request body read for placeholders, as the
// JSON-RPC rules bound theirs: a larger one is forwarded as it is, unread
// (a placeholder in it reaches the upstream unreplaced, never a secret).
const MaxJSONBody = 1 << 20

// jsonBody returns r's body with its placeholders replaced when r carries
// JSON (Content-Type application/json or */*+json, not content-coded) of
// at most MaxJSONBody bytes with a placeholder in it; nil when there is
// nothing to replace. What it reads of the body is given back to r
// unchanged, so that r is as it was when the caller does not use the
// result.
func (s *Set) jsonBody(host string, port int, r *http.Request) ([]byte, error) {
	// Without credentials there is no secret to put in, and a client that
	// streams its body is not held up reading it.
	if s == nil || len(s.byName) == 0 {
		return nil, nil
	}
	if r.Body == nil || r.Body == http.NoBody || r.ContentLength > MaxJSONBody || !isJSON(r.Header) {
		return nil, nil
	}
	read, err := io.ReadAll(io.LimitReader(r.Body, MaxJSONBody+1))
	r.Body = prepended{io.MultiReader(bytes.NewReader(read), r.Body), r.Body}
	if err != nil {
		return nil, fmt.Errorf("reading the request body: %w", err)
	}
	if len(read) > MaxJSONBody {
		return nil, nil
	}
	if at, _ := nextPlaceholder(string(read), headerPrefixes); at < 0 {
		return nil, nil
	}
	out, err := s.substitute(string(read), host, port, headerPrefixes, jsonEscape)
	if err != nil {
		return nil, err
	}
	return []byte(out), nil
}

// prepended is a body of which some bytes were read ahead: the Reader
// gives them first, Close closes the original.
type prepended struct {
	io.Reader
	io.Closer
}

// isJSON reports a JSON body that is not content-coded (compressed
// bodies are not read).
func isJSON(h http.Header) bool {
	if ce := h.Get("Content-Encoding"); ce != "" && !strings.EqualFold(ce, "identity") {
		return false
	}
	mt, _, err := mime.ParseMediaType(h.Get("Content-Type"))
	return err == nil && (mt == "application/json" || strings.HasSuffix(mt, "+json"))
}

// setBody makes body r's whole body, framed by its length (a chunked
// request becomes a fixed-length one).
func setBody(r *http.Request, body []byte) {
	if r.Body != nil {
		r.Body.Close()
	}
	r.Body = io.NopCloser(bytes.NewReader(body))
	r.GetBody = func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(body)), nil }
	r.ContentLength = int64(len(body))
	r.TransferEncoding = nil
	r.Header.Del("Transfer-Encoding")
	if r.Header.Get("Content-Length") != "" {
		r.Header.Set("Content-Length", strconv.Itoa(len(body)))
	}
}

// jsonEscape writes a secret inside a JSON string, where placeholders
// are: a quote or backslash of it escaped (Load refuses control
// characters).
func jsonEscape(v string) string {
	return strings.NewReplacer(`\`, `\\`, `"`, `\"`).Replace(v)
}

func noEscape(s string) string { return s }

// substituteHeader returns header with its placeholders replaced: a copy
// (the request is changed only once every placeholder resolved), or
// header itself when it holds none, as most requests do.
func (s *Set) substituteHeader(header http.Header, host string, port int) (http.Header, error) {
	if !headerHasPlaceholder(header) {
		return header, nil
	}
	out := header.Clone()
	for _, vs := range out {
		for i, v := range vs {
			nv, err := s.substitute(v, host, port, headerPrefixes, noEscape)
			if err != nil {
				return nil, err
			}
			vs[i] = nv
		}
	}
	return out, nil
}

func headerHasPlaceholder(header http.Header) bool {
	for _, vs := range header {
		for _, v := range vs {
			if at, _ := nextPlaceholder(v, headerPrefixes); at >= 0 {
				return true
			}
		}
	}
	return false
}

// substitute replaces every placeholder of text (spelt with one of
// prefixes), its secret escaped.
func (s *Set) substitute(text, host string, port int, prefixes []string, escape func(string) string) (string, error) {
	if at, _ := nextPlaceholder(text, prefixes); at < 0 {
		return text, nil
	}
	var b strings.Builder
	for {
		at, prefix := nextPlaceholder(text, prefixes)
		if at < 0 {
			b.WriteString(text)
			return b.String(), nil
		}
		b.WriteString(text[:at])
		rest := text[at+len(prefix):]
		name := rest[:nameLen(rest)]
		c, err := s.lookup(name, host, port)
		if err != nil {
			return "", err
		}
		b.WriteString(escape(c.value))
		text = rest[len(name):]
	}
}

func (s *Set) lookup(name, host string, port int) (credential, error) {
	var c credential
	ok := false
	if s != nil {
		c, ok = s.byName[name]
	}
	if !ok {
		return c, &Error{Reason: ReasonUnknown, Name: name, Host: host}
	}
	if !c.boundTo(host, port) {
		return c, &Error{Reason: ReasonMisdirected, Name: name, Host: host}
	}
	return c, nil
}

// HasPlaceholder reports whether text holds a placeholder of either
// spelling, as such or percent-encoded.
func HasPlaceholder(text string) bool {
	at, _ := nextPlaceholder(text, queryPrefixes)
	return at >= 0
}

// Placeholder prefixes as a header field carries them, and as a query
// may: also with the colons percent-encoded (as form encoders write them).
var (
	headerPrefixes = []string{OpenShellPrefix, ClawrunPrefix}
	queryPrefixes  = append(slices.Clone(headerPrefixes),
		strings.ReplaceAll(OpenShellPrefix, ":", "%3A"), strings.ReplaceAll(ClawrunPrefix, ":", "%3A"),
		strings.ReplaceAll(OpenShellPrefix, ":", "%3a"), strings.ReplaceAll(ClawrunPrefix, ":", "%3a"))
)

// nextPlaceholder finds the first placeholder of text, spelt with one of
// prefixes: its index and its prefix (-1 when there is none).
func nextPlaceholder(text string, prefixes []string) (int, string) {
	at, prefix := -1, ""
	for _, p := range prefixes {
		if i := strings.Index(text, p); i >= 0 && (at < 0 || i < at) {
			at, prefix = i, p
		}
	}
	return at, prefix
}

// nameLen is the length of the credential name at the start of s.
func nameLen(s string) int {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c == '_' || c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z' || i > 0 && c >= '0' && c <= '9' {
			continue
		}
		return i
	}
	return len(s)
}
