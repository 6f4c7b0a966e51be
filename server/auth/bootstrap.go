package auth

import (
	"context"
	"crypto/subtle"
	"errors"
	"fmt"
	"log/slog"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"

	"github.com/orch-dev/orch/internal/jointoken"
	"github.com/orch-dev/orch/server/apiserver"
	"github.com/orch-dev/orch/server/auth/bootstraptoken"
)

// SecretGetter reads one object from the in-process API.
type SecretGetter interface {
	Get(ctx context.Context, gvr schema.GroupVersionResource, ns, name string) (runtime.Object, error)
}

// ExpiredTokenError refuses a bootstrap token whose id and secret are
// right but whose expiration has passed. Only a caller that knows the
// secret learns this; everyone else gets a plain refusal.
type ExpiredTokenError struct {
	ID         string
	Expiration time.Time
}

func (e *ExpiredTokenError) Error() string {
	if e.Expiration.IsZero() {
		return fmt.Sprintf("join token %s has expired (its %s cannot be read)", e.ID, bootstraptoken.ExpirationKey)
	}
	return fmt.Sprintf("join token %s expired at %s", e.ID, e.Expiration.UTC().Format(time.RFC3339))
}

// BootstrapTokens authenticates Kubernetes bootstrap tokens,
// "<id>.<secret>", against their Secrets kube-system/bootstrap-token-<id>
// (plugin/pkg/auth/authenticator/token/bootstrap upstream): the caller
// becomes system:bootstrap:<id> in group system:bootstrappers and the
// token's extra groups. It is safe for concurrent use.
type BootstrapTokens struct {
	secrets SecretGetter
	now     func() time.Time
	log     *slog.Logger
}

// NewBootstrapTokens reads token Secrets through secrets; now is the clock
// (nil means time.Now) and log gets the reasons tokens are refused, which
// the caller is not told.
func NewBootstrapTokens(secrets SecretGetter, now func() time.Time, log *slog.Logger) *BootstrapTokens {
	if now == nil {
		now = time.Now
	}
	if log == nil {
		log = slog.Default()
	}
	return &BootstrapTokens{secrets: secrets, now: now, log: log.With("component", "bootstrap-token-authenticator")}
}

var secretsGVR = corev1.SchemeGroupVersion.WithResource("secrets")

// AuthenticateToken implements TokenAuthenticator. A token that is not of
// the bootstrap form, names no Secret, or does not match its Secret is
// unknown (ok false, no error), as upstream; an expired one whose secret
// matches is an *ExpiredTokenError.
func (b *BootstrapTokens) AuthenticateToken(ctx context.Context, token string) (apiserver.UserInfo, bool, error) {
	id, secret, ok := jointoken.ParseBootstrap(token)
	if !ok {
		return apiserver.UserInfo{}, false, nil
	}
	name := bootstraptoken.SecretName(id)
	obj, err := b.secrets.Get(ctx, secretsGVR, bootstraptoken.Namespace, name)
	switch {
	case apierrors.IsNotFound(err):
		return apiserver.UserInfo{}, false, nil
	case err != nil:
		return apiserver.UserInfo{}, false, fmt.Errorf("read bootstrap token %s: %w", id, err)
	}
	s, ok := obj.(*corev1.Secret)
	if !ok {
		return apiserver.UserInfo{}, false, fmt.Errorf("bootstrap token %s: stored object is a %T", id, obj)
	}
	refuse := func(why string) (apiserver.UserInfo, bool, error) {
		// Debug, as upstream logs at V(3): anyone can send tokens.
		b.log.Debug("bootstrap token refused", "secret", bootstraptoken.Namespace+"/"+name, "reason", why)
		return apiserver.UserInfo{}, false, nil
	}
	if s.DeletionTimestamp != nil {
		return refuse("is deleted and awaiting removal")
	}
	info, err := bootstraptoken.FromSecret(s)
	var expired bool
	switch {
	case errors.Is(err, bootstraptoken.ErrNotBootstrapToken):
		return refuse("has type " + string(s.Type) + ", not " + string(corev1.SecretTypeBootstrapToken))
	case err != nil && info.ID == "":
		return refuse(err.Error())
	case err != nil:
		// An unreadable expiration counts as expired, as upstream.
		b.log.Debug("bootstrap token treated as expired", "err", err)
		expired = true
	}
	if subtle.ConstantTimeCompare([]byte(info.Secret), []byte(secret)) != 1 {
		return refuse("has another " + bootstraptoken.SecretKey)
	}
	// From here on the caller knows the secret: it may learn why it is
	// refused.
	if expired || info.Expired(b.now()) {
		return apiserver.UserInfo{}, false, &ExpiredTokenError{ID: id, Expiration: info.Expiration}
	}
	if !info.HasUsage(bootstraptoken.UsageAuthentication) {
		return refuse("is not marked " + bootstraptoken.UsagePrefix + bootstraptoken.UsageAuthentication + "=true")
	}
	groups, err := info.Groups()
	if err != nil {
		return refuse(bootstraptoken.ExtraGroupsKey + ": " + err.Error())
	}
	return user(bootstraptoken.UserPrefix+id, groups...), true, nil
}
