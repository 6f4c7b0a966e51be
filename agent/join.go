package agent

// Joining: how `orch agent --join URL --token T` becomes a node, and stays
// one without the token. The protocol is internal/jointoken's.
//
// First start: fetch the server's CA without verifying it, accept it only if
// its hash is the one the token pins, then ask for the node's client
// certificate over TLS verified with that CA, with the token's secret, the
// node password (created here, kept so that the server can tell this
// machine from another one using the same node name) and a certificate
// request for a key made here: the private key never leaves this machine.
// Files are written only once everything succeeded, each atomically:
//
//	DataDir/agent/ca.crt          the cluster CA the token pinned
//	DataDir/agent/client.crt      CN system:node:<name>, O system:nodes
//	DataDir/agent/client.key
//	DataDir/agent/node-password
//
// Later starts use those files; the certificate is renewed over the tunnel,
// for a new key, when less than a third of its lifetime is left.

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/orch-dev/orch/internal/jointoken"
)

// Files of a joined node under DataDir/agent.
const (
	caFile       = "ca.crt"
	certFile     = "client.crt"
	keyFile      = "client.key"
	passwordFile = "node-password"
)

const (
	// joinRequestTimeout bounds each request of the join.
	joinRequestTimeout = 30 * time.Second
	// maxJoinAnswerBytes bounds what is read of the server's answers.
	maxJoinAnswerBytes = 1 << 20
)

// nodeCredentials is a joined node's identity: the cluster CA it trusts,
// its current client certificate (replaced when renewed) and its password.
type nodeCredentials struct {
	dir      string
	caPEM    []byte
	roots    *x509.CertPool
	password string

	mu   sync.Mutex
	cert *tls.Certificate // Leaf is set
}

// current returns the certificate to present.
func (c *nodeCredentials) current() *tls.Certificate {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.cert
}

// tlsConfig verifies the server against the cluster CA and presents the
// current certificate, so a renewed one is used from the next connection.
func (c *nodeCredentials) tlsConfig() *tls.Config {
	return &tls.Config{
		RootCAs:    c.roots,
		MinVersion: tls.VersionTLS12,
		GetClientCertificate: func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
			return c.current(), nil
		},
	}
}

// credentials returns the node's credentials: the stored ones, or new ones
// from joining with cfg.Token when there are none (or they expired).
func credentials(ctx context.Context, cfg Config, log *slog.Logger) (*nodeCredentials, error) {
	dir := filepath.Join(cfg.DataDir, "agent")
	var tok jointoken.Token
	if cfg.Token != "" {
		t, err := jointoken.Parse(cfg.Token)
		if err != nil {
			return nil, fmt.Errorf("orch agent: --token: %w", err)
		}
		tok = t
	}
	creds, err := loadCredentials(dir)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		if cfg.Token == "" {
			return nil, fmt.Errorf("orch agent: this machine has not joined a cluster yet (no %s): give the server's join token with --token",
				filepath.Join(dir, certFile))
		}
		return joinCluster(ctx, cfg, tok, dir, log)
	case err != nil:
		return nil, fmt.Errorf("orch agent: %w", err)
	}
	if cfg.Token != "" && tok.Pinned() {
		if got := jointoken.CAHash(creds.caPEM); got != tok.CAHash {
			return nil, fmt.Errorf("orch agent: this machine joined the cluster with CA sha256:%s, but --token pins sha256:%s: "+
				"to join another cluster remove %s and %s first", got, tok.CAHash, filepath.Join(dir, certFile), filepath.Join(dir, keyFile))
		}
	}
	if leaf := creds.current().Leaf; time.Now().After(leaf.NotAfter) {
		if cfg.Token == "" {
			return nil, fmt.Errorf("orch agent: the node certificate %s expired at %s: start once with --token to join again",
				filepath.Join(dir, certFile), leaf.NotAfter.UTC().Format(time.RFC3339))
		}
		log.Warn("node certificate expired; joining again with the token", "notAfter", leaf.NotAfter)
		return joinCluster(ctx, cfg, tok, dir, log)
	}
	return creds, nil
}

// loadCredentials reads a joined node's files; fs.ErrNotExist means the
// node has not joined (or a join was interrupted before its last file).
func loadCredentials(dir string) (*nodeCredentials, error) {
	read := func(name string) ([]byte, error) {
		b, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil && !errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("read node credentials: %w", err)
		}
		return b, err
	}
	certPEM, err := read(certFile)
	if err != nil {
		return nil, err
	}
	keyPEM, err := read(keyFile)
	if err != nil {
		return nil, err
	}
	caPEM, err := read(caFile)
	if err != nil {
		return nil, err
	}
	password, err := read(passwordFile)
	if err != nil {
		return nil, err
	}
	creds, err := newCredentials(dir, caPEM, certPEM, keyPEM, strings.TrimSpace(string(password)))
	if err != nil {
		return nil, fmt.Errorf("node credentials in %s: %w (remove them and join again with --token)", dir, err)
	}
	return creds, nil
}

