package credentials

import (
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

const secret = "sk-live-0123456789"

func testSet(t *testing.T) *Set {
	t.Helper()
	env := map[string]string{"CLAWRUN_TEST_API_KEY": secret}
	s, err := Load([]Spec{{Name: "API_KEY", Env: "CLAWRUN_TEST_API_KEY", Endpoints: []Endpoint{
		{Host: "api.example.com", Ports: []int{443}}, {Host: "*.example.org", Ports: []int{8443}}}}},
		func(k string) (string, bool) { v, ok := env[k]; return v, ok })
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func request(t *testing.T, target string, header map[string]string) *http.Request {
	t.Helper()
	u, err := url.Parse(target)
	if err != nil {
		t.Fatal(err)
	}
	r := &http.Request{URL: u, Header: http.Header{}}
	for k, v := range header {
		r.Header.Set(k, v)
	}
	return r
}

func TestRewriteSubstitutes(t *testing.T) {
	s := testSet(t)
	for _, tc := range []struct {
		name, host string
		port       int
		target     string
		header     map[string]string
		wantHeader map[string]string
		wantQuery  string
	}{
		{name: "openshell header", host: "api.example.com", port: 443, target: "https://api.example.com/v1",
			header:     map[string]string{"Authorization": "Bearer openshell:resolve:env:API_KEY"},
			wantHeader: map[string]string{"Authorization": "Bearer " + secret}},
		{name: "clawrun header", host: "API.example.com.", port: 443, target: "https://api.example.com/v1",
			header:     map[string]string{"X-Api-Key": "clawrun:credential:API_KEY", "Accept": "text/plain"},
			wantHeader: map[string]string{"X-Api-Key": secret, "Accept": "text/plain"}},
		{name: "twice in one field", host: "a.example.org", port: 8443, target: "https://a.example.org/",
			header:     map[string]string{"X": "clawrun:credential:API_KEY,openshell:resolve:env:API_KEY;"},
			wantHeader: map[string]string{"X": secret + "," + secret + ";"}},
		{name: "query", host: "api.example.com", port: 443, target: "https://api.example.com/v1?key=openshell:resolve:env:API_KEY&x=1",
			wantQuery: "key=" + url.QueryEscape(secret) + "&x=1"},
		{name: "percent-encoded in the query", host: "api.example.com", port: 443, target: "https://api.example.com/v1?key=openshell%3Aresolve%3Aenv%3AAPI_KEY",
			wantQuery: "key=" + url.QueryEscape(secret)},
		{name: "percent-encoded in a header is not one", host: "api.example.com", port: 443, target: "https://api.example.com/",
			header: map[string]string{"X": "clawrun%3Acredential%3AAPI_KEY"}, wantHeader: map[string]string{"X": "clawrun%3Acredential%3AAPI_KEY"}},
		{name: "no placeholder", host: "other.example", port: 443, target: "https://other.example/?a=b",
			header: map[string]string{"Authorization": "Bearer mine"}, wantHeader: map[string]string{"Authorization": "Bearer mine"}, wantQuery: "a=b"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := request(t, tc.target, tc.header)
			if err := s.Rewrite(tc.host, tc.port, r); err != nil {
				t.Fatal(err)
			}
			for k, v := range tc.wantHeader {
				if got := r.Header.Get(k); got != v {
					t.Errorf("%s: %q, want %q", k, got, v)
				}
			}
			if tc.wantQuery != "" && r.URL.RawQuery != tc.wantQuery {
				t.Errorf("query %q, want %q", r.URL.RawQuery, tc.wantQuery)
			}
		})
	}
}

func TestRewriteRefuses(t *testing.T) {
	s := testSet(t)
	for _, tc := range []struct {
		name, host string
		port       int
		target     string
		header     map[string]string
		reason     string
	}{
		{name: "other host", host: "evil.example", port: 443, target: "https://evil.example/",
			header: map[string]string{"Authorization": "Bearer openshell:resolve:env:API_KEY"}, reason: ReasonMisdirected},
		{name: "bound host, other port", host: "api.example.com", port: 8443, target: "https://api.example.com:8443/",
			header: map[string]string{"Authorization": "Bearer clawrun:credential:API_KEY"}, reason: ReasonMisdirected},
		{name: "wildcard does not match apex", host: "example.org", port: 8443, target: "https://example.org:8443/",
			header: map[string]string{"X": "clawrun:credential:API_KEY"}, reason: ReasonMisdirected},
		{name: "other host in query", host: "evil.example", port: 443, target: "https://evil.example/?k=clawrun:credential:API_KEY",
			reason: ReasonMisdirected},
		{name: "percent-encoded to another host", host: "evil.example", port: 443, target: "https://evil.example/?k=clawrun%3acredential%3aAPI_KEY",
			reason: ReasonMisdirected},
		{name: "unknown", host: "api.example.com", port: 443, target: "https://api.example.com/",
			header: map[string]string{"Authorization": "Bearer openshell:resolve:env:API_KY"}, reason: ReasonUnknown},
		{name: "empty name", host: "api.example.com", port: 443, target: "https://api.example.com/",
			header: map[string]string{"Authorization": "Bearer clawrun:credential:"}, reason: ReasonUnknown},
		{name: "a known one and an unknown one", host: "api.example.com", port: 443, target: "https://api.example.com/",
			header: map[string]string{"A": "clawrun:credential:API_KEY", "B": "clawrun:credential:NOPE"}, reason: ReasonUnknown},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := request(t, tc.target, tc.header)
			before := r.Header.Clone()
			query := r.URL.RawQuery
			err := s.Rewrite(tc.host, tc.port, r)
			var cerr *Error
			if !errors.As(err, &cerr) || cerr.LogReason() != tc.reason {
				t.Fatalf("Rewrite = %v, want %s", err, tc.reason)
			}
			if strings.Contains(err.Error(), secret) {
				t.Errorf("the error holds the secret: %v", err)
			}
			for k := range before {
				if r.Header.Get(k) != before.Get(k) {
					t.Errorf("%s changed on a refused request: %q", k, r.Header.Get(k))
				}
			}
			if r.URL.RawQuery != query {
				t.Errorf("query changed on a refused request: %q", r.URL.RawQuery)
			}
		})
	}
	// No credential configured: every placeholder is unknown.
	var none *Set
	err := none.Rewrite("api.example.com", 443, request(t, "https://api.example.com/", map[string]string{"A": "clawrun:credential:API_KEY"}))
	var cerr *Error
	if !errors.As(err, &cerr) || cerr.Reason != ReasonUnknown {
		t.Errorf("nil Set: %v, want %s", err, ReasonUnknown)
	}
}

