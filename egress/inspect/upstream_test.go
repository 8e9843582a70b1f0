package inspect

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"
)

// An upstream whose certificate does not verify for the server name is
// never sent the request: the client gets a 502 naming upstream_cert, and
// the log says so. The control: the same CA's valid certificate.
func TestUpstreamCertificateMustVerify(t *testing.T) {
	trusted := newTestCA(t)
	untrusted := newTestCA(t)
	now := time.Now()
	tests := []struct {
		name   string
		cert   tls.Certificate
		reason string
	}{
		{"valid (control)", signLeaf(t, trusted, testHost, now.Add(-time.Hour), now.Add(time.Hour)), "allowed"},
		{"untrusted CA", signLeaf(t, untrusted, testHost, now.Add(-time.Hour), now.Add(time.Hour)), ReasonUpstreamCert},
		{"expired", signLeaf(t, trusted, testHost, now.Add(-2*time.Hour), now.Add(-time.Hour)), ReasonUpstreamCert},
		{"not yet valid", signLeaf(t, trusted, testHost, now.Add(time.Hour), now.Add(2*time.Hour)), ReasonUpstreamCert},
		{"another name", signLeaf(t, trusted, "other.example.test", now.Add(-time.Hour), now.Add(time.Hour)), ReasonUpstreamCert},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			up := newUpstreamWithCert(t, false, poolOf(trusted.Certificate()), tt.cert, nil)
			h := newHarness(t, up)
			resp, err := h.h1Client().Get("https://" + testHost + "/secret")
			if err != nil {
				t.Fatal(err)
			}
			var ans answer
			json.NewDecoder(resp.Body).Decode(&ans)
			resp.Body.Close()
			d := h.logs.find(t, tt.reason)
			if tt.reason == "allowed" {
				if resp.StatusCode != 200 || up.requests.Load() != 1 {
					t.Fatalf("control: %d, upstream saw %d", resp.StatusCode, up.requests.Load())
				}
				return
			}
			if resp.StatusCode != http.StatusBadGateway || ans.Reason != ReasonUpstreamCert || ans.Error != "egress_upstream" {
				t.Fatalf("client got %d %+v, want 502 upstream_cert", resp.StatusCode, ans)
			}
			if n := up.requests.Load(); n != 0 {
				t.Fatalf("the upstream saw %d requests", n)
			}
			if d.Allow || d.Status != http.StatusBadGateway || d.Rule != "test-policy" || d.Detail == "" {
				t.Fatalf("logged %+v", d)
			}
		})
	}
}

// An upstream that cannot be reached is a 502 (upstream_failed), and the
// connection serves the next request.
func TestUpstreamUnreachable(t *testing.T) {
	up := newUpstream(t, false, nil)
	h := newHarness(t, up)
	up.srv.Close()
	resp, err := h.h1Client().Get("https://" + testHost + "/")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusBadGateway {
		t.Fatalf("%d, want 502", resp.StatusCode)
	}
	h.logs.find(t, ReasonUpstream)
}

// Rewrite changes the request that goes upstream after Decide; an error,
// or a change of destination, refuses it and nothing is sent.
func TestRewrite(t *testing.T) {
	tests := []struct {
		name    string
		rewrite func(*http.Request) error
		status  int
		reason  string
	}{
		{"adds a field", func(r *http.Request) error { r.Header.Set("Authorization", "Bearer injected"); return nil }, 200, ""},
		{"fails", func(r *http.Request) error { return errors.New("no credential for this endpoint") }, 403, ReasonRewrite},
		{"fails with its reason", func(r *http.Request) error { return reasonError("credential_misdirected") }, 403, "credential_misdirected"},
		{"changes the Host", func(r *http.Request) error { r.Host = "evil.example"; return nil }, 403, ReasonRewrite},
		{"changes the URL host", func(r *http.Request) error { r.URL.Host = "evil.example"; return nil }, 403, ReasonRewrite},
		{"makes it plain HTTP", func(r *http.Request) error { r.URL.Scheme = "http"; return nil }, 403, ReasonRewrite},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			up := newUpstream(t, false, nil)
			h := newHarness(t, up)
			var decided bool
			h.decide = func(r Request) Verdict {
				decided = true
				if r.Header.Get("Authorization") != "" {
					t.Error("Decide saw the rewritten request")
				}
				return allowGETs(r)
			}
			h.rewrite = tt.rewrite
			resp, err := h.h1Client().Get("https://" + testHost + "/")
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != tt.status || !decided {
				t.Fatalf("status %d (decided %v), want %d", resp.StatusCode, decided, tt.status)
			}
			if tt.status == 200 {
				if got := up.lastRequest().Header.Get("Authorization"); got != "Bearer injected" {
					t.Fatalf("upstream got Authorization %q", got)
				}
				return
			}
			if n := up.requests.Load(); n != 0 {
				t.Fatalf("the upstream saw %d requests", n)
			}
			h.logs.find(t, tt.reason)
		})
	}
}

