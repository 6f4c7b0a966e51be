// Package pki owns the cluster's certificates: a cluster CA, the API
// server's serving certificate and the admin client certificate, kept as PEM
// files in one directory (<data-dir>/server/tls):
//
//	ca.crt      0644  cluster CA (ECDSA P-256, 10 years)
//	ca.key      0600
//	server.crt  0644  serving certificate, signed by the CA (1 year)
//	server.key  0600
//	admin.crt   0644  client certificate CN=system:admin, O=system:masters
//	admin.key   0600
//
// Load creates what is missing and reuses what is there. The CA is never
// replaced once it exists: every joined node and kubeconfig trusts it. Leaf
// certificates are re-issued when they expire within 90 days, no longer
// chain to the CA, or (for the serving certificate) no longer cover the
// wanted names and addresses. A file that exists but cannot be parsed is an
// error naming the file; it is never overwritten, so a user can inspect or
// restore it.
//
// The package signs certificates; it does not decide who may have one
// (server/auth and the join flow do) and does not serve TLS.
package pki

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"
)

// Validity periods. Leaf certificates are short enough to be rotated by a
// restart, the CA long enough to outlive a small box.
const (
	CAValidity     = 10 * 365 * 24 * time.Hour
	ServerValidity = 365 * 24 * time.Hour
	ClientValidity = 365 * 24 * time.Hour
	// RenewBefore is how close to expiry a leaf certificate is re-issued.
	RenewBefore = 90 * 24 * time.Hour
	// clockSkew backdates NotBefore so that a node whose clock is slightly
	// behind still accepts a fresh certificate.
	clockSkew = 5 * time.Minute
)

// Identity of the admin client certificate, as in Kubernetes: the
// system:masters group is bound to cluster-admin.
const (
	AdminUser  = "system:admin"
	AdminGroup = "system:masters"
)

// File names inside the directory given to Load.
const (
	CACertFile     = "ca.crt"
	CAKeyFile      = "ca.key"
	ServerCertFile = "server.crt"
	ServerKeyFile  = "server.key"
	AdminCertFile  = "admin.crt"
	AdminKeyFile   = "admin.key"
)

// Options say which names and addresses the serving certificate must cover,
// in addition to DefaultDNSNames and DefaultIPs.
type Options struct {
	DNSNames []string
	IPs      []net.IP
	// Now is the clock; nil means time.Now (tests move it).
	Now func() time.Time
}

// DefaultDNSNames are the names every serving certificate carries: the ones
// in-cluster clients use for the kubernetes Service, and localhost.
var DefaultDNSNames = []string{
	"localhost",
	"kubernetes",
	"kubernetes.default",
	"kubernetes.default.svc",
	"kubernetes.default.svc.cluster.local",
}

// DefaultIPs are the loopback addresses every serving certificate carries.
func DefaultIPs() []net.IP { return []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback} }

// Authority is a loaded certificate directory. It is safe for concurrent
// use; nothing in it changes after Load.
type Authority struct {
	dir    string
	now    func() time.Time
	caCert *x509.Certificate
	caKey  crypto.Signer
	caPEM  []byte
	pool   *x509.CertPool

	serving  tls.Certificate
	adminPEM []byte
	adminKey []byte
}

// Load reads the certificates in dir, creating the directory (0700) and
// whatever is missing, and re-issuing leaf certificates as the package
// comment describes.
func Load(dir string, opts Options) (*Authority, error) {
	now := opts.Now
	if now == nil {
		now = time.Now
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("pki: create %s: %w", dir, err)
	}
	// MkdirAll keeps the mode of an existing directory; private keys live
	// here, so tighten it.
	if err := os.Chmod(dir, 0o700); err != nil {
		return nil, fmt.Errorf("pki: chmod %s: %w", dir, err)
	}
	a := &Authority{dir: dir, now: now}
	if err := a.loadOrCreateCA(); err != nil {
		return nil, err
	}
	dns, ips := wantedSANs(opts)
	if err := a.loadOrIssueServing(dns, ips); err != nil {
		return nil, err
	}
	if err := a.loadOrIssueAdmin(); err != nil {
		return nil, err
	}
	return a, nil
}

// Dir is the directory the certificates live in.
func (a *Authority) Dir() string { return a.dir }

// CACertPEM is the CA certificate as stored (the join token hashes these
// exact bytes).
func (a *Authority) CACertPEM() []byte { return slices.Clone(a.caPEM) }

