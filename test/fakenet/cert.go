package fakenet

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"sync"
	"time"
)

// certs is the fake internet's CA and the leaves it made, one per server
// name (ECDSA P-256, as most of the web).
type certs struct {
	ca     *x509.Certificate
	caKey  *ecdsa.PrivateKey
	caPEM  []byte
	mu     sync.Mutex
	leaves map[string]*tls.Certificate
}

func (c *certs) init() error {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return err
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "clawrun fake internet CA"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return err
	}
	if c.ca, err = x509.ParseCertificate(der); err != nil {
		return err
	}
	c.caKey = key
	c.caPEM = pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	c.leaves = map[string]*tls.Certificate{}
	return nil
}

// CA is the certificate that signs every server certificate of the net.
func (n *Net) CA() *x509.Certificate { return n.certs.ca }

// CAPEM is CA in PEM, for a client's trust store.
func (n *Net) CAPEM() []byte { return n.certs.caPEM }

// leaf returns a certificate for name (CN and SAN), signed by the CA or
// by no one, made on first use; without SNI, one named "no-sni".
func (c *certs) leaf(name string, signed bool) (*tls.Certificate, error) {
	if name == "" {
		name = "no-sni"
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	key := name
	if !signed {
		key = "unsigned " + name
	}
	if l, ok := c.leaves[key]; ok {
		return l, nil
	}
	priv, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(int64(len(c.leaves) + 2)),
		Subject:      pkix.Name{CommonName: name},
		DNSNames:     []string{name},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	parent, signer := c.ca, any(c.caKey)
	if !signed {
		parent, signer = tmpl, priv
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, &priv.PublicKey, signer)
	if err != nil {
		return nil, err
	}
	l := &tls.Certificate{Certificate: [][]byte{der}, PrivateKey: priv}
	c.leaves[key] = l
	return l, nil
}