// reasonError is a Rewrite error that names its log reason.
type reasonError string

func (e reasonError) Error() string     { return "refused: " + string(e) }
func (e reasonError) LogReason() string { return string(e) }

// A client that does not trust the container's CA fails its handshake,
// and the log says which name it was for.
func TestClientHandshakeFailureLogged(t *testing.T) {
	up := newUpstream(t, false, nil)
	h := newHarness(t, up)
	_, err := tls.Dial("tcp", h.ln.Addr().String(), &tls.Config{ServerName: testHost, RootCAs: up.roots})
	if err == nil || !strings.Contains(err.Error(), "certificate") {
		t.Fatalf("handshake with an untrusting client: %v", err)
	}
	if d := h.logs.find(t, ReasonClientHandshake); d.Authority != testHost || d.Allow {
		t.Fatalf("logged %+v", d)
	}
	if up.conns.Load() != 0 {
		t.Fatal("the upstream was dialled for a client that never completed its handshake")
	}
}

// signLeaf issues a leaf for name (and the names of more) from ca with
// the given validity.
func signLeaf(t *testing.T, ca *CA, name string, notBefore, notAfter time.Time, more ...string) tls.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	serial, _ := randomSerial()
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: name},
		DNSNames:     append([]string{name}, more...),
		NotBefore:    notBefore,
		NotAfter:     notAfter,
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}

// An HTTP/2 client's concurrent streams to an HTTP/1.1 upstream share at
// most maxUpstreamConns connections: one client connection does not
// become a hundred upstream. The streams beyond wait, and are served.
func TestUpstreamConnectionsPerClientBounded(t *testing.T) {
	release := make(chan struct{})
	up := newUpstream(t, false, func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-release:
		case <-time.After(10 * time.Second):
		}
	})
	h := newHarness(t, up)
	client := h.h2Client()
	const streams = maxUpstreamConns + 8
	done := make(chan int, streams)
	for range streams {
		go func() {
			resp, err := client.Get("https://" + testHost + "/slow")
			if err != nil {
				done <- 0
				return
			}
			resp.Body.Close()
			done <- resp.StatusCode
		}()
	}
	deadline := time.Now().Add(5 * time.Second)
	for up.requests.Load() < maxUpstreamConns && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	close(release)
	for range streams {
		if status := <-done; status != 200 {
			t.Fatalf("a stream got %d", status)
		}
	}
	if n := up.conns.Load(); n > maxUpstreamConns {
		t.Fatalf("%d upstream connections for one client connection, want at most %d", n, maxUpstreamConns)
	}
	if up.requests.Load() != streams || h.accepts.Load() != 1 {
		t.Fatalf("upstream saw %d requests, %d client connections", up.requests.Load(), h.accepts.Load())
	}
}

// With Options.Upstream the requests for the server name go to another
// server (inference routing): its certificate must prove the upstream's
// name, never the server name's, and it gets its own name as Host.
func TestUpstreamOtherThanServerName(t *testing.T) {
	const backend = "backend.example.test"
	ca := newTestCA(t)
	now := time.Now()
	tests := []struct {
		name     string
		certFor  string
		upstream string
		status   int
	}{
		{"backend proves its name", backend, backend, 200},
		{"backend proves only the server name", testHost, backend, http.StatusBadGateway},
		// Control: without Upstream the same backend is not the server.
		{"no Upstream", backend, "", http.StatusBadGateway},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			up := newUpstreamWithCert(t, false, poolOf(ca.Certificate()), signLeaf(t, ca, tt.certFor, now.Add(-time.Hour), now.Add(time.Hour)), nil)
			h := newHarness(t, up)
			h.upstream, h.upstreamPort = tt.upstream, 8443
			resp, err := h.h1Client().Get("https://" + testHost + "/v1/models?x=1")
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != tt.status {
				t.Fatalf("status %d, want %d", resp.StatusCode, tt.status)
			}
			if tt.status != 200 {
				if n := up.requests.Load(); n != 0 {
					t.Fatalf("the upstream saw %d requests", n)
				}
				return
			}
			if got := up.lastRequest(); got.Host != backend+":8443" || got.RequestURI != "/v1/models?x=1" {
				t.Fatalf("upstream got Host %q target %q", got.Host, got.RequestURI)
			}
		})
	}
}
