package auth

import (
	"crypto/tls"
	"crypto/x509"
	"net/http"
	"net/http/httptest"
	"slices"
	"testing"
	"time"

	"github.com/orch-dev/orch/server/apiserver"
	"github.com/orch-dev/orch/server/pki"
)

func clientCert(t *testing.T, a *pki.Authority, cn string, groups ...string) []*x509.Certificate {
	t.Helper()
	certPEM, keyPEM, err := a.SignClient(cn, groups, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	pair, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	return []*x509.Certificate{pair.Leaf}
}

func TestAuthenticate(t *testing.T) {
	ca, err := pki.Load(t.TempDir(), pki.Options{})
	if err != nil {
		t.Fatal(err)
	}
	other, err := pki.Load(t.TempDir(), pki.Options{})
	if err != nil {
		t.Fatal(err)
	}
	const secret = "0123456789abcdef"
	const adminToken = "fedcba9876543210fedcba9876543210"
	authn := New(Options{ClientCAs: ca.CAPool(), BootstrapSecret: secret, AdminToken: adminToken})

	admin := clientCert(t, ca, pki.AdminUser, pki.AdminGroup)
	node := clientCert(t, ca, "system:node:box", "system:nodes")
	foreign := clientCert(t, other, pki.AdminUser, pki.AdminGroup)
	serving := []*x509.Certificate{ca.ServingCertificate().Leaf}

	tests := []struct {
		name   string
		certs  []*x509.Certificate
		header string
		want   *apiserver.UserInfo // nil: unauthenticated
	}{
		{name: "admin certificate", certs: admin,
			want: &apiserver.UserInfo{Name: "system:admin", Groups: []string{"system:masters", "system:authenticated"}}},
		{name: "node certificate", certs: node,
			want: &apiserver.UserInfo{Name: "system:node:box", Groups: []string{"system:nodes", "system:authenticated"}}},
		{name: "certificate wins over a bad token", certs: node, header: "Bearer nope",
			want: &apiserver.UserInfo{Name: "system:node:box", Groups: []string{"system:nodes", "system:authenticated"}}},
		{name: "foreign CA", certs: foreign},
		{name: "server certificate is no client certificate", certs: serving},
		{name: "bootstrap token", header: "Bearer " + secret,
			want: &apiserver.UserInfo{Name: BootstrapUser, Groups: []string{BootstrapGroup, "system:authenticated"}}},
		{name: "bootstrap token lower-case scheme", header: "bearer " + secret,
			want: &apiserver.UserInfo{Name: BootstrapUser, Groups: []string{BootstrapGroup, "system:authenticated"}}},
		{name: "foreign CA falls back to token", certs: foreign, header: "Bearer " + secret,
			want: &apiserver.UserInfo{Name: BootstrapUser, Groups: []string{BootstrapGroup, "system:authenticated"}}},
		{name: "admin token", header: "Bearer " + adminToken,
			want: &apiserver.UserInfo{Name: AdminUser, Groups: []string{MastersGroup, "system:authenticated"}}},
		{name: "wrong token", header: "Bearer " + secret + "x"},
		{name: "token prefix", header: "Bearer " + secret[:4]},
		{name: "empty bearer", header: "Bearer "},
		{name: "no scheme", header: secret},
		{name: "basic auth", header: "Basic " + secret},
		{name: "nothing"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := httptest.NewRequest(http.MethodGet, "/api/v1/namespaces", nil)
			if tt.certs != nil {
				r.TLS = &tls.ConnectionState{PeerCertificates: tt.certs}
			}
			if tt.header != "" {
				r.Header.Set("Authorization", tt.header)
			}
			got, ok := authn.Authenticate(r)
			if tt.want == nil {
				if ok {
					t.Fatalf("authenticated as %+v, want unauthenticated", got)
				}
				return
			}
			if !ok {
				t.Fatal("unauthenticated")
			}
			if got.Name != tt.want.Name || !slices.Equal(got.Groups, tt.want.Groups) {
				t.Errorf("got %+v, want %+v", got, *tt.want)
			}
		})
	}
}

func TestAuthenticateDisabled(t *testing.T) {
	ca, err := pki.Load(t.TempDir(), pki.Options{})
	if err != nil {
		t.Fatal(err)
	}
	authn := New(Options{})
	r := httptest.NewRequest(http.MethodGet, "/", nil)
	r.TLS = &tls.ConnectionState{PeerCertificates: clientCert(t, ca, "x")}
	r.Header.Set("Authorization", "Bearer ")
	if u, ok := authn.Authenticate(r); ok {
		t.Errorf("authenticated as %+v with no CA and no secret", u)
	}
}

func TestAuthenticateTrustsHandshakeChainOnlyWhenTold(t *testing.T) {
	ca, err := pki.Load(t.TempDir(), pki.Options{})
	if err != nil {
		t.Fatal(err)
	}
	other, err := pki.Load(t.TempDir(), pki.Options{})
	if err != nil {
		t.Fatal(err)
	}
	node := clientCert(t, ca, "system:node:box", "system:nodes")
	foreign := clientCert(t, other, "system:node:evil", "system:nodes")
	for _, tt := range []struct {
		name      string
		handshake bool
		chain     []*x509.Certificate
		want      string
	}{
		{"handshake chain trusted", true, node, "system:node:box"},
		{"handshake chain not trusted: verified again", false, node, "system:node:box"},
		{"foreign chain is verified when the handshake is not trusted", false, foreign, ""},
	} {
		t.Run(tt.name, func(t *testing.T) {
			authn := New(Options{ClientCAs: ca.CAPool(), HandshakeVerifiesClientCAs: tt.handshake})
			r := httptest.NewRequest(http.MethodGet, "/api", nil)
			r.TLS = &tls.ConnectionState{PeerCertificates: tt.chain, VerifiedChains: [][]*x509.Certificate{tt.chain}}
			got, ok := authn.Authenticate(r)
			if tt.want == "" {
				if ok {
					t.Fatalf("authenticated as %v", got)
				}
				return
			}
			if !ok || got.Name != tt.want {
				t.Fatalf("got %v %v, want %s", got, ok, tt.want)
			}
		})
	}
}
