package fakenet

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"sync"
	"time"
)

// certs is the fake internet's CA and the leaves it made, one per server
// name and key type (ECDSA P-256, as most of the web; RSA for the clients
// that can only use RSA key exchange).
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

// leaf returns a certificate for name (CN and SAN) with an ECDSA key, or
// an RSA one, signed by the CA or by no one, made on first use; without
// SNI, one named "no-sni".
func (c *certs) leaf(name string, signed, withRSA bool) (*tls.Certificate, error) {
	if name == "" {
		name = "no-sni"
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	key := name
	if !signed {
		key = "unsigned " + name
	}
	if withRSA {
		key = "rsa " + key
	}
	if l, ok := c.leaves[key]; ok {
		return l, nil
	}
	priv, err := newLeafKey(withRSA)
	if err != nil {
		return nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(int64(len(c.leaves) + 2)),
		Subject:      pkix.Name{CommonName: name},
		DNSNames:     []string{name},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	parent, signer := c.ca, any(c.caKey)
	if !signed {
		parent, signer = tmpl, priv
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, priv.Public(), signer)
	if err != nil {
		return nil, err
	}
	l := &tls.Certificate{Certificate: [][]byte{der}, PrivateKey: priv}
	c.leaves[key] = l
	return l, nil
}

func newLeafKey(withRSA bool) (crypto.Signer, error) {
	if withRSA {
		return rsa.GenerateKey(rand.Reader, 2048)
	}
	return ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
}
