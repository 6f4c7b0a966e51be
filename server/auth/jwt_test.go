package auth

import (
	"context"
	"errors"
	"net/http/httptest"
	"slices"
	"testing"

	"github.com/orch-dev/orch/server/apiserver"
)

// fakeTokens knows one good and one refused token.
type fakeTokens struct{}

func (fakeTokens) AuthenticateToken(_ context.Context, token string) (apiserver.UserInfo, bool, error) {
	switch token {
	case "good.jwt.token":
		return apiserver.UserInfo{Name: "system:serviceaccount:ns:sa", UID: "sa-uid",
			Groups: []string{"system:serviceaccounts", "system:serviceaccounts:ns"}}, true, nil
	case "expired.jwt.token":
		return apiserver.UserInfo{}, false, errors.New("service account token has expired")
	}
	return apiserver.UserInfo{}, false, nil
}

func TestBearerTokenAuthenticator(t *testing.T) {
	const adminToken = "fedcba9876543210fedcba9876543210"
	authn := New(Options{AdminToken: adminToken, Tokens: fakeTokens{}})
	tests := []struct {
		header string
		want   *apiserver.UserInfo
	}{
		{"Bearer good.jwt.token", &apiserver.UserInfo{Name: "system:serviceaccount:ns:sa", UID: "sa-uid",
			Groups: []string{"system:serviceaccounts", "system:serviceaccounts:ns", "system:authenticated"}}},
		{"bearer  good.jwt.token ", &apiserver.UserInfo{Name: "system:serviceaccount:ns:sa", UID: "sa-uid",
			Groups: []string{"system:serviceaccounts", "system:serviceaccounts:ns", "system:authenticated"}}},
		{"Bearer " + adminToken, &apiserver.UserInfo{Name: AdminUser, Groups: []string{MastersGroup, AuthenticatedGroup}}},
		{"Bearer expired.jwt.token", nil},
		{"Bearer unknown", nil},
		{"Bearer ", nil},
		{"Basic good.jwt.token", nil},
	}
	for _, tt := range tests {
		t.Run(tt.header, func(t *testing.T) {
			r := httptest.NewRequest("GET", "https://orch/api", nil)
			r.Header.Set("Authorization", tt.header)
			u, ok := authn.Authenticate(r)
			if tt.want == nil {
				if ok {
					t.Errorf("authenticated as %+v, want refused", u)
				}
				return
			}
			if !ok || u.Name != tt.want.Name || u.UID != tt.want.UID || !slices.Equal(u.Groups, tt.want.Groups) {
				t.Errorf("got %+v ok=%v, want %+v", u, ok, *tt.want)
			}
		})
	}
	if _, _, err := authn.AuthenticateToken(context.Background(), "expired.jwt.token"); err == nil {
		t.Error("AuthenticateToken hid why a token was refused")
	}
	// Without a TokenAuthenticator, JWTs are simply unknown.
	if _, ok, err := New(Options{}).AuthenticateToken(context.Background(), "good.jwt.token"); ok || err != nil {
		t.Errorf("no token authenticator: ok=%v err=%v", ok, err)
	}
}
