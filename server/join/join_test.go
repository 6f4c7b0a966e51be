package join

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"

	"github.com/orch-dev/orch/internal/jointoken"
	"github.com/orch-dev/orch/server/apiserver"
	"github.com/orch-dev/orch/server/auth"
	"github.com/orch-dev/orch/server/auth/bootstraptoken"
	"github.com/orch-dev/orch/server/pki"
)

const (
	testSecret     = "join-secret-for-tests"
	testAdminToken = "admin-token-for-tests"
	serverNode     = "server-node"
)

// fakeObjects is an in-memory Objects keyed by resource/namespace/name.
type fakeObjects struct {
	mu   sync.Mutex
	objs map[string]runtime.Object
}

func newFakeObjects() *fakeObjects { return &fakeObjects{objs: map[string]runtime.Object{}} }

func key(gvr schema.GroupVersionResource, ns, name string) string {
	return gvr.Resource + "/" + ns + "/" + name
}

func (f *fakeObjects) Get(_ context.Context, gvr schema.GroupVersionResource, ns, name string) (runtime.Object, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	obj, ok := f.objs[key(gvr, ns, name)]
	if !ok {
		return nil, apierrors.NewNotFound(gvr.GroupResource(), name)
	}
	return obj.DeepCopyObject(), nil
}

func (f *fakeObjects) Create(_ context.Context, gvr schema.GroupVersionResource, obj runtime.Object, _ string) (runtime.Object, error) {
	m := obj.(metav1.Object)
	f.mu.Lock()
	defer f.mu.Unlock()
	k := key(gvr, m.GetNamespace(), m.GetName())
	if _, ok := f.objs[k]; ok {
		return nil, apierrors.NewAlreadyExists(gvr.GroupResource(), m.GetName())
	}
	f.objs[k] = obj.DeepCopyObject()
	return obj, nil
}

func (f *fakeObjects) secret(name string) *corev1.Secret {
	obj, err := f.Get(context.Background(), secretsGVR, passwordNamespace, name)
	if err != nil {
		return nil
	}
	return obj.(*corev1.Secret)
}

// testServer serves the join endpoints over TLS on 127.0.0.1 with the
// server's real authentication and CA.
type testServer struct {
	ca      *pki.Authority
	objects *fakeObjects
	url     string
	pool    *x509.CertPool
}

func newTestServer(t *testing.T) *testServer {
	t.Helper()
	ca, err := pki.Load(t.TempDir(), pki.Options{})
	if err != nil {
		t.Fatal(err)
	}
	objects := newFakeObjects()
	authn := auth.New(auth.Options{ClientCAs: ca.CAPool(), HandshakeVerifiesClientCAs: true,
		BootstrapSecret: testSecret, AdminToken: testAdminToken}).
		WithBootstrapTokens(auth.NewBootstrapTokens(objects, nil, slog.New(slog.DiscardHandler)))
	for _, info := range []bootstraptoken.Info{
		{ID: "abcdef", Secret: "0123456789abcdef", Usages: []string{bootstraptoken.UsageAuthentication},
			Expiration: time.Now().Add(time.Hour), ExtraGroups: []string{bootstraptoken.DefaultExtraGroup}},
		{ID: "old001", Secret: "0123456789abcdef", Usages: []string{bootstraptoken.UsageAuthentication},
			Expiration: time.Date(2025, 11, 23, 15, 0, 0, 0, time.UTC)},
	} {
		secret, err := bootstraptoken.NewSecret(info)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := objects.Create(context.Background(), secretsGVR, secret, ""); err != nil {
			t.Fatal(err)
		}
	}
	h, err := New(Options{CA: ca, Objects: objects, Authenticate: authn.AuthenticateRequest, ReservedNodeNames: []string{serverNode}})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewUnstartedServer(h)
	srv.TLS = &tls.Config{
		Certificates: []tls.Certificate{ca.ServingCertificate()},
		ClientAuth:   tls.VerifyClientCertIfGiven,
		ClientCAs:    ca.CAPool(),
	}
	srv.StartTLS()
	t.Cleanup(srv.Close)
	return &testServer{ca: ca, objects: objects, url: srv.URL, pool: ca.CAPool()}
}

// client returns a client that verifies the server and presents cert (if
// not nil).
func (s *testServer) client(cert *tls.Certificate) *http.Client {
	cfg := &tls.Config{RootCAs: s.pool, MinVersion: tls.VersionTLS12}
	if cert != nil {
		cfg.Certificates = []tls.Certificate{*cert}
	}
	return &http.Client{Transport: &http.Transport{TLSClientConfig: cfg}}
}

type certRequest struct {
	bearer   string
	cert     *tls.Certificate
	node     string
	password string
	method   string
	// csr is the body; nil means a good request for node with a new key.
	csr         []byte
	contentType string // default application/pkcs10
}

