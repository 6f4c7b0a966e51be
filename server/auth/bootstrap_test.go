package auth

import (
	"context"
	"errors"
	"log/slog"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"

	"github.com/orch-dev/orch/server/apiserver"
	"github.com/orch-dev/orch/server/auth/bootstraptoken"
)

// secretMap is a SecretGetter over a map "ns/name" → Secret.
type secretMap map[string]*corev1.Secret

func (m secretMap) Get(_ context.Context, gvr schema.GroupVersionResource, ns, name string) (runtime.Object, error) {
	if s, ok := m[ns+"/"+name]; ok && gvr == secretsGVR {
		return s.DeepCopy(), nil
	}
	return nil, apierrors.NewNotFound(gvr.GroupResource(), name)
}

func (m secretMap) add(t *testing.T, info bootstraptoken.Info, edit func(*corev1.Secret)) {
	t.Helper()
	s, err := bootstraptoken.NewSecret(info)
	if err != nil {
		t.Fatal(err)
	}
	if edit != nil {
		edit(s)
	}
	m[s.Namespace+"/"+s.Name] = s
}

func TestBootstrapTokens(t *testing.T) {
	now := time.Date(2026, 11, 23, 15, 0, 0, 0, time.UTC)
	auth := []string{bootstraptoken.UsageAuthentication, bootstraptoken.UsageSigning}
	secrets := secretMap{}
	secrets.add(t, bootstraptoken.Info{ID: "good01", Secret: "0123456789abcdef", Usages: auth,
		Expiration: now.Add(time.Minute), ExtraGroups: []string{bootstraptoken.DefaultExtraGroup}}, nil)
	secrets.add(t, bootstraptoken.Info{ID: "never1", Secret: "0123456789abcdef", Usages: auth}, nil)
	secrets.add(t, bootstraptoken.Info{ID: "old001", Secret: "0123456789abcdef", Usages: auth, Expiration: now.Add(-time.Second)}, nil)
	secrets.add(t, bootstraptoken.Info{ID: "atnow1", Secret: "0123456789abcdef", Usages: auth, Expiration: now}, nil)
	secrets.add(t, bootstraptoken.Info{ID: "signer", Secret: "0123456789abcdef", Usages: []string{bootstraptoken.UsageSigning}}, nil)
	secrets.add(t, bootstraptoken.Info{ID: "badexp", Secret: "0123456789abcdef", Usages: auth}, func(s *corev1.Secret) {
		s.Data[bootstraptoken.ExpirationKey] = []byte("tomorrow")
	})
	secrets.add(t, bootstraptoken.Info{ID: "badgrp", Secret: "0123456789abcdef", Usages: auth}, func(s *corev1.Secret) {
		s.Data[bootstraptoken.ExtraGroupsKey] = []byte("system:masters")
	})
	secrets.add(t, bootstraptoken.Info{ID: "opaque", Secret: "0123456789abcdef", Usages: auth}, func(s *corev1.Secret) {
		s.Type = corev1.SecretTypeOpaque
	})
	secrets.add(t, bootstraptoken.Info{ID: "idmism", Secret: "0123456789abcdef", Usages: auth}, func(s *corev1.Secret) {
		s.Data[bootstraptoken.IDKey] = []byte("other1")
	})
	secrets.add(t, bootstraptoken.Info{ID: "gone01", Secret: "0123456789abcdef", Usages: auth}, func(s *corev1.Secret) {
		s.DeletionTimestamp = &metav1.Time{Time: now}
	})
	b := NewBootstrapTokens(secrets, func() time.Time { return now }, quietLogger())

	tests := []struct {
		name    string
		token   string
		want    *apiserver.UserInfo
		wantErr string
	}{
		{name: "good", token: "good01.0123456789abcdef", want: &apiserver.UserInfo{Name: "system:bootstrap:good01",
			Groups: []string{"system:bootstrappers", bootstraptoken.DefaultExtraGroup, "system:authenticated"}}},
		{name: "never expires", token: "never1.0123456789abcdef", want: &apiserver.UserInfo{Name: "system:bootstrap:never1",
			Groups: []string{"system:bootstrappers", "system:authenticated"}}},
		{name: "expired", token: "old001.0123456789abcdef", wantErr: "join token old001 expired at 2026-11-23T14:59:59Z"},
		{name: "expires now", token: "atnow1.0123456789abcdef", wantErr: "join token atnow1 expired at 2026-11-23T15:00:00Z"},
		{name: "unreadable expiration", token: "badexp.0123456789abcdef", wantErr: "join token badexp has expired"},
		{name: "expired, wrong secret: not told", token: "old001.0123456789abcdee"},
		{name: "wrong secret", token: "good01.0123456789abcdee"},
		{name: "unknown id", token: "nobody.0123456789abcdef"},
		{name: "not for authentication", token: "signer.0123456789abcdef"},
		{name: "invalid extra group", token: "badgrp.0123456789abcdef"},
		{name: "wrong secret type", token: "opaque.0123456789abcdef"},
		{name: "id differs from name", token: "idmism.0123456789abcdef"},
		{name: "being deleted", token: "gone01.0123456789abcdef"},
		{name: "not the bootstrap form", token: "good01:0123456789abcdef"},
		{name: "upper case", token: "GOOD01.0123456789ABCDEF"},
		{name: "empty", token: ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			u, ok, err := b.AuthenticateToken(context.Background(), tt.token)
			if tt.wantErr != "" {
				var expired *ExpiredTokenError
				if ok || !errors.As(err, &expired) || err.Error() != tt.wantErr && !strings.HasPrefix(err.Error(), tt.wantErr) {
					t.Fatalf("AuthenticateToken = %v, %v, %v; want error %q", u, ok, err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("AuthenticateToken error %v", err)
			}
			if (tt.want == nil) != !ok {
				t.Fatalf("AuthenticateToken = %v, %v; want %v", u, ok, tt.want)
			}
			if tt.want != nil && (u.Name != tt.want.Name || !slices.Equal(u.Groups, tt.want.Groups)) {
				t.Errorf("user = %+v, want %+v", u, *tt.want)
			}
		})
	}
}

// A store failure is an error, not "unknown token" (a retry may succeed).
func TestBootstrapTokensStoreError(t *testing.T) {
	b := NewBootstrapTokens(failingGetter{}, nil, quietLogger())
	if _, ok, err := b.AuthenticateToken(context.Background(), "abcdef.0123456789abcdef"); ok || err == nil {
		t.Fatalf("AuthenticateToken = %v, %v", ok, err)
	}
}

type failingGetter struct{}

func (failingGetter) Get(context.Context, schema.GroupVersionResource, string, string) (runtime.Object, error) {
	return nil, apierrors.NewServiceUnavailable("the server is starting up")
}

// The Authenticator sends bootstrap-form bearer tokens to its bootstrap
// authenticator, and says why an expired one was refused.
func TestAuthenticatorBootstrapTokens(t *testing.T) {
	now := time.Now()
	secrets := secretMap{}
	auth := []string{bootstraptoken.UsageAuthentication}
	secrets.add(t, bootstraptoken.Info{ID: "abcdef", Secret: "0123456789abcdef", Usages: auth}, nil)
	secrets.add(t, bootstraptoken.Info{ID: "old001", Secret: "0123456789abcdef", Usages: auth, Expiration: now.Add(-time.Hour)}, nil)
	authn := New(Options{BootstrapSecret: "server-secret"}).WithBootstrapTokens(NewBootstrapTokens(secrets, nil, quietLogger()))

	req := func(token string) (apiserver.UserInfo, bool, error) {
		r := httptest.NewRequest("GET", "/api", nil)
		r.Header.Set("Authorization", "Bearer "+token)
		return authn.AuthenticateRequest(r)
	}
	if u, ok, err := req("abcdef.0123456789abcdef"); !ok || err != nil || u.Name != "system:bootstrap:abcdef" ||
		!slices.Contains(u.Groups, BootstrapGroup) {
		t.Errorf("bootstrap token: %+v %v %v", u, ok, err)
	}
	if u, ok, err := req("server-secret"); !ok || err != nil || u.Name != BootstrapUser {
		t.Errorf("server token: %+v %v %v", u, ok, err)
	}
	var expired *ExpiredTokenError
	if _, ok, err := req("old001.0123456789abcdef"); ok || !errors.As(err, &expired) || expired.ID != "old001" {
		t.Errorf("expired token: %v %v", ok, err)
	}
	r := httptest.NewRequest("GET", "/api", nil)
	r.Header.Set("Authorization", "Bearer old001.0123456789abcdef")
	if _, ok := authn.Authenticate(r); ok {
		t.Error("Authenticate accepted an expired token")
	}
	// Without the bootstrap authenticator such tokens are unknown.
	if _, ok, err := New(Options{}).AuthenticateToken(context.Background(), "abcdef.0123456789abcdef"); ok || err != nil {
		t.Errorf("no bootstrap authenticator: %v %v", ok, err)
	}
}

func quietLogger() *slog.Logger { return slog.New(slog.DiscardHandler) }
