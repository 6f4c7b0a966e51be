package auth

import (
	"context"
	"errors"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"

	"github.com/orch-dev/orch/server/apiserver"
	"github.com/orch-dev/orch/server/serviceaccount"
)

// audienceReviewer is a TokenAuthenticator that can check a token for
// audiences other than the API server's (server/serviceaccount's).
type audienceReviewer interface {
	Review(ctx context.Context, token string, audiences []string) (apiserver.UserInfo, []string, error)
}

// ReviewToken answers a TokenReview (authentication.k8s.io/v1): whether
// spec.token authenticates, as whom, and for which of spec.audiences.
// It is the Ephemeral hook of the tokenreviews entry.
func (a *Authenticator) ReviewToken(ctx context.Context, obj runtime.Object) (runtime.Object, error) {
	in, ok := obj.(*authenticationv1.TokenReview)
	if !ok {
		return nil, apierrors.NewBadRequest("not a TokenReview")
	}
	if in.Spec.Token == "" {
		return nil, apierrors.NewBadRequest("token is required for TokenReview in authentication")
	}
	out := in.DeepCopy()
	out.SetGroupVersionKind(authenticationv1.SchemeGroupVersion.WithKind("TokenReview"))
	out.Status = authenticationv1.TokenReviewStatus{}

	var (
		u    apiserver.UserInfo
		auds []string
		err  error
		done bool
	)
	// Without audiences in the spec, the API server's are checked and
	// reported, as Kubernetes does.
	if r, isReviewer := a.tokens.(audienceReviewer); isReviewer {
		u, auds, err = r.Review(ctx, in.Spec.Token, in.Spec.Audiences)
		done = !errors.Is(err, serviceaccount.ErrNotServiceAccountToken)
	}
	if !done {
		var authenticated bool
		u, authenticated, err = a.AuthenticateToken(ctx, in.Spec.Token)
		if err == nil && !authenticated {
			return out, nil
		}
		auds = in.Spec.Audiences
	}
	if err != nil {
		out.Status.Error = err.Error()
		return out, nil
	}
	u.Groups = user(u.Name, u.Groups...).Groups
	out.Status.Authenticated = true
	out.Status.User = userInfo(u)
	out.Status.Audiences = auds
	return out, nil
}

// ReviewSelf answers a SelfSubjectReview (kubectl auth whoami): who the
// caller is. It is the Ephemeral hook of the selfsubjectreviews entry.
func ReviewSelf(ctx context.Context, obj runtime.Object) (runtime.Object, error) {
	in, ok := obj.(*authenticationv1.SelfSubjectReview)
	if !ok {
		return nil, apierrors.NewBadRequest("not a SelfSubjectReview")
	}
	u, ok := apiserver.UserFrom(ctx)
	if !ok {
		return nil, apierrors.NewInternalError(errors.New("no user information found in the request"))
	}
	out := &authenticationv1.SelfSubjectReview{ObjectMeta: *in.ObjectMeta.DeepCopy()}
	out.SetGroupVersionKind(authenticationv1.SchemeGroupVersion.WithKind("SelfSubjectReview"))
	out.CreationTimestamp = metav1.NewTime(time.Now())
	out.Status.UserInfo = userInfo(u)
	return out, nil
}

func userInfo(u apiserver.UserInfo) authenticationv1.UserInfo {
	out := authenticationv1.UserInfo{Username: u.Name, UID: u.UID, Groups: u.Groups}
	if len(u.Extra) > 0 {
		out.Extra = make(map[string]authenticationv1.ExtraValue, len(u.Extra))
		for k, v := range u.Extra {
			out.Extra[k] = v
		}
	}
	return out
}
