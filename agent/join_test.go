package agent

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/orch-dev/orch/internal/jointoken"
	"github.com/orch-dev/orch/internal/tunnel"
)

// testCA is a throwaway cluster CA.
type testCA struct {
	cert *x509.Certificate
	key  crypto.Signer
	pem  []byte
}

func newTestCA(t testing.TB) *testCA {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "orch-test-ca"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	return &testCA{cert: cert, key: key, pem: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})}
}

// issue returns a certificate and key PEM signed by the CA.
func (ca *testCA) issue(t testing.TB, tmpl *x509.Certificate) (certPEM, keyPEM []byte) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return ca.sign(t, tmpl, key.Public()), pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER})
}

// sign returns a certificate PEM for pub signed by the CA.
func (ca *testCA) sign(t testing.TB, tmpl *x509.Certificate, pub crypto.PublicKey) []byte {
	t.Helper()
	serial, _ := rand.Int(rand.Reader, big.NewInt(1<<62))
	tmpl.SerialNumber = serial
	if tmpl.NotBefore.IsZero() {
		tmpl.NotBefore = time.Now().Add(-time.Minute)
	}
	if tmpl.NotAfter.IsZero() {
		tmpl.NotAfter = time.Now().Add(time.Hour)
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, pub, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
}

func nodeCertTemplate(node string, notBefore, notAfter time.Time) *x509.Certificate {
	return &x509.Certificate{
		Subject:     pkix.Name{CommonName: "system:node:" + node, Organization: []string{"system:nodes"}},
		NotBefore:   notBefore,
		NotAfter:    notAfter,
		KeyUsage:    x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
}

func (ca *testCA) nodeCert(t testing.TB, node string, notBefore, notAfter time.Time) (certPEM, keyPEM []byte) {
	return ca.issue(t, nodeCertTemplate(node, notBefore, notAfter))
}

// fakeJoinServer speaks the server's side of the join protocol (the real
// one is server/join, which the agent must not import) and carries a
// tunnel server, on 127.0.0.1 over HTTP/2.
type fakeJoinServer struct {
	t        testing.TB
	ca       *testCA
	secret   string
	ts       *httptest.Server
	tun      *tunnel.Server
	requests atomic.Int32 // node certificate requests
	validity time.Duration
	// keys are the public keys of the requests the server signed.
	keys      []crypto.PublicKey
	mu        sync.Mutex
	passwords map[string]string
	apiUsers  chan string // CN of each /api/ caller
}

func newFakeJoinServer(t testing.TB, secret string) *fakeJoinServer {
	t.Helper()
	s := &fakeJoinServer{t: t, ca: newTestCA(t), secret: secret, validity: time.Hour,
		passwords: map[string]string{}, apiUsers: make(chan string, 100)}
	tun, err := tunnel.NewServer(tunnel.ServerOptions{NodeName: s.nodeOf, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	s.tun = tun
	mux := http.NewServeMux()
	mux.HandleFunc(jointoken.CACertsPath, func(w http.ResponseWriter, r *http.Request) { w.Write(s.ca.pem) })
	mux.HandleFunc(jointoken.NodeCertificatePath, s.serveNodeCertificate)
	mux.Handle(tunnel.PathPrefix, tun)
	mux.HandleFunc("/api/", func(w http.ResponseWriter, r *http.Request) {
		node, err := s.nodeOf(r)
		if err != nil {
			http.Error(w, err.Error(), http.StatusUnauthorized)
			return
		}
		s.apiUsers <- node
		fmt.Fprintf(w, "hello %s", node)
	})
	servingPEM, servingKey := s.ca.issue(t, &x509.Certificate{
		Subject:     pkix.Name{CommonName: "orch-test-server"},
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)},
		KeyUsage:    x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	})
	serving, err := tls.X509KeyPair(servingPEM, servingKey)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(s.ca.cert)
	ts := httptest.NewUnstartedServer(mux)
	ts.EnableHTTP2 = true
	ts.Config.HTTP2 = tunnel.ServerHTTP2Config()
	ts.Config.ErrorLog = slog.NewLogLogger(slog.DiscardHandler, slog.LevelError)
	ts.TLS = &tls.Config{Certificates: []tls.Certificate{serving}, ClientAuth: tls.VerifyClientCertIfGiven, ClientCAs: pool}
	ts.StartTLS()
	s.ts = ts
	t.Cleanup(func() {
		tun.Close()
		ts.CloseClientConnections()
		ts.Close()
	})
	return s
}

func (s *fakeJoinServer) token() string { return jointoken.New(s.ca.pem, s.secret).String() }

func (s *fakeJoinServer) nodeOf(r *http.Request) (string, error) {
	if r.TLS == nil || len(r.TLS.VerifiedChains) == 0 {
		return "", fmt.Errorf("no verified client certificate")
	}
	node, ok := strings.CutPrefix(r.TLS.VerifiedChains[0][0].Subject.CommonName, "system:node:")
	if !ok {
		return "", fmt.Errorf("not a node")
	}
	return node, nil
}

func writeTestStatus(w http.ResponseWriter, code int, reason metav1.StatusReason, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	json.NewEncoder(w).Encode(metav1.Status{TypeMeta: metav1.TypeMeta{Kind: "Status", APIVersion: "v1"},
		Status: metav1.StatusFailure, Code: int32(code), Reason: reason, Message: msg})
}

func (s *fakeJoinServer) serveNodeCertificate(w http.ResponseWriter, r *http.Request) {
	s.requests.Add(1)
	name, password := r.Header.Get(jointoken.NodeNameHeader), r.Header.Get(jointoken.NodePasswordHeader)
	byCert, certErr := s.nodeOf(r)
	switch {
	case certErr == nil && byCert == name:
	case r.Header.Get("Authorization") == "Bearer "+s.secret:
	case r.Header.Get("Authorization") == "Bearer "+expiredBootstrapToken:
		writeTestStatus(w, http.StatusUnauthorized, metav1.StatusReasonUnauthorized, "join token abcdef expired at 2025-11-23T15:00:00Z")
		return
	default:
		writeTestStatus(w, http.StatusUnauthorized, metav1.StatusReasonUnauthorized, "Unauthorized")
		return
	}
	// As server/join: the request's signature and subject, before the
	// password is recorded.
	body, _ := io.ReadAll(r.Body)
	csr, err := x509.ParseCertificateRequest(body)
	if err != nil || csr.CheckSignature() != nil || r.Header.Get("Content-Type") != jointoken.CertificateRequestContentType ||
		csr.Subject.CommonName != "system:node:"+name || len(csr.Subject.Organization) != 1 || csr.Subject.Organization[0] != "system:nodes" {
		writeTestStatus(w, http.StatusBadRequest, metav1.StatusReasonBadRequest, fmt.Sprintf("bad certificate request: %v", err))
		return
	}
	s.mu.Lock()
	known, ok := s.passwords[name]
	if !ok {
		s.passwords[name] = password
	}
	s.keys = append(s.keys, csr.PublicKey)
	s.mu.Unlock()
	if ok && known != password {
		writeTestStatus(w, http.StatusForbidden, metav1.StatusReasonForbidden,
			fmt.Sprintf(`nodes %q is forbidden: node password rejected: a node named %q already joined from another machine`, name, name))
		return
	}
	certPEM := s.ca.sign(s.t, nodeCertTemplate(name, time.Now().Add(-time.Minute), time.Now().Add(s.validity)), csr.PublicKey)
	w.Header().Set("Content-Type", jointoken.NodeCertificateContentType)
	w.Write(certPEM)
}

// expiredBootstrapToken is a bootstrap token the fake server says expired.
const expiredBootstrapToken = "abcdef.0123456789abcdef"

func testJoinConfig(t testing.TB, serverURL, token, node string) Config {
	return Config{ServerURL: serverURL, Token: token, NodeName: node, DataDir: t.TempDir(), Logger: slog.New(slog.DiscardHandler)}
}

func credentialFiles(t testing.TB, dataDir string) []string {
	t.Helper()
	var names []string
	entries, err := os.ReadDir(filepath.Join(dataDir, "agent"))
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	for _, e := range entries {
		names = append(names, e.Name())
	}
	return names
}

func TestJoin(t *testing.T) {
	s := newFakeJoinServer(t, "the-secret")
	other := newTestCA(t)
	s.passwords["taken"] = "another machine's password"
	ctx := context.Background()

	for _, tc := range []struct {
		name    string
		token   string
		node    string
		wantErr string
	}{
		{"good token", s.token(), "n1", ""},
		{"bare secret pins nothing", "the-secret", "n2", ""},
		{"wrong CA hash", jointoken.New(other.pem, "the-secret").String(), "n3",
			fmt.Sprintf("server CA hash mismatch: token pins sha256:%s, server presented sha256:%s",
				jointoken.CAHash(other.pem), jointoken.CAHash(s.ca.pem))},
		{"wrong secret", jointoken.New(s.ca.pem, "not-the-secret").String(), "n4",
			"the server refused the token (401 Unauthorized: Unauthorized): check --token"},
		{"expired bootstrap token", jointoken.Token{CAHash: jointoken.CAHash(s.ca.pem), Secret: expiredBootstrapToken}.String(), "n6",
			"the server refused the token (401 Unauthorized: join token abcdef expired at 2025-11-23T15:00:00Z): check --token"},
		{"node name taken by another machine", s.token(), "taken",
			`403 Forbidden: nodes "taken" is forbidden: node password rejected: a node named "taken" already joined from another machine`},
		{"malformed token", "K10abc::server:x", "n5", "--token: jointoken: CA hash has 3 characters"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := testJoinConfig(t, s.ts.URL, tc.token, tc.node)
			creds, err := credentials(ctx, cfg, cfg.Logger)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want one containing %q", err, tc.wantErr)
				}
				if files := credentialFiles(t, cfg.DataDir); len(files) > 0 {
					t.Errorf("a failed join left files: %v", files)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got := creds.current().Leaf.Subject.CommonName; got != "system:node:"+tc.node {
				t.Errorf("certificate CN = %q", got)
			}
			dir := filepath.Join(cfg.DataDir, "agent")
			for _, f := range []string{caFile, certFile, keyFile, passwordFile} {
				fi, err := os.Stat(filepath.Join(dir, f))
				if err != nil {
					t.Fatal(err)
				}
				if fi.Mode().Perm() != 0o600 {
					t.Errorf("%s has mode %v, want 0600", f, fi.Mode().Perm())
				}
			}
			if b, _ := os.ReadFile(filepath.Join(dir, caFile)); string(b) != string(s.ca.pem) {
				t.Errorf("%s is not the server's CA", caFile)
			}
			if b, _ := os.ReadFile(filepath.Join(dir, passwordFile)); strings.TrimSpace(string(b)) != s.passwords[tc.node] {
				t.Errorf("stored node password is not the one the server saw")
			}
			if files := credentialFiles(t, cfg.DataDir); len(files) != 4 {
				t.Errorf("files after the join: %v, want exactly the 4 credential files", files)
			}
			// The key is the agent's: the server signed its public half.
			s.mu.Lock()
			signed := s.keys[len(s.keys)-1]
			s.mu.Unlock()
			if !creds.current().Leaf.PublicKey.(*ecdsa.PublicKey).Equal(signed) {
				t.Error("the stored certificate is not for the key the agent sent")
			}
			if !creds.current().PrivateKey.(*ecdsa.PrivateKey).PublicKey.Equal(signed) {
				t.Error("the stored key is not the one the agent made")
			}
		})
	}
}

// TestRestartAfterJoin: a joined node starts without the token and asks
// the server for nothing; a token for another cluster is refused.
func TestRestartAfterJoin(t *testing.T) {
	s := newFakeJoinServer(t, "the-secret")
	ctx := context.Background()
	cfg := testJoinConfig(t, s.ts.URL, s.token(), "n1")
	first, err := credentials(ctx, cfg, cfg.Logger)
	if err != nil {
		t.Fatal(err)
	}
	requests := s.requests.Load()

	cfg.Token = ""
	again, err := credentials(ctx, cfg, cfg.Logger)
	if err != nil {
		t.Fatalf("restart without a token: %v", err)
	}
	if !again.current().Leaf.Equal(first.current().Leaf) || again.password != first.password {
		t.Error("restart did not load the stored credentials")
	}
	cfg.Token = s.token()
	if _, err := credentials(ctx, cfg, cfg.Logger); err != nil {
		t.Fatalf("restart with the same token: %v", err)
	}
	if n := s.requests.Load(); n != requests {
		t.Errorf("restarts asked the server for %d certificates, want none", n-requests)
	}

	cfg.Token = jointoken.New(newTestCA(t).pem, "the-secret").String()
	if _, err := credentials(ctx, cfg, cfg.Logger); err == nil || !strings.Contains(err.Error(), "to join another cluster remove") {
		t.Errorf("token of another cluster: err = %v", err)
	}
}

func TestNotJoinedWithoutToken(t *testing.T) {
	cfg := testJoinConfig(t, "https://127.0.0.1:1", "", "n1")
	_, err := credentials(context.Background(), cfg, cfg.Logger)
	if err == nil || !strings.Contains(err.Error(), "has not joined a cluster yet") || !strings.Contains(err.Error(), "--token") {
		t.Errorf("err = %v", err)
	}
}

// TestExpiredCertificate: an expired certificate needs the token again,
// and with it the node joins again under its own password.
func TestExpiredCertificate(t *testing.T) {
	s := newFakeJoinServer(t, "the-secret")
	ctx := context.Background()
	cfg := testJoinConfig(t, s.ts.URL, s.token(), "n1")
	creds, err := credentials(ctx, cfg, cfg.Logger)
	if err != nil {
		t.Fatal(err)
	}
	certPEM, keyPEM := s.ca.nodeCert(t, "n1", time.Now().Add(-2*time.Hour), time.Now().Add(-time.Hour))
	expired, err := parseNodeCertificate(certPEM, keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	creds.cert = expired
	if err := creds.save(); err != nil {
		t.Fatal(err)
	}

	cfg.Token = ""
	if _, err := credentials(ctx, cfg, cfg.Logger); err == nil || !strings.Contains(err.Error(), "expired at") {
		t.Fatalf("expired certificate without a token: err = %v", err)
	}
	cfg.Token = s.token()
	renewed, err := credentials(ctx, cfg, cfg.Logger)
	if err != nil {
		t.Fatalf("expired certificate with the token: %v", err)
	}
	if !renewed.current().Leaf.NotAfter.After(time.Now()) || renewed.password != creds.password {
		t.Error("joining again did not give a valid certificate under the same password")
	}
}

func TestCorruptCredentials(t *testing.T) {
	s := newFakeJoinServer(t, "the-secret")
	cfg := testJoinConfig(t, s.ts.URL, s.token(), "n1")
	if _, err := credentials(context.Background(), cfg, cfg.Logger); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(cfg.DataDir, "agent", keyFile), []byte("garbage"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := credentials(context.Background(), cfg, cfg.Logger)
	if err == nil || !strings.Contains(err.Error(), "remove them and join again") {
		t.Errorf("err = %v", err)
	}
	if _, err := loadCredentials(t.TempDir()); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("loadCredentials of an empty dir = %v, want fs.ErrNotExist", err)
	}
}

// A server from before agents made their own keys answers with a key: the
// agent says to upgrade the server and stores nothing.
func TestJoinOldServer(t *testing.T) {
	ca := newTestCA(t)
	old := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == jointoken.CACertsPath {
			w.Write(ca.pem)
			return
		}
		certPEM, keyPEM := ca.nodeCert(t, "n1", time.Now().Add(-time.Minute), time.Now().Add(time.Hour))
		w.Write(append(certPEM, keyPEM...))
	}))
	t.Cleanup(old.Close)
	// Asked directly, with httptest's client, which trusts its server.
	client := old.Client()
	_, csr, err := jointoken.NewNodeKey("n1")
	if err != nil {
		t.Fatal(err)
	}
	_, err = requestNodeCertificate(context.Background(), client, old.URL, "n1", "pw", "secret", csr)
	if err == nil || !strings.Contains(err.Error(), "upgrade the server first") {
		t.Errorf("answer with a key: err = %v", err)
	}
}

