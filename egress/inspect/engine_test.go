package inspect

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
)

// Leaves are cached, and issued once per name however many handshakes ask
// for it at the same time.
func TestLeafIssuedOncePerNameUnderConcurrentHandshakes(t *testing.T) {
	up := newUpstream(t, false, nil)
	h := newHarness(t, up)
	const handshakes = 50
	var wg sync.WaitGroup
	start := make(chan struct{})
	errs := make(chan error, handshakes)
	for range handshakes {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			c, err := tls.Dial("tcp", h.ln.Addr().String(), h.clientTLS(protoHTTP1))
			if err != nil {
				errs <- err
				return
			}
			c.Close()
		}()
	}
	close(start)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	if n := h.ca.leaves.issued.Load(); n != 1 {
		t.Fatalf("%d leaves issued for %d handshakes to one name, want 1", n, handshakes)
	}
	if _, err := h.ca.Leaf("other.example.test"); err != nil {
		t.Fatal(err)
	}
	if n := h.ca.leaves.issued.Load(); n != 2 {
		t.Fatalf("%d leaves issued for 2 names", n)
	}
}

// The CA's private key appears nowhere but in the key file: not in the
// certificate, not when the CA is printed or marshalled, not in the
// engine's log or net/http's complaints through a session with a refused
// handshake, a denial and an upstream failure.
func TestCAKeyNeverExposed(t *testing.T) {
	up := newUpstream(t, false, nil)
	h := newHarness(t, up)
	secrets := keyForms(t, h.ca)

	// Traffic: a client that does not trust the CA, a denial, an allowed
	// request, a request net/http refuses.
	if c, err := tls.Dial("tcp", h.ln.Addr().String(), &tls.Config{ServerName: testHost}); err == nil {
		c.Close()
		t.Fatal("a client without the CA completed the handshake")
	}
	client := h.h1Client()
	for _, m := range []string{"GET", "POST"} {
		req, _ := http.NewRequest(m, "https://"+testHost+"/", nil)
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
	}
	c := h.dial(protoHTTP1)
	roundTrip(t, c, bufio.NewReader(c), "GET / HTTP/1.1\r\nHost: "+testHost+"\r\nHost: "+testHost+"\r\n\r\n")
	h.logs.find(t, ReasonClientHandshake)
	h.logs.find(t, ReasonMalformed)

	h.errMu.Lock()
	errLog := h.errLog.String()
	h.errMu.Unlock()
	caJSON, _ := json.Marshal(h.ca)
	places := map[string]string{
		"CertPEM":         string(h.ca.CertPEM()),
		"%v %+v %#v %s":   fmt.Sprintf("%v %+v %#v %s", h.ca, h.ca, h.ca, h.ca),
		"%v of a struct":  fmt.Sprintf("%v %+v", struct{ C *CA }{h.ca}, []*CA{h.ca}),
		"json.Marshal":    string(caJSON),
		"decision log":    h.logs.json(),
		"net/http errors": errLog,
	}
	for where, text := range places {
		for form, secret := range secrets {
			if strings.Contains(strings.ToLower(text), strings.ToLower(secret)) {
				t.Errorf("the CA key (%s) appears in %s", form, where)
			}
		}
	}
	if !strings.Contains(places["%v %+v %#v %s"], "test CA") && !strings.Contains(places["%v %+v %#v %s"], "container test CA") {
		t.Errorf("printing the CA says nothing useful: %s", places["%v %+v %#v %s"])
	}
}

// keyForms are the spellings of ca's private key that a leak would show.
func keyForms(t *testing.T, ca *CA) map[string]string {
	der, err := x509.MarshalPKCS8PrivateKey(ca.key)
	if err != nil {
		t.Fatal(err)
	}
	d := ca.key.D.Bytes()
	path := filepath.Join(t.TempDir(), "k")
	if err := ca.WriteKeyFile(path); err != nil {
		t.Fatal(err)
	}
	pemKey, _ := os.ReadFile(path)
	body := string(bytes.Split(pemKey, []byte("\n"))[1]) // a line of the PEM body
	return map[string]string{
		"PKCS8 base64": base64.StdEncoding.EncodeToString(der)[:40],
		"PEM line":     body,
		"D hex":        hex.EncodeToString(d),
		"D decimal":    ca.key.D.String(),
		"D base64":     base64.StdEncoding.EncodeToString(d)[:20],
	}
}

// The engine speaks what the client prefers: h2 when it lists h2 first,
// HTTP/1.1 when it lists that first (crypto/tls alone would follow the
// server's order), HTTP/1.1 without ALPN.
func TestALPNFollowsClientPreference(t *testing.T) {
	up := newUpstream(t, false, nil)
	h := newHarness(t, up)
	for _, tt := range []struct {
		offer []string
		want  string
	}{
		{[]string{protoH2, protoHTTP1}, protoH2},
		{[]string{protoHTTP1, protoH2}, protoHTTP1},
		{[]string{protoH2}, protoH2},
		{nil, ""},
	} {
		c := h.dial(tt.offer...)
		if got := c.ConnectionState().NegotiatedProtocol; got != tt.want {
			t.Errorf("offered %v: negotiated %q, want %q", tt.offer, got, tt.want)
		}
	}
}

// The container's clients get a classical key exchange (X25519) even when
// they offer the post-quantum hybrid: their leg stays on the host. The
// upstream leg, across the network, keeps the hybrid.
func TestKeyExchangePerLeg(t *testing.T) {
	var upstreamCurve atomic.Value
	up := newUpstream(t, false, func(w http.ResponseWriter, r *http.Request) {
		upstreamCurve.Store(r.TLS.CurveID)
	})
	h := newHarness(t, up)
	c := h.dial(protoHTTP1)
	if got := c.ConnectionState().CurveID; got != tls.X25519 {
		t.Fatalf("client leg: %v, want X25519", got)
	}
	resp := roundTrip(t, c, bufio.NewReader(c), "GET / HTTP/1.1\r\nHost: "+testHost+"\r\n\r\n")
	if resp.StatusCode != 200 {
		t.Fatalf("status %d", resp.StatusCode)
	}
	if got, _ := upstreamCurve.Load().(tls.CurveID); got != tls.X25519MLKEM768 {
		t.Fatalf("upstream leg: %v, want X25519MLKEM768", got)
	}
}