func TestHasPlaceholder(t *testing.T) {
	for text, want := range map[string]bool{
		"Bearer openshell:resolve:env:K":        true,
		"a=clawrun:credential:K":                true,
		"a=openshell%3Aresolve%3Aenv%3AK":       true,
		"a=clawrun%3acredential%3aK":            true,
		"openshell:resolve:file:K":              false,
		"GET / HTTP/1.1\r\nHost: a.example\r\n": false,
	} {
		if got := HasPlaceholder(text); got != want {
			t.Errorf("HasPlaceholder(%q) = %v", text, got)
		}
	}
}

func TestLoadFile(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Fatal("needs root: the secret file must be owned by root")
	}
	dir := t.TempDir()
	write := func(name string, mode os.FileMode, data string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(data), mode); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(p, mode); err != nil {
			t.Fatal(err)
		}
		return p
	}
	ok := write("ok", 0o600, secret+"\n")
	noEnv := func(string) (string, bool) { return "", false }
	s, err := Load([]Spec{{Name: "K", File: ok, Endpoints: []Endpoint{{Host: "a.example", Ports: []int{443}}}}}, noEnv)
	if err != nil {
		t.Fatal(err)
	}
	r := request(t, "https://a.example/", map[string]string{"A": "clawrun:credential:K"})
	if err := s.Rewrite("a.example", 443, r); err != nil || r.Header.Get("A") != secret {
		t.Fatalf("%v %q", err, r.Header.Get("A"))
	}

	groupReadable := write("group", 0o640, secret)
	notRoot := write("notroot", 0o600, secret)
	if err := os.Chown(notRoot, 1000, 0); err != nil {
		t.Fatal(err)
	}
	link := filepath.Join(dir, "link")
	if err := os.Symlink(ok, link); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		spec Spec
		want string
	}{
		{Spec{Name: "K", File: groupReadable}, "mode 0640 lets group or others at it"},
		{Spec{Name: "K", File: notRoot}, "not owned by root"},
		{Spec{Name: "K", File: link}, "too many levels of symbolic links"},
		{Spec{Name: "K", File: dir + "/missing"}, "no such file"},
		{Spec{Name: "K", File: write("empty", 0o600, "")}, "EOF"},
		{Spec{Name: "K", File: write("ctl", 0o600, "a\nb")}, "control character"},
		{Spec{Name: "K", Env: "NOPE"}, "environment variable NOPE is not set"},
		{Spec{Name: "K"}, "give exactly one of file and env"},
	} {
		_, err := Load([]Spec{tc.spec}, noEnv)
		if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), `credential "K"`) {
			t.Errorf("Load(%+v) = %v, want %q", tc.spec, err, tc.want)
		}
	}
}