// newCSR makes a key and a certificate request for subject.
func newCSR(t *testing.T, subject pkix.Name) (*ecdsa.PrivateKey, []byte) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{Subject: subject}, key)
	if err != nil {
		t.Fatal(err)
	}
	return key, der
}

func nodeSubject(node string) pkix.Name {
	return pkix.Name{CommonName: "system:node:" + node, Organization: []string{"system:nodes"}}
}

// request asks for a node certificate; key is the private key of the
// request it made (nil when req.csr was given).
func (s *testServer) request(t *testing.T, req certRequest) (code int, body []byte, key *ecdsa.PrivateKey) {
	t.Helper()
	method := req.method
	if method == "" {
		method = http.MethodPost
	}
	csr := req.csr
	if csr == nil {
		key, csr = newCSR(t, nodeSubject(req.node))
	}
	r, err := http.NewRequest(method, s.url+jointoken.NodeCertificatePath, bytes.NewReader(csr))
	if err != nil {
		t.Fatal(err)
	}
	r.Header.Set("Content-Type", jointoken.CertificateRequestContentType)
	if req.contentType != "" {
		r.Header.Set("Content-Type", req.contentType)
	}
	if req.bearer != "" {
		r.Header.Set("Authorization", "Bearer "+req.bearer)
	}
	if req.node != "" {
		r.Header.Set(jointoken.NodeNameHeader, req.node)
	}
	if req.password != "" {
		r.Header.Set(jointoken.NodePasswordHeader, req.password)
	}
	resp, err := s.client(req.cert).Do(r)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err = io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, body, key
}

// issued parses an answer: the certificate alone, for key, checked
// against the CA.
func (s *testServer) issued(t *testing.T, body []byte, node string, key *ecdsa.PrivateKey) tls.Certificate {
	t.Helper()
	if bytes.Contains(body, []byte("PRIVATE KEY")) {
		t.Fatalf("the answer holds a private key:\n%s", body)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	pair, err := tls.X509KeyPair(body, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}))
	if err != nil {
		t.Fatalf("answer is not a certificate for the request's key: %v\n%s", err, body)
	}
	leaf, err := x509.ParseCertificate(pair.Certificate[0])
	if err != nil {
		t.Fatal(err)
	}
	if _, err := leaf.Verify(x509.VerifyOptions{Roots: s.pool, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
		t.Errorf("issued certificate does not verify as a client certificate of the CA: %v", err)
	}
	if got, want := leaf.Subject.CommonName, "system:node:"+node; got != want {
		t.Errorf("CN = %q, want %q", got, want)
	}
	if got := leaf.Subject.Organization; len(got) != 1 || got[0] != "system:nodes" {
		t.Errorf("O = %q, want [system:nodes]", got)
	}
	return pair
}

func status(t *testing.T, body []byte) metav1.Status {
	t.Helper()
	var st metav1.Status
	if err := json.Unmarshal(body, &st); err != nil || st.Kind != "Status" {
		t.Fatalf("answer is not a Status (%v): %s", err, body)
	}
	return st
}

func TestCACerts(t *testing.T) {
	s := newTestServer(t)
	// The agent does not know the CA yet: it fetches without verifying.
	insecure := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}}
	resp, err := insecure.Get(s.url + jointoken.CACertsPath)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /cacerts: %s: %s", resp.Status, body)
	}
	tok := jointoken.New(s.ca.CACertPEM(), testSecret)
	if err := tok.VerifyCA(body); err != nil {
		t.Errorf("served CA does not match the token's pin: %v", err)
	}
	if block, _ := pem.Decode(body); block == nil || block.Type != "CERTIFICATE" {
		t.Errorf("GET /cacerts = %q, want a PEM certificate", body)
	}

	resp, err = insecure.Post(s.url+jointoken.CACertsPath, "text/plain", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusMethodNotAllowed {
		t.Errorf("POST /cacerts: %s, want 405", resp.Status)
	}
}

