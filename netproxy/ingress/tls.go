package ingress

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"time"
)

// DefaultCertificateCN is the subject of the self-signed certificate that
// answers TLS handshakes for hosts no Ingress has a certificate for, as
// ingress-nginx's "Kubernetes Ingress Controller Fake Certificate" and
// Traefik's "TRAEFIK DEFAULT CERT" do.
const DefaultCertificateCN = "orch ingress default certificate"

// SelfSignedCertificate makes a self-signed certificate for hosts (the
// first is its subject; none makes the default certificate, subject
// DefaultCertificateCN) with a fresh ECDSA P-256 key, valid from an hour
// ago (clock skew) for ten years. The default certificate is made in
// memory at start; nothing trusts it, so nothing is lost by a new one
// after a restart.
func SelfSignedCertificate(now time.Time, hosts ...string) (*tls.Certificate, error) {
	cn := DefaultCertificateCN
	if len(hosts) > 0 {
		cn = hosts[0]
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("self-signed certificate for %q: %w", cn, err)
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return nil, fmt.Errorf("self-signed certificate for %q: %w", cn, err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: cn, Organization: []string{"orch"}},
		DNSNames:              hosts,
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.AddDate(10, 0, 0),
		KeyUsage:              x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, fmt.Errorf("self-signed certificate for %q: %w", cn, err)
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("self-signed certificate for %q: %w", cn, err)
	}
	return &tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}, nil
}

// EncodePEM returns cert's leaf and private key PEM encoded, as the
// tls.crt and tls.key of a kubernetes.io/tls Secret hold them.
func EncodePEM(cert *tls.Certificate) (certPEM, keyPEM []byte, err error) {
	der, err := x509.MarshalPKCS8PrivateKey(cert.PrivateKey)
	if err != nil {
		return nil, nil, fmt.Errorf("encode private key: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: cert.Certificate[0]}),
		pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), nil
}
