package integration

// Inference routing: with egress.inference configured, inference.local
// resolves in the container and its requests go to the backend with the
// backend's key, the agent's own keys and unlisted header fields dropped,
// streamed responses passed as they come.

import (
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/clawrun/clawrun/test/fakenet"
)

// portInference is the fake internet's model backend: each request is an
// event of kind inference (Name: the Host, Path: the request-target,
// Data: the header fields the test looks at). /v1/stream sends one event,
// holds the rest until /release is asked, then sends the second.
const portInference = 8446

var inferenceServer struct {
	once    sync.Once
	err     error
	release chan struct{}
}

func (fn *fakeNet) startInferenceBackend(t *testing.T) {
	t.Helper()
	inferenceServer.once.Do(func() { inferenceServer.err = fn.listenInference() })
	if inferenceServer.err != nil {
		t.Fatalf("the fake internet's model backend on %d: %v", portInference, inferenceServer.err)
	}
}

func (fn *fakeNet) listenInference() error {
	inferenceServer.release = make(chan struct{}, 1)
	return fn.ServeTLS(portInference, fakenet.TLSOptions{HTTP: true, Handler: http.HandlerFunc(serveInference(fn))})
}

func serveInference(fn *fakeNet) func(http.ResponseWriter, *http.Request) {
	return func(w http.ResponseWriter, req *http.Request) {
		fn.Record(fakenet.Event{Kind: "inference", Name: req.Host, Path: req.URL.RequestURI(), Data: inferenceFields(req.Header)})
		switch req.URL.Path {
		case "/release":
			select {
			case inferenceServer.release <- struct{}{}:
			default:
			}
		case "/v1/stream":
			w.Header().Set("Content-Type", "text/event-stream")
			fmt.Fprint(w, "data: first\n\n")
			w.(http.Flusher).Flush()
			select {
			case <-inferenceServer.release:
				fmt.Fprint(w, "data: second\n\n")
			case <-time.After(10 * time.Second):
				fmt.Fprint(w, "data: never-released\n\n")
			}
		default:
			fmt.Fprintln(w, "ok")
		}
	}
}

// inferenceFields are the header fields the tests look at, in one string.
func inferenceFields(h http.Header) string {
	var parts []string
	for _, name := range []string{"Authorization", "X-Api-Key", "X-Agent-Secret", "Content-Type", "Anthropic-Version"} {
		parts = append(parts, name+"="+strings.Join(h.Values(name), ","))
	}
	return strings.Join(parts, ";")
}

// sawInference matches a backend request to path carrying fields.
func sawInference(path, fields string) seen {
	return seen{fmt.Sprintf("a backend request for %s with %s", path, fields), func(e fakenet.Event) bool {
		return e.Kind == "inference" && e.Path == path && e.Data == fields
	}}
}

// anyInference matches every backend request.
var anyInference = seen{"any backend request", func(e fakenet.Event) bool { return e.Kind == "inference" }}

const inferenceSecret = "sk-backend-test-1a2b3c4d"

// inferencePolicy allows other.test only: neither inference.local nor the
// backend's own name.
var inferencePolicy = policyDoc(`  web:
    endpoints:
      - host: other.test
        port: 443
`)