// CAPool is a pool holding only the cluster CA, for verifying clients.
func (a *Authority) CAPool() *x509.CertPool { return a.pool }

// ServingCertificate is the API server's certificate with its private key.
func (a *Authority) ServingCertificate() tls.Certificate { return a.serving }

// SignClient issues a new client certificate (and a new ECDSA P-256 key)
// with CommonName cn and Organizations groups, valid for validity (a
// default of one year when 0). Nodes get CN system:node:<name>, O
// system:nodes.
func (a *Authority) SignClient(cn string, groups []string, validity time.Duration) (certPEM, keyPEM []byte, err error) {
	if cn == "" {
		return nil, nil, errors.New("pki: client certificate needs a common name")
	}
	if validity <= 0 {
		validity = ClientValidity
	}
	certPEM, keyPEM, err = a.issue(clientTemplate(cn, groups), validity)
	if err != nil {
		return nil, nil, fmt.Errorf("pki: sign client certificate for %q: %w", cn, err)
	}
	return certPEM, keyPEM, nil
}

// SignPublicKey issues a client certificate, like SignClient, for a key
// the client made itself and keeps: only its public half is given. The
// key must be ECDSA P-256 or P-384, RSA of at least 2048 bits, or Ed25519.
// The caller checks that the client holds the private key (a CSR's
// signature) and may have cn.
func (a *Authority) SignPublicKey(pub crypto.PublicKey, cn string, groups []string, validity time.Duration) (certPEM []byte, err error) {
	if cn == "" {
		return nil, errors.New("pki: client certificate needs a common name")
	}
	if err := CheckPublicKey(pub); err != nil {
		return nil, fmt.Errorf("pki: sign client certificate for %q: %w", cn, err)
	}
	if validity <= 0 {
		validity = ClientValidity
	}
	certPEM, err = a.sign(clientTemplate(cn, groups), pub, validity)
	if err != nil {
		return nil, fmt.Errorf("pki: sign client certificate for %q: %w", cn, err)
	}
	return certPEM, nil
}

// CheckPublicKey accepts the key types and sizes SignPublicKey signs.
func CheckPublicKey(pub crypto.PublicKey) error {
	switch k := pub.(type) {
	case *ecdsa.PublicKey:
		if k.Curve != elliptic.P256() && k.Curve != elliptic.P384() {
			return fmt.Errorf("ECDSA key on curve %s: want P-256 or P-384", k.Curve.Params().Name)
		}
	case *rsa.PublicKey:
		if k.N.BitLen() < 2048 {
			return fmt.Errorf("RSA key of %d bits: want at least 2048", k.N.BitLen())
		}
	case ed25519.PublicKey:
	default:
		return fmt.Errorf("key of type %T: want ECDSA, RSA or Ed25519", pub)
	}
	return nil
}

func clientTemplate(cn string, groups []string) *x509.Certificate {
	return &x509.Certificate{
		Subject:     pkix.Name{CommonName: cn, Organization: slices.Clone(groups)},
		KeyUsage:    x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
}

func (a *Authority) loadOrCreateCA() error {
	certPath, keyPath := a.path(CACertFile), a.path(CAKeyFile)
	certPEM, certErr := readOptional(certPath)
	keyPEM, keyErr := readOptional(keyPath)
	if err := errors.Join(certErr, keyErr); err != nil {
		return err
	}
	switch {
	case certPEM == nil && keyPEM == nil:
		return a.createCA()
	case certPEM == nil:
		// A lone key (or a lone certificate) means someone removed half
		// of the CA; silently making a new one would break every node.
		return fmt.Errorf("pki: %s exists but %s is missing; restore it or remove both to create a new cluster CA", keyPath, certPath)
	case keyPEM == nil:
		return fmt.Errorf("pki: %s exists but %s is missing; restore it or remove both to create a new cluster CA", certPath, keyPath)
	}
	cert, err := parseCert(certPath, certPEM)
	if err != nil {
		return err
	}
	key, err := parseKey(keyPath, keyPEM)
	if err != nil {
		return err
	}
	if !cert.IsCA {
		return fmt.Errorf("pki: %s is not a CA certificate", certPath)
	}
	if !samePublicKey(cert.PublicKey, key.Public()) {
		return fmt.Errorf("pki: %s does not belong to %s", keyPath, certPath)
	}
	a.setCA(cert, key, certPEM)
	return nil
}

func (a *Authority) createCA() error {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return fmt.Errorf("pki: generate CA key: %w", err)
	}
	serial, err := newSerial()
	if err != nil {
		return err
	}
	now := a.now()
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: fmt.Sprintf("orch-ca@%d", now.Unix())},
		NotBefore:             now.Add(-clockSkew),
		NotAfter:              now.Add(CAValidity),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		return fmt.Errorf("pki: create CA certificate: %w", err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return fmt.Errorf("pki: parse new CA certificate: %w", err)
	}
	keyPEM, err := encodeKey(key)
	if err != nil {
		return err
	}
	certPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	// Key first: a crash in between leaves a lone key, which Load reports
	// instead of silently minting a second CA.
	if err := writeFileAtomic(a.path(CAKeyFile), keyPEM, 0o600); err != nil {
		return err
	}
	if err := writeFileAtomic(a.path(CACertFile), certPEM, 0o644); err != nil {
		return err
	}
	a.setCA(cert, key, certPEM)
	return nil
}

