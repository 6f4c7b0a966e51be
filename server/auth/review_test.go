package auth

import (
	"context"
	"slices"
	"testing"

	authenticationv1 "k8s.io/api/authentication/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"

	"github.com/orch-dev/orch/server/apiserver"
	"github.com/orch-dev/orch/server/serviceaccount"
)

// audienceTokens is fakeTokens that also reviews for audiences: only
// "good.jwt.token" is valid, for audience "vault".
type audienceTokens struct{ fakeTokens }

func (audienceTokens) Review(_ context.Context, token string, audiences []string) (apiserver.UserInfo, []string, error) {
	if token != "good.jwt.token" {
		return apiserver.UserInfo{}, nil, serviceaccount.ErrNotServiceAccountToken
	}
	if len(audiences) == 0 {
		return apiserver.UserInfo{Name: "system:serviceaccount:ns:sa", UID: "sa-uid",
			Groups: []string{"system:serviceaccounts", "system:serviceaccounts:ns"}}, []string{"api"}, nil
	}
	if !slices.Contains(audiences, "vault") {
		return apiserver.UserInfo{}, nil, apierrors.NewBadRequest("token audiences [\"vault\"] is invalid")
	}
	return apiserver.UserInfo{Name: "system:serviceaccount:ns:sa", Groups: []string{"system:serviceaccounts"}}, []string{"vault"}, nil
}

func TestReviewToken(t *testing.T) {
	const adminToken = "fedcba9876543210fedcba9876543210"
	authn := New(Options{AdminToken: adminToken, Tokens: audienceTokens{}})
	tests := []struct {
		name      string
		spec      authenticationv1.TokenReviewSpec
		want      authenticationv1.TokenReviewStatus
		wantError bool
	}{
		{name: "service account", spec: authenticationv1.TokenReviewSpec{Token: "good.jwt.token"},
			want: authenticationv1.TokenReviewStatus{Authenticated: true, Audiences: []string{"api"}, User: authenticationv1.UserInfo{
				Username: "system:serviceaccount:ns:sa", UID: "sa-uid",
				Groups: []string{"system:serviceaccounts", "system:serviceaccounts:ns", "system:authenticated"}}}},
		{name: "for an audience", spec: authenticationv1.TokenReviewSpec{Token: "good.jwt.token", Audiences: []string{"x", "vault"}},
			want: authenticationv1.TokenReviewStatus{Authenticated: true, Audiences: []string{"vault"}, User: authenticationv1.UserInfo{
				Username: "system:serviceaccount:ns:sa", Groups: []string{"system:serviceaccounts", "system:authenticated"}}}},
		{name: "wrong audience", spec: authenticationv1.TokenReviewSpec{Token: "good.jwt.token", Audiences: []string{"x"}}, wantError: true},
		{name: "refused", spec: authenticationv1.TokenReviewSpec{Token: "expired.jwt.token"}, wantError: true},
		{name: "unknown", spec: authenticationv1.TokenReviewSpec{Token: "nope"}},
		{name: "admin token", spec: authenticationv1.TokenReviewSpec{Token: adminToken},
			want: authenticationv1.TokenReviewStatus{Authenticated: true, User: authenticationv1.UserInfo{
				Username: AdminUser, Groups: []string{MastersGroup, AuthenticatedGroup}}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			obj, err := authn.ReviewToken(context.Background(), &authenticationv1.TokenReview{Spec: tt.spec})
			if err != nil {
				t.Fatal(err)
			}
			got := obj.(*authenticationv1.TokenReview).Status
			if tt.wantError {
				if got.Authenticated || got.Error == "" {
					t.Errorf("status = %+v, want unauthenticated with an error", got)
				}
				return
			}
			if got.Authenticated != tt.want.Authenticated || got.User.Username != tt.want.User.Username || got.User.UID != tt.want.User.UID ||
				!slices.Equal(got.User.Groups, tt.want.User.Groups) || !slices.Equal(got.Audiences, tt.want.Audiences) || got.Error != "" {
				t.Errorf("status = %+v, want %+v", got, tt.want)
			}
		})
	}
	if _, err := authn.ReviewToken(context.Background(), &authenticationv1.TokenReview{}); !apierrors.IsBadRequest(err) {
		t.Errorf("empty token: err = %v, want BadRequest", err)
	}
}

func TestReviewSelf(t *testing.T) {
	u := apiserver.UserInfo{Name: "system:serviceaccount:ns:sa", UID: "uid", Groups: []string{"g"},
		Extra: map[string][]string{serviceaccount.ExtraPodName: {"web"}}}
	obj, err := ReviewSelf(apiserver.WithUser(context.Background(), u), &authenticationv1.SelfSubjectReview{})
	if err != nil {
		t.Fatal(err)
	}
	got := obj.(*authenticationv1.SelfSubjectReview)
	info := got.Status.UserInfo
	if info.Username != u.Name || info.UID != "uid" || !slices.Equal(info.Groups, []string{"g"}) ||
		!slices.Equal([]string(info.Extra[serviceaccount.ExtraPodName]), []string{"web"}) || got.CreationTimestamp.IsZero() ||
		got.Kind != "SelfSubjectReview" || got.APIVersion != "authentication.k8s.io/v1" {
		t.Errorf("review = %+v", got)
	}
	if _, err := ReviewSelf(context.Background(), &authenticationv1.SelfSubjectReview{}); err == nil {
		t.Error("a review without a user in the context succeeded")
	}
}
