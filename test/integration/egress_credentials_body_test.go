package integration

// Credential placeholders in JSON request bodies: replaced on requests to
// the credential's endpoints, refused (403) anywhere else.

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/clawrun/clawrun/test/fakenet"
)

// portHTTPSBody is an HTTPS server of the fake internet that records the
// body of every request (events of kind "https-body", Data the body).
const portHTTPSBody = 8447

var bodyServer struct {
	once sync.Once
	err  error
}

// serveBodies starts the body-recording server once per test process.
func serveBodies(t *testing.T, fn *fakeNet) {
	t.Helper()
	bodyServer.once.Do(func() {
		bodyServer.err = fn.ServeTLS(portHTTPSBody, fakenet.TLSOptions{HTTP: true, Handler: http.HandlerFunc(
			func(w http.ResponseWriter, req *http.Request) {
				body, _ := io.ReadAll(io.LimitReader(req.Body, 1<<20))
				local := ""
				if a, ok := req.Context().Value(http.LocalAddrContextKey).(net.Addr); ok {
					local = a.String()
				}
				fn.Record(fakenet.Event{Kind: "https-body", Local: local, Remote: req.RemoteAddr, Name: req.Host, Path: req.URL.Path, Data: string(body)})
				fmt.Fprintf(w, "received %d bytes\n", len(body))
			})})
	})
	if bodyServer.err != nil {
		t.Fatalf("the body-recording HTTPS server: %v", bodyServer.err)
	}
}

// sawBody matches a request to host whose body was body.
func sawBody(host, body string) seen {
	return seen{fmt.Sprintf("a request to %s with body %q", host, body), func(e fakenet.Event) bool {
		return e.Kind == "https-body" && strings.HasPrefix(e.Name, host) && e.Data == body
	}}
}

// anyBody matches every request to host on portHTTPSBody.
func anyBody(host string) seen {
	return seen{"any request to " + host + " on the body server", func(e fakenet.Event) bool {
		return e.Kind == "https-body" && strings.HasPrefix(e.Name, host)
	}}
}

// TestEgressCredentialJSONBody: the agent POSTs JSON holding
// openshell:resolve:env:API_KEY; the upstream the credential is bound to
// receives the body with the secret in its place, framed by its new
// length (positive control); the same body to another allowed, inspected
// host is refused (403, credential_misdirected) and reaches nothing. The
// secret is in no file clawrun wrote and in no environment of the
// container's processes.
func TestEgressCredentialJSONBody(t *testing.T) {
	r, fn := egressRuntime(t)
	serveBodies(t, fn)
	t.Setenv("CLAWRUN_TEST_API_KEY", credentialSecret)
	ca := writeTemp(t, "upstream-ca.pem", string(fn.CAPEM()))
	cfg := writeTemp(t, "config.yaml", fn.egressYAML()+"  upstream_ca_file: "+ca+fmt.Sprintf(`
  credentials:
    - name: API_KEY
      env: CLAWRUN_TEST_API_KEY
      endpoints:
        - {host: allowed.test, ports: [%d]}
`, portHTTPSBody))
	doc := policyDoc(fmt.Sprintf(`  api:
    endpoints:
      - host: allowed.test
        port: %[1]d
        protocol: rest
        access: read-write
      - host: other.test
        port: %[1]d
        protocol: rest
        access: read-write
`, portHTTPSBody))
	c := fn.startAs(r, newID(t), fn.egressBundle(r, withInline(doc)), "--config", cfg)
	const body = `{"model":"m","api_key":"openshell:resolve:env:API_KEY","n":1}`
	port := strconv.Itoa(portHTTPSBody)

	want := strings.Replace(body, "openshell:resolve:env:API_KEY", credentialSecret, 1)
	line := c.check(echeck{name: "bound host",
		args: []string{"https", "allowed.test", port, "allowed.test", "h1", "allowed.test", "body:" + body, "POST:/v1/chat"},
		out:  "OK issuer=",
		saw:  []seen{sawBody("allowed.test", want)}})
	wantParts(t, line, "200 POST /v1/chat")
	line = c.check(echeck{name: "other host",
		args:  []string{"https", "other.test", port, "other.test", "h1", "other.test", "body:" + body, "POST:/v1/chat"},
		out:   "OK issuer=",
		never: []seen{anyBody("other.test")}})
	wantParts(t, line, "403 POST /v1/chat")
	rec := c.waitRecord(func(rec inspectRecord) bool { return rec.Protocol == "https" && rec.Host == "other.test" })
	if rec.Decision != "deny" || rec.Reason != "credential_misdirected" || !strings.Contains(rec.Detail, "API_KEY") {
		t.Errorf("the refusal's record: %+v", rec)
	}

	st := r.state(c.id)
	if len(filesHolding(t, c.statePath(""), "CLAWRUN_TEST_API_KEY")) == 0 {
		t.Error("the state dir names no credential source: the search reads nothing")
	}
	for _, dir := range []string{c.statePath(""), c.bundle, st.Rootfs, fn.logDir, r.root, fn.dir} {
		if hits := filesHolding(t, dir, credentialSecret); len(hits) > 0 {
			t.Errorf("the secret is in %v", hits)
		}
	}
	if hits := filesHolding(t, r.logPath, credentialSecret); len(hits) > 0 {
		t.Errorf("the secret is in the runtime's log %v", hits)
	}
	if hits := containerEnvironsHolding(t, st.Pid, credentialSecret); len(hits) > 0 {
		t.Errorf("the secret is in the environment of the container's processes %v", hits)
	}
}