func TestNodeCertificate(t *testing.T) {
	s := newTestServer(t)

	// First join of n1 records its password.
	code, body, key := s.request(t, certRequest{bearer: testSecret, node: "n1", password: "pw-1"})
	if code != http.StatusOK {
		t.Fatalf("join n1: %d %s", code, body)
	}
	n1Cert := s.issued(t, body, "n1", key)
	stored := s.objects.secret("n1.node-password.orch")
	if stored == nil {
		t.Fatal("no password Secret kube-system/n1.node-password.orch after the join")
	}
	if h := string(stored.Data["hash"]); !strings.HasPrefix(h, "sha256$") || strings.Contains(h, "pw-1") {
		t.Errorf("stored password hash = %q", h)
	}

	// An admin certificate is a valid client certificate, not a node's.
	adminPair, err := tls.LoadX509KeyPair(s.ca.Dir()+"/"+pki.AdminCertFile, s.ca.Dir()+"/"+pki.AdminKeyFile)
	if err != nil {
		t.Fatal(err)
	}

	for _, tc := range []struct {
		name string
		req  certRequest
		code int
		msg  string // in the Status message
	}{
		{"same machine joins again", certRequest{bearer: testSecret, node: "n1", password: "pw-1"}, 200, ""},
		{"another machine with the same name", certRequest{bearer: testSecret, node: "n1", password: "pw-other"}, 403,
			`nodes "n1" is forbidden: node password rejected: a node named "n1" already joined from another machine`},
		{"wrong secret", certRequest{bearer: "not-the-secret", node: "n2", password: "pw-2"}, 401, "a node certificate needs the join token's secret"},
		{"bootstrap token", certRequest{bearer: "abcdef.0123456789abcdef", node: "b1", password: "pw-b1"}, 200, ""},
		{"expired bootstrap token", certRequest{bearer: "old001.0123456789abcdef", node: "n2", password: "pw-2"}, 401,
			"join token old001 expired at 2025-11-23T15:00:00Z"},
		{"expired bootstrap token, wrong secret: expiry not told", certRequest{bearer: "old001.0123456789abcdee", node: "n2", password: "pw-2"}, 401,
			"needs the join token's secret"},
		{"unknown bootstrap token", certRequest{bearer: "nobody.0123456789abcdef", node: "n2", password: "pw-2"}, 401, "a node certificate needs the join token's secret"},
		{"no credentials", certRequest{node: "n2", password: "pw-2"}, 401, "a node certificate needs the join token's secret"},
		{"renewal with the node's certificate", certRequest{cert: &n1Cert, node: "n1", password: "pw-1"}, 200, ""},
		{"renewal with the wrong password", certRequest{cert: &n1Cert, node: "n1", password: "pw-other"}, 403, "node password rejected"},
		{"a node asks for another node's certificate", certRequest{cert: &n1Cert, node: "n3", password: "pw-3"}, 403,
			`node "n1" may renew only its own certificate`},
		{"admin is not a node", certRequest{cert: &adminPair, node: "n3", password: "pw-3"}, 403,
			`user "system:admin" may not ask for node certificates`},
		{"admin token is not a node", certRequest{bearer: testAdminToken, node: "n3", password: "pw-3"}, 403, "may not ask for node certificates"},
		{"server's own node name", certRequest{bearer: testSecret, node: serverNode, password: "pw"}, 403, "belongs to the node inside the server"},
		{"no node name", certRequest{bearer: testSecret, password: "pw"}, 400, "Orch-Node-Name header"},
		{"bad node name", certRequest{bearer: testSecret, node: "Bad_Name", password: "pw"}, 400, `invalid node name "Bad_Name"`},
		{"too long node name", certRequest{bearer: testSecret, node: strings.Repeat("a", 240), password: "pw"}, 400, "must be no more than 234 characters"},
		{"no password", certRequest{bearer: testSecret, node: "n4"}, 400, "Orch-Node-Password header"},
		{"too long password", certRequest{bearer: testSecret, node: "n4", password: strings.Repeat("p", 257)}, 400, "longer than 256"},
		{"GET", certRequest{bearer: testSecret, node: "n4", password: "pw", method: http.MethodGet}, 405, ""},
		{"no certificate request", certRequest{bearer: testSecret, node: "n4", password: "pw", csr: []byte{}}, 400,
			"not a PKCS #10 certificate request"},
		{"not PKCS #10", certRequest{bearer: testSecret, node: "n4", password: "pw", csr: []byte("hello")}, 400,
			"not a PKCS #10 certificate request"},
		{"PEM instead of DER", certRequest{bearer: testSecret, node: "n4", password: "pw",
			csr: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: csrFor("n4")})}, 400, "not a PKCS #10"},
		{"old agent without a request", certRequest{bearer: testSecret, node: "n4", password: "pw", contentType: "text/plain"}, 400,
			"upgrade the agent"},
		{"oversized request", certRequest{bearer: testSecret, node: "n4", password: "pw", csr: make([]byte, 1<<20)}, 413, "larger than"},
		{"request for another node", certRequest{bearer: testSecret, node: "n4", password: "pw", csr: csrFor("n1")}, 403,
			`the certificate request is for CN "system:node:n1"`},
		{"request for the admin", certRequest{bearer: testSecret, node: "n4", password: "pw", csr: csrWith(pkix.Name{CommonName: "system:node:n4",
			Organization: []string{"system:nodes", "system:masters"}})}, 403, `want CN "system:node:n4" O ["system:nodes"]`},
		{"request with a SAN", certRequest{bearer: testSecret, node: "n4", password: "pw", csr: csrWithSAN("n4")}, 400,
			"must not ask for subject alternative names"},
		{"request with a broken signature", certRequest{bearer: testSecret, node: "n4", password: "pw", csr: brokenCSR("n4")}, 400,
			"signature does not verify"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, body, key := s.request(t, tc.req)
			if code != tc.code {
				t.Fatalf("status %d, want %d: %s", code, tc.code, body)
			}
			if code == http.StatusOK {
				s.issued(t, body, tc.req.node, key)
				return
			}
			st := status(t, body)
			if int(st.Code) != tc.code || !strings.Contains(st.Message, tc.msg) {
				t.Errorf("Status code %d message %q, want %d containing %q", st.Code, st.Message, tc.code, tc.msg)
			}
		})
	}
	// n4's refusals are all about its request: none stored a password.
	for _, name := range []string{"n2", "n3", "n4", serverNode} {
		if s.objects.secret(name+".node-password.orch") != nil {
			t.Errorf("a refused join stored a password for %s", name)
		}
	}
}