func newCredentials(dir string, caPEM, certPEM, keyPEM []byte, password string) (*nodeCredentials, error) {
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(caPEM) {
		return nil, fmt.Errorf("%s holds no PEM certificate", caFile)
	}
	pair, err := parseNodeCertificate(certPEM, keyPEM)
	if err != nil {
		return nil, err
	}
	if password == "" {
		return nil, fmt.Errorf("%s is empty", passwordFile)
	}
	return &nodeCredentials{dir: dir, caPEM: caPEM, roots: roots, password: password, cert: pair}, nil
}

// parseNodeCertificate checks that a certificate and key belong together.
func parseNodeCertificate(certPEM, keyPEM []byte) (*tls.Certificate, error) {
	pair, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return nil, fmt.Errorf("node certificate: %w", err)
	}
	if pair.Leaf == nil {
		if pair.Leaf, err = x509.ParseCertificate(pair.Certificate[0]); err != nil {
			return nil, fmt.Errorf("node certificate: %w", err)
		}
	}
	return &pair, nil
}

// joinCluster verifies the server against the token, obtains the node's
// certificate and stores the credentials.
func joinCluster(ctx context.Context, cfg Config, tok jointoken.Token, dir string, log *slog.Logger) (*nodeCredentials, error) {
	caPEM, err := fetchCA(ctx, cfg.ServerURL, tok)
	if err != nil {
		return nil, fmt.Errorf("orch agent: join %s: %w", cfg.ServerURL, err)
	}
	if !tok.Pinned() {
		log.Warn("the token does not pin the server's CA (a bare secret): trusting the CA the server presented", "caHash", jointoken.CAHash(caPEM))
	}
	password, err := nodePassword(dir)
	if err != nil {
		return nil, fmt.Errorf("orch agent: %w", err)
	}
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(caPEM) {
		return nil, fmt.Errorf("orch agent: join %s: the server's CA is not a PEM certificate", cfg.ServerURL)
	}
	client := &http.Client{Transport: &http.Transport{
		TLSClientConfig: &tls.Config{RootCAs: roots, MinVersion: tls.VersionTLS12},
	}}
	defer client.CloseIdleConnections()
	keyPEM, csr, err := jointoken.NewNodeKey(cfg.NodeName)
	if err != nil {
		return nil, fmt.Errorf("orch agent: %w", err)
	}
	certPEM, err := requestNodeCertificate(ctx, client, cfg.ServerURL, cfg.NodeName, password, tok.Secret, csr)
	if err != nil {
		return nil, fmt.Errorf("orch agent: join %s: %w", cfg.ServerURL, err)
	}
	creds, err := newCredentials(dir, caPEM, certPEM, keyPEM, password)
	if err != nil {
		return nil, fmt.Errorf("orch agent: join %s: the server's answer: %w", cfg.ServerURL, err)
	}
	if err := creds.save(); err != nil {
		return nil, err
	}
	log.Info("joined the cluster", "server", cfg.ServerURL, "node", cfg.NodeName, "certificateExpires", creds.current().Leaf.NotAfter)
	return creds, nil
}

// save writes the credentials, the certificate last: a join interrupted
// before it is not a join, and the next start joins again.
func (c *nodeCredentials) save() error {
	cert := c.current()
	keyPEM, err := encodeKeyPEM(cert)
	if err != nil {
		return err
	}
	certPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: cert.Certificate[0]})
	if err := os.MkdirAll(c.dir, 0o700); err != nil {
		return fmt.Errorf("orch agent: %w", err)
	}
	for _, f := range []struct {
		name string
		data []byte
	}{
		{passwordFile, []byte(c.password + "\n")},
		{caFile, c.caPEM},
		{keyFile, keyPEM},
		{certFile, certPEM},
	} {
		if err := writeFileAtomic(filepath.Join(c.dir, f.name), f.data, 0o600); err != nil {
			return fmt.Errorf("orch agent: store node credentials: %w", err)
		}
	}
	return nil
}

