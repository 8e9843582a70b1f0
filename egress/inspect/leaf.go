package inspect

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"time"
)

// ErrLeafName: Leaf was asked for a name it does not sign.
var ErrLeafName = errors.New("inspect: not a DNS host name")

// Leaf returns a certificate for serverName signed by the CA: a fresh
// ECDSA P-256 key, serverName as its only DNS name, valid until the CA
// expires. IP addresses and anything that is not a plain DNS host name are
// refused (ErrLeafName): inspection follows the SNI the policy matched, and
// the policy never matches an IP. Leaves are cached (the most recently
// used 1024) and issued once per name however many handshakes ask at the
// same time; the certificate returned is the cache's, not to be modified.
func (ca *CA) Leaf(serverName string) (*tls.Certificate, error) {
	name, err := leafName(serverName)
	if err != nil {
		return nil, err
	}
	return ca.leaves.get(name, time.Now(), ca.issue)
}

// leafName checks and lower-cases a server name: ASCII letters, digits,
// '-' and '_' in dot-separated labels of 1 to 63 bytes, at most 253 bytes
// in all, no trailing dot, not an IP address.
func leafName(s string) (string, error) {
	if _, err := netip.ParseAddr(s); err == nil {
		return "", fmt.Errorf("%w: %q is an IP address", ErrLeafName, s)
	}
	if len(s) == 0 || len(s) > 253 {
		return "", fmt.Errorf("%w: %q", ErrLeafName, s)
	}
	label := 0
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '.':
			if label == 0 {
				return "", fmt.Errorf("%w: %q has an empty label", ErrLeafName, s)
			}
			label = 0
			continue
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9', c == '-', c == '_':
		default:
			return "", fmt.Errorf("%w: %q", ErrLeafName, s)
		}
		if label++; label > 63 {
			return "", fmt.Errorf("%w: %q has a label over 63 bytes", ErrLeafName, s)
		}
	}
	if label == 0 {
		return "", fmt.Errorf("%w: %q ends with a dot", ErrLeafName, s)
	}
	return strings.ToLower(s), nil
}

// issue signs a new leaf for name (already checked by leafName).
func (ca *CA) issue(name string, now time.Time) (*tls.Certificate, error) {
	if !now.Before(ca.cert.NotAfter) {
		return nil, fmt.Errorf("inspect: CA expired at %s", ca.cert.NotAfter.UTC().Format(time.RFC3339))
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("inspect: leaf key: %w", err)
	}
	serial, err := randomSerial()
	if err != nil {
		return nil, err
	}
	notBefore := now.Add(-clockSkew)
	if notBefore.Before(ca.cert.NotBefore) {
		notBefore = ca.cert.NotBefore
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: name},
		DNSNames:     []string{name},
		NotBefore:    notBefore,
		NotAfter:     ca.cert.NotAfter,
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		return nil, fmt.Errorf("inspect: leaf for %s: %w", name, err)
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("inspect: leaf for %s: %w", name, err)
	}
	// The chain is the leaf alone: clients trust the CA itself, and a
	// shorter flight is a faster handshake.
	return &tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}, nil
}