func (a *Authority) setCA(cert *x509.Certificate, key crypto.Signer, certPEM []byte) {
	a.caCert, a.caKey, a.caPEM = cert, key, certPEM
	a.pool = x509.NewCertPool()
	a.pool.AddCert(cert)
}

func (a *Authority) loadOrIssueServing(dns []string, ips []net.IP) error {
	certPath, keyPath := a.path(ServerCertFile), a.path(ServerKeyFile)
	pair, ok, err := a.loadLeaf(certPath, keyPath, x509.ExtKeyUsageServerAuth)
	if err != nil {
		return err
	}
	if ok && covers(pair.cert, dns, ips) {
		a.serving = tls.Certificate{Certificate: [][]byte{pair.cert.Raw}, PrivateKey: pair.key, Leaf: pair.cert}
		return nil
	}
	tmpl := &x509.Certificate{
		Subject:     pkix.Name{CommonName: "orch-apiserver"},
		DNSNames:    dns,
		IPAddresses: ips,
		KeyUsage:    x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	certPEM, keyPEM, err := a.issue(tmpl, ServerValidity)
	if err != nil {
		return fmt.Errorf("pki: issue serving certificate: %w", err)
	}
	if err := a.writePair(certPath, keyPath, certPEM, keyPEM); err != nil {
		return err
	}
	serving, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return fmt.Errorf("pki: load new serving certificate: %w", err)
	}
	a.serving = serving
	return nil
}

func (a *Authority) loadOrIssueAdmin() error {
	certPath, keyPath := a.path(AdminCertFile), a.path(AdminKeyFile)
	pair, ok, err := a.loadLeaf(certPath, keyPath, x509.ExtKeyUsageClientAuth)
	if err != nil {
		return err
	}
	if ok && pair.cert.Subject.CommonName == AdminUser && slices.Contains(pair.cert.Subject.Organization, AdminGroup) {
		a.adminPEM, a.adminKey = pair.certPEM, pair.keyPEM
		return nil
	}
	certPEM, keyPEM, err := a.SignClient(AdminUser, []string{AdminGroup}, ClientValidity)
	if err != nil {
		return err
	}
	if err := a.writePair(certPath, keyPath, certPEM, keyPEM); err != nil {
		return err
	}
	a.adminPEM, a.adminKey = certPEM, keyPEM
	return nil
}

// leaf is a certificate and its key as read from disk.
type leaf struct {
	cert            *x509.Certificate
	key             crypto.Signer
	certPEM, keyPEM []byte
}

// loadLeaf reads a certificate and key pair. ok is false when the pair is
// missing or due for re-issue (expiring, wrong CA, wrong usage); err is set
// when a file exists but is unreadable or malformed.
func (a *Authority) loadLeaf(certPath, keyPath string, usage x509.ExtKeyUsage) (leaf, bool, error) {
	certPEM, certErr := readOptional(certPath)
	keyPEM, keyErr := readOptional(keyPath)
	if err := errors.Join(certErr, keyErr); err != nil {
		return leaf{}, false, err
	}
	// Parse whatever exists, so a damaged file is reported even when its
	// partner is missing.
	var cert *x509.Certificate
	if certPEM != nil {
		c, err := parseCert(certPath, certPEM)
		if err != nil {
			return leaf{}, false, err
		}
		cert = c
	}
	var key crypto.Signer
	if keyPEM != nil {
		k, err := parseKey(keyPath, keyPEM)
		if err != nil {
			return leaf{}, false, err
		}
		key = k
	}
	if cert == nil || key == nil || !samePublicKey(cert.PublicKey, key.Public()) {
		return leaf{}, false, nil
	}
	if a.now().Add(RenewBefore).After(cert.NotAfter) {
		return leaf{}, false, nil
	}
	if _, err := cert.Verify(x509.VerifyOptions{
		Roots:       a.pool,
		CurrentTime: a.now(),
		KeyUsages:   []x509.ExtKeyUsage{usage},
	}); err != nil {
		return leaf{}, false, nil
	}
	return leaf{cert: cert, key: key, certPEM: certPEM, keyPEM: keyPEM}, true, nil
}

