package inspect

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func newTestCA(t testing.TB) *CA {
	t.Helper()
	ca, err := NewCA("test CA", 24*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	return ca
}

func TestNewCAIsAShortLivedP256CA(t *testing.T) {
	ca := newTestCA(t)
	c := ca.Certificate()
	if !c.IsCA || c.PublicKeyAlgorithm != x509.ECDSA || c.MaxPathLen != 0 || !c.MaxPathLenZero {
		t.Fatalf("CA certificate: IsCA %v, key %v, MaxPathLen %d", c.IsCA, c.PublicKeyAlgorithm, c.MaxPathLen)
	}
	if d := time.Until(c.NotAfter); d > 24*time.Hour || d < 23*time.Hour {
		t.Fatalf("expires in %v, want 24h", d)
	}
	for _, v := range []time.Duration{0, -time.Hour, 400 * 24 * time.Hour} {
		if _, err := NewCA("x", v); err == nil {
			t.Errorf("NewCA with validity %v: no error", v)
		}
	}
	if _, err := NewCA("", time.Hour); err == nil {
		t.Error("NewCA without a name: no error")
	}
}

// A leaf is for the name asked, verifies against the CA as a TLS server
// certificate, and is refused for an IP or a name that is not a host name.
func TestLeaf(t *testing.T) {
	ca := newTestCA(t)
	leaf, err := ca.Leaf("API.Example.test")
	if err != nil {
		t.Fatal(err)
	}
	_, err = leaf.Leaf.Verify(x509.VerifyOptions{DNSName: "api.example.test", Roots: poolOf(ca.Certificate())})
	if err != nil {
		t.Fatalf("leaf does not verify: %v", err)
	}
	if got := leaf.Leaf.DNSNames; len(got) != 1 || got[0] != "api.example.test" || len(leaf.Leaf.IPAddresses) != 0 {
		t.Fatalf("SANs %v %v", got, leaf.Leaf.IPAddresses)
	}
	if _, err := leaf.Leaf.Verify(x509.VerifyOptions{DNSName: "other.example.test", Roots: poolOf(ca.Certificate())}); err == nil {
		t.Fatal("leaf verifies for another name")
	}
	if !leaf.Leaf.NotAfter.Equal(ca.NotAfter()) {
		t.Fatalf("leaf expires %v, CA %v", leaf.Leaf.NotAfter, ca.NotAfter())
	}
	for _, name := range []string{"127.0.0.1", "::1", "", "a..b", "a.b.", "*.example.test", "a b", "é.example", strings.Repeat("a", 64) + ".x", "a/b"} {
		if _, err := ca.Leaf(name); !errors.Is(err, ErrLeafName) {
			t.Errorf("Leaf(%q): %v, want ErrLeafName", name, err)
		}
	}
}

// The cache keeps the most recently used names, and drops the others.
func TestLeafCacheEvictsLeastRecentlyUsed(t *testing.T) {
	ca := newTestCA(t)
	ca.leaves = newLeafCache(2)
	get := func(name string) *tls.Certificate {
		c, err := ca.Leaf(name)
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	a := get("a.test")
	get("b.test")
	if get("a.test") != a { // a is now the most recent
		t.Fatal("a.test issued again while cached")
	}
	get("c.test") // evicts b
	if n := ca.leaves.issued.Load(); n != 3 {
		t.Fatalf("issued %d, want 3", n)
	}
	get("a.test")
	if n := ca.leaves.issued.Load(); n != 3 {
		t.Fatal("a.test was evicted instead of b.test")
	}
	get("b.test")
	if n := ca.leaves.issued.Load(); n != 4 {
		t.Fatal("b.test was still cached beyond the bound")
	}
}

// A failed issuance is not cached: the next ask issues again.
func TestLeafFailureNotCached(t *testing.T) {
	c := newLeafCache(4)
	fail := true
	issue := func(string, time.Time) (*tls.Certificate, error) {
		if fail {
			return nil, errors.New("boom")
		}
		return newTestCA(t).Leaf("x.test")
	}
	if _, err := c.get("x.test", time.Now(), issue); err == nil {
		t.Fatal("no error")
	}
	fail = false
	if _, err := c.get("x.test", time.Now(), issue); err != nil {
		t.Fatalf("after a failure: %v", err)
	}
}

// The key file is created 0600, never over something that is there, never
// through a link; LoadCA restores a CA that signs leaves the same
// certificate verifies.
func TestKeyFileRoundTrip(t *testing.T) {
	dir := t.TempDir()
	ca := newTestCA(t)
	path := filepath.Join(dir, "ca.key")
	if err := ca.WriteKeyFile(path); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Lstat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Fatalf("key file mode %v, want 0600", fi.Mode().Perm())
	}
	if err := ca.WriteKeyFile(path); err == nil {
		t.Fatal("WriteKeyFile replaced an existing file")
	}
	target := filepath.Join(dir, "target")
	link := filepath.Join(dir, "link")
	if err := os.Symlink(target, link); err != nil {
		t.Fatal(err)
	}
	if err := ca.WriteKeyFile(link); err == nil {
		t.Fatal("WriteKeyFile wrote through a symbolic link")
	}
	if _, err := os.Lstat(target); !os.IsNotExist(err) {
		t.Fatalf("the link's target was created: %v", err)
	}

	loaded, err := LoadCA(ca.CertPEM(), path)
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := loaded.Leaf("x.example.test")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := leaf.Leaf.Verify(x509.VerifyOptions{DNSName: "x.example.test", Roots: poolOf(ca.Certificate())}); err != nil {
		t.Fatalf("a leaf of the loaded CA does not verify against the original: %v", err)
	}
}

func TestLoadCARefuses(t *testing.T) {
	dir := t.TempDir()
	ca, other := newTestCA(t), newTestCA(t)
	path := filepath.Join(dir, "ca.key")
	if err := ca.WriteKeyFile(path); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadCA(other.CertPEM(), path); err == nil || !strings.Contains(err.Error(), "not the key of the certificate") {
		t.Errorf("another CA's certificate: %v", err)
	}
	link := filepath.Join(dir, "link")
	os.Symlink(path, link)
	if _, err := LoadCA(ca.CertPEM(), link); err == nil {
		t.Error("a key file through a link: no error")
	}
	if err := os.Chmod(path, 0o640); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadCA(ca.CertPEM(), path); err == nil || !strings.Contains(err.Error(), "group or others") {
		t.Errorf("a key file readable by its group: %v", err)
	}
	os.Chmod(path, 0o600)
	if _, err := LoadCA(append(ca.CertPEM(), ca.CertPEM()...), path); err == nil {
		t.Error("two certificates: no error")
	}
	if _, err := LoadCA([]byte("junk"), path); err == nil {
		t.Error("no certificate: no error")
	}
	leaf, _ := ca.Leaf("x.test")
	leafPEM := pemCert(leaf.Leaf)
	if _, err := LoadCA(leafPEM, path); err == nil || !strings.Contains(err.Error(), "not a CA") {
		t.Errorf("a leaf as the CA: %v", err)
	}
}

func pemCert(c *x509.Certificate) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})
}

func poolOf(certs ...*x509.Certificate) *x509.CertPool {
	p := x509.NewCertPool()
	for _, c := range certs {
		p.AddCert(c)
	}
	return p
}