// TestEgressInferenceRouting: https://inference.local reaches the backend
// with the configured key in place of the agent's Authorization, only
// allowlisted header fields, an SSE response delivered event by event; a
// decision record per request. The backend's own name stays denied to the
// agent (control: the route, not the policy, reaches it).
func TestEgressInferenceRouting(t *testing.T) {
	r, fn := egressRuntime(t)
	fn.startInferenceBackend(t)
	t.Setenv("CLAWRUN_TEST_MODEL_KEY", inferenceSecret)
	ca := writeTemp(t, "upstream-ca.pem", string(fn.CAPEM()))
	port := strconv.Itoa(portInference)
	cfg := writeTemp(t, "config.yaml", fn.egressYAML()+"  upstream_ca_file: "+ca+`
  credentials:
    - name: MODEL_KEY
      env: CLAWRUN_TEST_MODEL_KEY
      endpoints:
        - {host: allowed.test, ports: [`+port+`]}
  inference:
    base_url: https://allowed.test:`+port+`
    credential: MODEL_KEY
`)
	c := fn.startAs(r, newID(t), fn.egressBundle(r, withInline(inferencePolicy)), "--config", cfg)

	c.check(echeck{name: "inference.local resolves",
		args:  []string{"dns", fn.ip(hDNS), "inference.local"},
		out:   "OK A:100.127.",
		never: []seen{queryContaining("inference")}})
	line := c.check(echeck{name: "request with the agent's own key",
		args: []string{"https", "inference.local", "443", "inference.local", "h1", "inference.local",
			"header:Authorization=Bearer agent-own-key", "header:X-Api-Key=agent-api-key", "header:X-Agent-Secret=leak",
			"header:Content-Type=application/json", "header:Anthropic-Version=2023-06-01", "POST:/v1/messages"},
		out: "OK issuer=",
		saw: []seen{sawInference("/v1/messages",
			"Authorization=Bearer "+inferenceSecret+";X-Api-Key=;X-Agent-Secret=;Content-Type=application/json;Anthropic-Version=2023-06-01")}})
	wantParts(t, line, "200 POST /v1/messages conn=1")
	if !strings.Contains(line, "clawrun egress CA") {
		t.Errorf("inference.local's certificate is not the container's CA's: %q", line)
	}
	rec := c.waitRecord(func(rec inspectRecord) bool { return rec.Protocol == "https" && rec.Host == "inference.local" })
	if rec.Decision != "allow" || rec.Rule != "egress.inference" || rec.Method != "POST" || rec.Path != "/v1/messages" || rec.Status != 200 {
		t.Errorf("the request's record: %+v", rec)
	}

	// Plain HTTP to inference.local: the same route, the backend still
	// over TLS with the configured key.
	line = c.check(echeck{name: "plain HTTP request with the agent's own key",
		args: []string{"https", "inference.local", "80", "inference.local", "plain", "inference.local",
			"header:Authorization=Bearer agent-own-key", "header:X-Api-Key=agent-api-key", "header:X-Agent-Secret=leak",
			"header:Content-Type=application/json", "header:Anthropic-Version=2023-06-01", "POST:/v1/plain"},
		out: `OK issuer="" proto=HTTP/1.1`,
		saw: []seen{sawInference("/v1/plain",
			"Authorization=Bearer "+inferenceSecret+";X-Api-Key=;X-Agent-Secret=;Content-Type=application/json;Anthropic-Version=2023-06-01")}})
	wantParts(t, line, "200 POST /v1/plain conn=1")
	rec = c.waitRecord(func(rec inspectRecord) bool { return rec.Protocol == "http" && rec.Path == "/v1/plain" })
	if rec.Decision != "allow" || rec.Rule != "egress.inference" || rec.Method != "POST" || rec.Host != "inference.local" || rec.Status != 200 {
		t.Errorf("the plain request's record: %+v", rec)
	}

	c.check(echeck{name: "streamed response",
		args: []string{"sse", "inference.local", "443", "inference.local", "/v1/stream", "/release"},
		out:  "OK 200 events=first,second",
		saw:  []seen{sawInference("/release", "Authorization=Bearer "+inferenceSecret+";X-Api-Key=;X-Agent-Secret=;Content-Type=;Anthropic-Version=")}})

	// Control: the backend's own name is the policy's to allow, and it
	// does not; the route alone reaches it.
	c.check(echeck{name: "backend by its own name",
		args:  []string{"https", "allowed.test", port, "allowed.test", "h1", "allowed.test", "GET:/v1/models"},
		out:   "ERR",
		never: []seen{anyInference}})
}

// TestEgressInferenceUnconfigured: without egress.inference, inference.local
// is a name like any other: not in the policy, it does not resolve, and
// nothing reaches the backend.
func TestEgressInferenceUnconfigured(t *testing.T) {
	r, fn := egressRuntime(t)
	fn.startInferenceBackend(t)
	c := fn.startAs(r, newID(t), fn.egressBundle(r, withInline(inferencePolicy)), "--config", fn.config)
	c.check(echeck{name: "inference.local does not resolve",
		args:  []string{"dns", fn.ip(hDNS), "inference.local"},
		out:   "ERR NXDOMAIN",
		never: []seen{queryContaining("inference")}})
	c.check(echeck{name: "nor is it reached",
		args:  []string{"https", "inference.local", "443", "inference.local", "h1", "inference.local", "GET:/v1/models"},
		out:   "ERR",
		never: []seen{anyInference}})
}