// jsonRequest is a POST with body and Content-Type ctype, its length
// known (or -1: chunked).
func jsonRequest(t *testing.T, target, ctype, body string, length int64) *http.Request {
	t.Helper()
	r := request(t, target, map[string]string{"Content-Type": ctype})
	r.Method = http.MethodPost
	r.Body = io.NopCloser(strings.NewReader(body))
	r.ContentLength = length
	if length >= 0 {
		r.Header.Set("Content-Length", strconv.FormatInt(length, 10))
	} else {
		r.TransferEncoding = []string{"chunked"}
	}
	return r
}

// bodyOf reads r's body and checks that its framing says its length.
func bodyOf(t *testing.T, r *http.Request) string {
	t.Helper()
	data, err := io.ReadAll(r.Body)
	if err != nil {
		t.Fatal(err)
	}
	if r.ContentLength != int64(len(data)) && r.ContentLength != -1 {
		t.Errorf("ContentLength %d, the body has %d bytes", r.ContentLength, len(data))
	}
	if cl := r.Header.Get("Content-Length"); cl != "" && cl != strconv.Itoa(len(data)) {
		t.Errorf("Content-Length %s, the body has %d bytes", cl, len(data))
	}
	return string(data)
}

func TestRewriteJSONBody(t *testing.T) {
	s := testSet(t)
	const placeholderBody = `{"key":"openshell:resolve:env:API_KEY","also":"clawrun:credential:API_KEY","n":1}`
	replaced := `{"key":"` + secret + `","also":"` + secret + `","n":1}`
	for _, tc := range []struct {
		name, ctype, body string
		length            int64
		want              string
	}{
		{"json", "application/json", placeholderBody, int64(len(placeholderBody)), replaced},
		{"json with charset, chunked", "application/json; charset=utf-8", placeholderBody, -1, replaced},
		{"+json", "application/vnd.api+json", placeholderBody, int64(len(placeholderBody)), replaced},
		{"not json: not read", "text/plain", placeholderBody, int64(len(placeholderBody)), placeholderBody},
		{"no placeholder", "application/json", `{"a":"b"}`, 9, `{"a":"b"}`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := jsonRequest(t, "https://api.example.com/v1", tc.ctype, tc.body, tc.length)
			if err := s.Rewrite("api.example.com", 443, r); err != nil {
				t.Fatal(err)
			}
			if got := bodyOf(t, r); got != tc.want {
				t.Errorf("body %q, want %q", got, tc.want)
			}
			if tc.want != tc.body && (r.ContentLength != int64(len(tc.want)) || len(r.TransferEncoding) > 0) {
				t.Errorf("a replaced body is framed by its length: ContentLength %d, TransferEncoding %v", r.ContentLength, r.TransferEncoding)
			}
			if r.GetBody != nil {
				if b, _ := r.GetBody(); b != nil {
					if data, _ := io.ReadAll(b); string(data) != tc.want {
						t.Errorf("GetBody %q, want %q", data, tc.want)
					}
				}
			}
		})
	}
}

// TestRewriteJSONBodyRefused: a placeholder in the JSON body of a request
// to a host the credential is not bound to, or naming no credential, is
// refused as in a header, and the request (its body) is left as it was.
func TestRewriteJSONBodyRefused(t *testing.T) {
	s := testSet(t)
	for _, tc := range []struct {
		name, body, host, reason string
	}{
		{"misdirected", `{"key":"openshell:resolve:env:API_KEY"}`, "evil.example", ReasonMisdirected},
		{"unknown", `{"key":"clawrun:credential:NOPE"}`, "api.example.com", ReasonUnknown},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := jsonRequest(t, "https://"+tc.host+"/v1", "application/json", tc.body, int64(len(tc.body)))
			err := s.Rewrite(tc.host, 443, r)
			var ce *Error
			if !errors.As(err, &ce) || ce.Reason != tc.reason {
				t.Fatalf("err %v, want reason %s", err, tc.reason)
			}
			if got := bodyOf(t, r); got != tc.body {
				t.Errorf("the refused request's body is now %q, want it unchanged", got)
			}
		})
	}
}