// encodeKeyPEM is the private key of cert as PKCS #8 PEM.
func encodeKeyPEM(cert *tls.Certificate) ([]byte, error) {
	der, err := x509.MarshalPKCS8PrivateKey(cert.PrivateKey)
	if err != nil {
		return nil, fmt.Errorf("orch agent: encode node key: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), nil
}

// nodePassword returns the stored node password, or a new random one
// (stored with the other credentials once the join succeeded).
func nodePassword(dir string) (string, error) {
	b, err := os.ReadFile(filepath.Join(dir, passwordFile))
	switch {
	case err == nil && strings.TrimSpace(string(b)) != "":
		return strings.TrimSpace(string(b)), nil
	case err != nil && !errors.Is(err, fs.ErrNotExist):
		return "", fmt.Errorf("read node password: %w", err)
	}
	var p [32]byte
	if _, err := rand.Read(p[:]); err != nil {
		return "", fmt.Errorf("generate node password: %w", err)
	}
	return hex.EncodeToString(p[:]), nil
}

// fetchCA returns the server's CA certificate if it is the one tok pins.
// The connection is not verified (the CA is what we are learning), so
// nothing secret is sent on it.
func fetchCA(ctx context.Context, serverURL string, tok jointoken.Token) ([]byte, error) {
	client := &http.Client{Transport: &http.Transport{
		// The pin in the token replaces certificate verification here.
		TLSClientConfig: &tls.Config{InsecureSkipVerify: true, MinVersion: tls.VersionTLS12}, //nolint:gosec
	}}
	defer client.CloseIdleConnections()
	ctx, cancel := context.WithTimeout(ctx, joinRequestTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, strings.TrimSuffix(serverURL, "/")+jointoken.CACertsPath, nil)
	if err != nil {
		return nil, err
	}
	resp, err := client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("fetch the server's CA: %w", err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxJoinAnswerBytes))
	if err != nil {
		return nil, fmt.Errorf("fetch the server's CA: %w", err)
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("fetch the server's CA: %s", answerError(resp, body))
	}
	if block, _ := pem.Decode(body); block == nil || block.Type != "CERTIFICATE" {
		return nil, fmt.Errorf("fetch the server's CA: %s answered something that is not a PEM certificate", jointoken.CACertsPath)
	}
	if got := jointoken.CAHash(body); tok.Pinned() && got != tok.CAHash {
		return nil, fmt.Errorf("server CA hash mismatch: token pins sha256:%s, server presented sha256:%s "+
			"(wrong server, wrong token, or someone in between)", tok.CAHash, got)
	}
	return body, nil
}

// requestNodeCertificate sends csr for the node's client certificate with
// the join secret (bearer, first join) or with the certificate client
// presents (renewal, bearer empty). It returns the certificate PEM.
func requestNodeCertificate(ctx context.Context, client *http.Client, serverURL, node, password, bearer string, csr []byte) ([]byte, error) {
	ctx, cancel := context.WithTimeout(ctx, joinRequestTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, strings.TrimSuffix(serverURL, "/")+jointoken.NodeCertificatePath, bytes.NewReader(csr))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", jointoken.CertificateRequestContentType)
	req.Header.Set(jointoken.NodeNameHeader, node)
	req.Header.Set(jointoken.NodePasswordHeader, password)
	if bearer != "" {
		req.Header.Set("Authorization", "Bearer "+bearer)
	}
	resp, err := client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("ask for the node certificate: %w", err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxJoinAnswerBytes))
	if err != nil {
		return nil, fmt.Errorf("ask for the node certificate: %w", err)
	}
	switch resp.StatusCode {
	case http.StatusOK:
	case http.StatusUnauthorized:
		if bearer != "" {
			return nil, fmt.Errorf("the server refused the token (%s): check --token", answerError(resp, body))
		}
		return nil, fmt.Errorf("the server refused the node certificate (%s)", answerError(resp, body))
	default:
		return nil, fmt.Errorf("ask for the node certificate: %s", answerError(resp, body))
	}
	var certPEM []byte
	for rest := body; ; {
		var b *pem.Block
		if b, rest = pem.Decode(rest); b == nil {
			break
		}
		switch {
		case b.Type == "CERTIFICATE":
			certPEM = append(certPEM, pem.EncodeToMemory(b)...)
		case strings.HasSuffix(b.Type, "PRIVATE KEY"):
			return nil, errors.New("ask for the node certificate: the server answered with a key of its own; " +
				"it is older than this agent, which makes its own: upgrade the server first")
		}
	}
	if len(certPEM) == 0 {
		return nil, errors.New("ask for the node certificate: the answer holds no certificate")
	}
	return certPEM, nil
}

// answerError describes a refusal: the Status message when the server sent
// one (it does for everything but transport errors), else the body.
func answerError(resp *http.Response, body []byte) string {
	var st metav1.Status
	if json.Unmarshal(body, &st) == nil && st.Kind == "Status" && st.Message != "" {
		return fmt.Sprintf("%s: %s", resp.Status, st.Message)
	}
	text := strings.TrimSpace(string(bytes.ToValidUTF8(body, nil)))
	if len(text) > 200 {
		text = text[:200] + "..."
	}
	if text == "" {
		return resp.Status
	}
	return fmt.Sprintf("%s: %s", resp.Status, text)
}
