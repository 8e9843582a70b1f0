package proxy

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"net/url"
	"slices"
	"strings"
	"testing"

	"github.com/clawrun/clawrun/egress/credentials"
	"github.com/clawrun/clawrun/egress/decisionlog"
	"github.com/clawrun/clawrun/runtime/policy"
)

const testSecret = "sk-test-4242"

// credentialsFor is a Set of API_KEY, its value testSecret, bound to
// host:port.
func credentialsFor(t *testing.T, host string, port int) *credentials.Set {
	t.Helper()
	s, err := credentials.Load([]credentials.Spec{{Name: "API_KEY", Env: "K",
		Endpoints: []credentials.Endpoint{{Host: host, Ports: []int{port}}}}},
		func(string) (string, bool) { return testSecret, true })
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// recordsJSON is every decision record, as the log would write them.
func (h *proxyHarness) recordsJSON() string {
	h.mu.Lock()
	defer h.mu.Unlock()
	b, _ := json.Marshal(h.records)
	return string(b)
}

// TestProxyInjectsCredential: an inspected request to the endpoint the
// credential is bound to goes upstream with the secret in place of the
// placeholder (positive control); the same placeholder to an endpoint it
// is not bound to is refused (403, credential_misdirected) and never
// reaches the upstream; the log never holds the secret.
func TestProxyInjectsCredential(t *testing.T) {
	for _, tc := range []struct {
		name, boundTo string
		status        int
		upstream      string // what the upstream saw, "" nothing
	}{
		{"bound", tlsHost, 200, "?key=" + url.QueryEscape(testSecret)},
		{"misdirected", "api.other.test", 403, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newInspectHarness(t)
			h.setRules(1, policy.Endpoint{Host: tlsHost, Protocol: "rest", Access: "read-only"})
			h.p.Credentials = credentialsFor(t, tc.boundTo, h.port)
			h.serve()
			c, err := h.dialTLS(h.clients)
			if err != nil {
				t.Fatal(err)
			}
			code, _ := send(t, c, bufio.NewReader(c), "GET", "/v1?key=clawrun:credential:API_KEY", "")
			if code != tc.status {
				t.Fatalf("status %d, want %d", code, tc.status)
			}
			seen := h.up.requests()
			if tc.upstream == "" {
				if len(seen) != 0 {
					t.Fatalf("the upstream saw %q", seen)
				}
				rec := h.waitRecord("the refusal", func(r decisionlog.Record) bool { return r.Protocol == "https" })
				if rec.Decision != "deny" || rec.Reason != credentials.ReasonMisdirected || !strings.Contains(rec.Detail, `"API_KEY"`) {
					t.Errorf("record: %+v", rec)
				}
			} else if want := fmt.Sprintf("GET %s:%d /v1%s", tlsHost, h.port, tc.upstream); !slices.Equal(seen, []string{want}) {
				t.Fatalf("the upstream saw %q, want %q", seen, want)
			}
			if log := h.recordsJSON(); strings.Contains(log, testSecret) {
				t.Errorf("the decision log holds the secret: %s", log)
			}
		})
	}
}

// TestProxyRefusesCredentialInCleartext: a plain-HTTP request with a
// placeholder is refused and never reaches the upstream, even to the
// host the credential is bound to; the same request without one passes.
func TestProxyRefusesCredentialInCleartext(t *testing.T) {
	h := newProxyHarness(t, "web.test")
	up := startRecordingServer(t)
	h.upstream(up.ln.Addr().String())
	h.setRules(1, webRules()...)
	h.p.Credentials = credentialsFor(t, "web.test", h.port)
	h.serve()
	for _, tc := range []struct {
		auth   string
		status string
	}{
		{"Bearer openshell:resolve:env:API_KEY", "[403]"},
		{"Bearer mine", "[200]"},
	} {
		before := len(up.requests())
		c := h.dial()
		if _, err := io.WriteString(c, "GET /public/x HTTP/1.1\r\nHost: web.test\r\nAuthorization: "+tc.auth+"\r\nConnection: close\r\n\r\n"); err != nil {
			t.Fatal(err)
		}
		if got := statuses(t, bufio.NewReader(c)); fmt.Sprint(got) != tc.status {
			t.Errorf("%s: responses %v, want %s", tc.auth, got, tc.status)
		}
		if n := len(up.requests()) - before; (tc.status == "[403]") != (n == 0) {
			t.Errorf("%s: the upstream saw %d requests", tc.auth, n)
		}
	}
	h.waitRecord("the refusal", func(r decisionlog.Record) bool { return r.Reason == ReasonCredentialCleartext })
}