func csrWith(subject pkix.Name) []byte {
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	der, _ := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{Subject: subject}, key)
	return der
}

func csrFor(node string) []byte { return csrWith(nodeSubject(node)) }

func csrWithSAN(node string) []byte {
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	der, _ := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{Subject: nodeSubject(node), DNSNames: []string{"kubernetes"}}, key)
	return der
}

// brokenCSR is a request whose signature was made over other content.
func brokenCSR(node string) []byte {
	der := csrFor(node)
	// The last byte belongs to the signature.
	der[len(der)-1] ^= 0xff
	return der
}

// TestConcurrentJoinsSameName: of two machines racing for one name,
// exactly one gets it.
func TestConcurrentJoinsSameName(t *testing.T) {
	s := newTestServer(t)
	const machines = 8
	codes := make([]int, machines)
	var wg sync.WaitGroup
	for i := range machines {
		wg.Go(func() {
			codes[i], _, _ = s.request(t, certRequest{bearer: testSecret, node: "contested", password: "pw-" + string(rune('a'+i))})
		})
	}
	wg.Wait()
	ok := 0
	for _, c := range codes {
		switch c {
		case http.StatusOK:
			ok++
		case http.StatusForbidden:
		default:
			t.Errorf("unexpected status %d", c)
		}
	}
	if ok != 1 {
		t.Errorf("%d machines got node name \"contested\", want exactly 1 (codes %v)", ok, codes)
	}
}

func TestNodeNameForTunnel(t *testing.T) {
	// A stand-in for server/auth: the user and groups come from headers.
	nodeName := NodeName(func(r *http.Request) (apiserver.UserInfo, bool) {
		u := r.Header.Get("X-Test-User")
		return apiserver.UserInfo{Name: u, Groups: strings.Split(r.Header.Get("X-Test-Groups"), ",")}, u != ""
	})
	for _, tc := range []struct {
		user, groups string
		want         string
		wantErr      string
	}{
		{"system:node:n1", "system:nodes", "n1", ""},
		{"system:node:n1", "system:masters", "", "is not a node"},
		{"system:node:", "system:nodes", "", "is not a node"},
		{"node-bootstrap", "system:bootstrappers", "", "is not a node"},
		{"", "", "", "needs a node's client certificate"},
	} {
		r := httptest.NewRequest(http.MethodPost, "/tunnel/v1/control", nil)
		if tc.user != "" {
			r.Header.Set("X-Test-User", tc.user)
			r.Header.Set("X-Test-Groups", tc.groups)
		}
		got, err := nodeName(r)
		if got != tc.want || (err == nil) != (tc.wantErr == "") || (err != nil && !strings.Contains(err.Error(), tc.wantErr)) {
			t.Errorf("user %q groups %q: got %q, %v; want %q, error containing %q", tc.user, tc.groups, got, err, tc.want, tc.wantErr)
		}
	}
}

func TestPasswordHash(t *testing.T) {
	h1, err := hashPassword("secret")
	if err != nil {
		t.Fatal(err)
	}
	h2, _ := hashPassword("secret")
	if h1 == h2 {
		t.Error("two hashes of one password are equal: no salt")
	}
	for _, tc := range []struct {
		stored, password string
		want             bool
	}{
		{h1, "secret", true},
		{h2, "secret", true},
		{h1, "Secret", false},
		{h1, "", false},
		{"", "secret", false},
		{"md5$00$00", "secret", false},
		{"sha256$zz$00", "secret", false},
		{"sha256$nohash", "secret", false},
	} {
		if got := passwordMatches(tc.stored, tc.password); got != tc.want {
			t.Errorf("passwordMatches(%q, %q) = %v, want %v", tc.stored, tc.password, got, tc.want)
		}
	}
}