// issue signs tmpl (filling serial and validity) for a new P-256 key.
func (a *Authority) issue(tmpl *x509.Certificate, validity time.Duration) (certPEM, keyPEM []byte, err error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, fmt.Errorf("generate key: %w", err)
	}
	certPEM, err = a.sign(tmpl, key.Public(), validity)
	if err != nil {
		return nil, nil, err
	}
	keyPEM, err = encodeKey(key)
	if err != nil {
		return nil, nil, err
	}
	return certPEM, keyPEM, nil
}

// sign signs tmpl (filling serial and validity) for pub.
func (a *Authority) sign(tmpl *x509.Certificate, pub crypto.PublicKey, validity time.Duration) ([]byte, error) {
	serial, err := newSerial()
	if err != nil {
		return nil, err
	}
	now := a.now()
	tmpl.SerialNumber = serial
	tmpl.NotBefore = now.Add(-clockSkew)
	tmpl.NotAfter = now.Add(validity)
	if tmpl.NotAfter.After(a.caCert.NotAfter) {
		tmpl.NotAfter = a.caCert.NotAfter
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, a.caCert, pub, a.caKey)
	if err != nil {
		return nil, fmt.Errorf("sign: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), nil
}

func (a *Authority) writePair(certPath, keyPath string, certPEM, keyPEM []byte) error {
	if err := writeFileAtomic(keyPath, keyPEM, 0o600); err != nil {
		return err
	}
	return writeFileAtomic(certPath, certPEM, 0o644)
}

func (a *Authority) path(name string) string { return filepath.Join(a.dir, name) }

// wantedSANs is the sorted, de-duplicated set of names and addresses the
// serving certificate must carry.
func wantedSANs(opts Options) ([]string, []net.IP) {
	var dns []string
	for _, n := range slices.Concat(DefaultDNSNames, opts.DNSNames) {
		n = strings.ToLower(strings.TrimSpace(n))
		if n == "" {
			continue
		}
		// A host name that is really an address belongs in IPAddresses.
		if ip := net.ParseIP(n); ip != nil {
			opts.IPs = append(opts.IPs, ip)
			continue
		}
		dns = append(dns, n)
	}
	slices.Sort(dns)
	dns = slices.Compact(dns)

	var ips []net.IP
	seen := map[string]bool{}
	for _, ip := range slices.Concat(DefaultIPs(), opts.IPs) {
		if ip == nil || ip.IsUnspecified() {
			continue
		}
		if v4 := ip.To4(); v4 != nil {
			ip = v4
		}
		if seen[ip.String()] {
			continue
		}
		seen[ip.String()] = true
		ips = append(ips, ip)
	}
	slices.SortFunc(ips, func(x, y net.IP) int { return bytes.Compare(x.To16(), y.To16()) })
	return dns, ips
}

// covers reports whether cert names every wanted DNS name and address.
func covers(cert *x509.Certificate, dns []string, ips []net.IP) bool {
	for _, n := range dns {
		if !slices.ContainsFunc(cert.DNSNames, func(have string) bool { return strings.EqualFold(have, n) }) {
			return false
		}
	}
	for _, ip := range ips {
		if !slices.ContainsFunc(cert.IPAddresses, ip.Equal) {
			return false
		}
	}
	return true
}

func newSerial() (*big.Int, error) {
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return nil, fmt.Errorf("pki: serial number: %w", err)
	}
	// Serial numbers must be positive.
	return serial.Add(serial, big.NewInt(1)), nil
}

func samePublicKey(a, b crypto.PublicKey) bool {
	ak, ok := a.(interface{ Equal(crypto.PublicKey) bool })
	return ok && ak.Equal(b)
}