func TestRenewAt(t *testing.T) {
	start := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		life time.Duration
		want time.Duration
	}{
		{365 * 24 * time.Hour, 243*24*time.Hour + 8*time.Hour},
		{3 * time.Hour, 2 * time.Hour},
	} {
		if got := renewAt(start, start.Add(tc.life)).Sub(start); got != tc.want {
			t.Errorf("renewAt of a %s certificate = start+%s, want start+%s", tc.life, got, tc.want)
		}
	}
}

// TestTunnelAfterJoin: after joining, the agent's API requests and the
// server's sessions to it both ride the tunnel authenticated by the node
// certificate, and the certificate is renewed over it.
func TestTunnelAfterJoin(t *testing.T) {
	s := newFakeJoinServer(t, "the-secret")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	cfg := testJoinConfig(t, s.ts.URL, s.token(), "n1")
	if err := cfg.complete(); err != nil {
		t.Fatal(err)
	}
	link, err := dialServer(ctx, &cfg)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.HTTPClient != link.tunnel.Client() {
		t.Fatal("the agent's HTTP client is not the tunnel's")
	}
	// A node that is still starting, then runs with a stand-in node API.
	link.node = &Agent{ready: make(chan struct{})}
	link.nodeAPIOnce.Do(func() {
		link.nodeAPI = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			fmt.Fprintf(w, "node api %s", r.URL.Path)
		})
	})
	done := make(chan error, 1)
	go func() { done <- link.tunnel.Run(ctx) }()
	defer func() { cancel(); <-done }()

	select {
	case <-link.tunnel.Connected():
	case <-time.After(30 * time.Second):
		t.Fatal("tunnel did not connect")
	}
	// Agent to server.
	resp, err := cfg.HTTPClient.Get(cfg.ServerURL + "/api/v1/nodes")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if string(body) != "hello n1" {
		t.Errorf("API answer over the tunnel = %q", body)
	}
	// Server to agent.
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://n1/containerLogs/default/p/c", nil)
	resp, err = s.tun.RoundTripper("n1").RoundTrip(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ = io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusServiceUnavailable || !strings.Contains(string(body), "node n1 is starting") {
		t.Errorf("session before the node runs: %s %q", resp.Status, body)
	}
	close(link.node.ready)
	resp, err = s.tun.RoundTripper("n1").RoundTrip(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ = io.ReadAll(resp.Body)
	resp.Body.Close()
	if string(body) != "node api /containerLogs/default/p/c" {
		t.Errorf("session answer = %q", body)
	}
	// Renewal with the certificate itself, no token.
	before := link.creds.current().Leaf
	requests := s.requests.Load()
	if err := link.renewOnce(ctx); err != nil {
		t.Fatal(err)
	}
	after := link.creds.current().Leaf
	if after.Equal(before) || s.requests.Load() != requests+1 {
		t.Error("renewal did not replace the certificate")
	}
	if after.PublicKey.(*ecdsa.PublicKey).Equal(before.PublicKey) {
		t.Error("renewal kept the old key; each certificate gets a new one")
	}
	stored, err := loadCredentials(filepath.Join(cfg.DataDir, "agent"))
	if err != nil {
		t.Fatal(err)
	}
	if !stored.current().Leaf.Equal(after) {
		t.Error("renewed certificate was not stored")
	}
}