// TestRewriteJSONBodyUnread: bodies that are not read (too large,
// content-coded) are forwarded whole and unchanged.
func TestRewriteJSONBodyUnread(t *testing.T) {
	s := testSet(t)
	large := `{"key":"openshell:resolve:env:API_KEY","pad":"` + strings.Repeat("x", MaxJSONBody) + `"}`
	for _, tc := range []struct {
		name, body, encoding string
		length               int64
	}{
		{"over the bound, length known", large, "", int64(len(large))},
		{"over the bound, chunked", large, "", -1},
		{"gzip", `{"key":"openshell:resolve:env:API_KEY"}`, "gzip", 39},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := jsonRequest(t, "https://evil.example/", "application/json", tc.body, tc.length)
			if tc.encoding != "" {
				r.Header.Set("Content-Encoding", tc.encoding)
			}
			if err := s.Rewrite("evil.example", 443, r); err != nil {
				t.Fatal(err)
			}
			if got := bodyOf(t, r); got != tc.body {
				t.Errorf("body changed: %d bytes, want %d unchanged", len(got), len(tc.body))
			}
		})
	}
}

// TestRewriteJSONBodyEscapes: a secret with a quote or a backslash stays
// one JSON string.
func TestRewriteJSONBodyEscapes(t *testing.T) {
	value := `a"b\c`
	s, err := Load([]Spec{{Name: "K", Env: "V", Endpoints: []Endpoint{{Host: "api.example.com", Ports: []int{443}}}}},
		func(string) (string, bool) { return value, true })
	if err != nil {
		t.Fatal(err)
	}
	body := `{"k":"clawrun:credential:K"}`
	r := jsonRequest(t, "https://api.example.com/", "application/json", body, int64(len(body)))
	if err := s.Rewrite("api.example.com", 443, r); err != nil {
		t.Fatal(err)
	}
	var got map[string]string
	if err := json.Unmarshal([]byte(bodyOf(t, r)), &got); err != nil || got["k"] != value {
		t.Errorf("decoded %q (%v), want %q", got["k"], err, value)
	}
}

// TestRewriteWithoutCredentialsLeavesBodyUnread: with no credentials
// configured, a JSON body is not read (a client streaming its body is not
// held up), and the request goes on as it came.
func TestRewriteWithoutCredentialsLeavesBodyUnread(t *testing.T) {
	empty, err := Load(nil, func(string) (string, bool) { return "", false })
	if err != nil {
		t.Fatal(err)
	}
	for name, s := range map[string]*Set{"nil": nil, "empty": empty} {
		pr, pw := io.Pipe() // a body whose end never comes
		defer pw.Close()
		r, _ := http.NewRequest("POST", "https://api.example.com/v1", pr)
		r.Header.Set("Content-Type", "application/json")
		r.ContentLength = -1
		done := make(chan error, 1)
		go func() { done <- s.Rewrite("api.example.com", 443, r) }()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("%s set: %v", name, err)
			}
		case <-time.After(2 * time.Second):
			t.Fatalf("%s set: Rewrite waits for the body", name)
		}
		if r.Body != pr {
			t.Errorf("%s set: the body was replaced", name)
		}
	}
}

// A request without a placeholder, the common case, is left as it is
// without a copy of its header: Rewrite runs on every inspected request.
// The control: a request with one gets a header of its own.
func TestRewriteWithoutPlaceholderCopiesNothing(t *testing.T) {
	s := testSet(t)
	r := request(t, "https://api.example.com/v1/models?limit=10", map[string]string{
		"Accept": "application/json", "User-Agent": "agent/1.0", "Content-Type": "application/json", "X-Request-Id": "42"})
	header := r.Header
	allocs := testing.AllocsPerRun(100, func() {
		if err := s.Rewrite("api.example.com", 443, r); err != nil {
			t.Fatal(err)
		}
	})
	if allocs != 0 {
		t.Errorf("Rewrite of a request without a placeholder: %v allocations, want 0", allocs)
	}
	if r.Header.Get("User-Agent") != "agent/1.0" || r.URL.RawQuery != "limit=10" {
		t.Errorf("request changed: %v %q", r.Header, r.URL.RawQuery)
	}
	r.Header.Set("Authorization", "Bearer openshell:resolve:env:API_KEY")
	if err := s.Rewrite("api.example.com", 443, r); err != nil {
		t.Fatal(err)
	}
	if got := r.Header.Get("Authorization"); got != "Bearer "+secret {
		t.Fatalf("control: Authorization %q", got)
	}
	if header.Get("Authorization") == "Bearer "+secret {
		t.Fatal("control: the secret went into the header the request came with")
	}
}
