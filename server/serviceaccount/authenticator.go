package serviceaccount

import (
	"context"
	"crypto/subtle"
	"errors"
	"fmt"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"

	"github.com/orch-dev/orch/server/apiserver"
)

// Objects looks up the objects tokens name. An error for which
// apierrors.IsNotFound holds means the object does not exist.
type Objects interface {
	ServiceAccount(ctx context.Context, namespace, name string) (*corev1.ServiceAccount, error)
	Pod(ctx context.Context, namespace, name string) (*corev1.Pod, error)
	Secret(ctx context.Context, namespace, name string) (*corev1.Secret, error)
	Node(ctx context.Context, name string) (*corev1.Node, error)
}

// Getter reads one object; orch's in-process API (apiserver.Local) is one.
type Getter interface {
	Get(ctx context.Context, gvr schema.GroupVersionResource, namespace, name string) (runtime.Object, error)
}

// ObjectsFrom reads objects through g. Reading the store rather than a
// cache means a token for a pod created a moment ago works at once.
func ObjectsFrom(g Getter) Objects { return getterObjects{g} }

type getterObjects struct{ g Getter }

func (o getterObjects) ServiceAccount(ctx context.Context, ns, name string) (*corev1.ServiceAccount, error) {
	return getTyped[*corev1.ServiceAccount](ctx, o.g, corev1.SchemeGroupVersion.WithResource("serviceaccounts"), ns, name)
}

func (o getterObjects) Pod(ctx context.Context, ns, name string) (*corev1.Pod, error) {
	return getTyped[*corev1.Pod](ctx, o.g, corev1.SchemeGroupVersion.WithResource("pods"), ns, name)
}

func (o getterObjects) Secret(ctx context.Context, ns, name string) (*corev1.Secret, error) {
	return getTyped[*corev1.Secret](ctx, o.g, corev1.SchemeGroupVersion.WithResource("secrets"), ns, name)
}

func (o getterObjects) Node(ctx context.Context, name string) (*corev1.Node, error) {
	return getTyped[*corev1.Node](ctx, o.g, corev1.SchemeGroupVersion.WithResource("nodes"), "", name)
}

func getTyped[T runtime.Object](ctx context.Context, g Getter, gvr schema.GroupVersionResource, ns, name string) (T, error) {
	var zero T
	obj, err := g.Get(ctx, gvr, ns, name)
	if err != nil {
		return zero, err
	}
	t, ok := obj.(T)
	if !ok {
		return zero, fmt.Errorf("%s %s/%s: unexpected type %T", gvr.Resource, ns, name, obj)
	}
	return t, nil
}

// Keys of the user's extra information, as Kubernetes sets them.
const (
	ExtraPodName      = "authentication.kubernetes.io/pod-name"
	ExtraPodUID       = "authentication.kubernetes.io/pod-uid"
	ExtraNodeName     = "authentication.kubernetes.io/node-name"
	ExtraNodeUID      = "authentication.kubernetes.io/node-uid"
	ExtraCredentialID = "authentication.kubernetes.io/credential-id"
)

// invalidIfDeletedFor: a token bound to an object being deleted keeps
// working this long after the deletion began (a pod's containers are still
// shutting down), as in Kubernetes.
const invalidIfDeletedFor = 60 * time.Second

// errInvalidated is Kubernetes' message for a token whose service account
// or bound object is gone.
var errInvalidated = errors.New("service account token has been invalidated")

// AuthenticatorOptions configure an Authenticator.
type AuthenticatorOptions struct {
	// Issuer of bound tokens; default DefaultIssuer.
	Issuer string
	// APIAudiences are the audiences a token must have one of to
	// authenticate to the API server; default {Issuer}.
	APIAudiences []string
	// Now is the clock; default time.Now.
	Now func() time.Time
}

// Authenticator turns service account tokens into users. It is safe for
// concurrent use.
type Authenticator struct {
	verifier  *Verifier
	objects   Objects
	issuer    string
	audiences []string
	now       func() time.Time
}

// NewAuthenticator checks tokens with v and looks their objects up in objects.
func NewAuthenticator(v *Verifier, objects Objects, opts AuthenticatorOptions) *Authenticator {
	opts = opts.withDefaults()
	return &Authenticator{verifier: v, objects: objects, issuer: opts.Issuer, audiences: opts.APIAudiences, now: opts.Now}
}

func (opts AuthenticatorOptions) withDefaults() AuthenticatorOptions {
	if opts.Issuer == "" {
		opts.Issuer = DefaultIssuer
	}
	if len(opts.APIAudiences) == 0 {
		opts.APIAudiences = []string{opts.Issuer}
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	return opts
}

// APIAudiences are the audiences the API server accepts.
func (a *Authenticator) APIAudiences() []string { return a.audiences }

// AuthenticateToken authenticates a bearer token presented to the API
// server. ok=false with a nil error means the token is not one of ours
// (another authenticator may know it); an error means it is ours and is
// refused.
func (a *Authenticator) AuthenticateToken(ctx context.Context, token string) (apiserver.UserInfo, bool, error) {
	u, _, err := a.Review(ctx, token, nil)
	if errors.Is(err, ErrNotServiceAccountToken) {
		return apiserver.UserInfo{}, false, nil
	}
	if err != nil {
		return apiserver.UserInfo{}, false, err
	}
	return u, true, nil
}

// Review authenticates token for the audiences asked for (nil: the API
// server's), as a TokenReview does. It returns the user and the audiences
// the token is valid for, or an error saying why it is refused;
// ErrNotServiceAccountToken (wrapped) means it is not a token of this
// cluster's key at all.
func (a *Authenticator) Review(ctx context.Context, token string, audiences []string) (apiserver.UserInfo, []string, error) {
	c, err := a.verifier.Parse(token)
	if err != nil {
		return apiserver.UserInfo{}, nil, err
	}
	switch c.Issuer {
	case LegacyIssuer:
		u, err := a.legacy(ctx, token, c)
		// Legacy tokens carry no audience: they are good for every one
		// asked for, as in Kubernetes.
		return u, audiences, err
	case a.issuer:
		if len(audiences) == 0 {
			audiences = a.audiences
		}
		auds := intersect(audiences, c.Audience)
		if len(auds) == 0 {
			return apiserver.UserInfo{}, nil, fmt.Errorf("token audiences %q is invalid for the target audiences %q", []string(c.Audience), audiences)
		}
		u, err := a.bound(ctx, c)
		return u, auds, err
	}
	return apiserver.UserInfo{}, nil, fmt.Errorf("%w: issuer %q", ErrNotServiceAccountToken, c.Issuer)
}

func (a *Authenticator) bound(ctx context.Context, c *Claims) (apiserver.UserInfo, error) {
	now := a.now()
	if err := c.checkTimes(now); err != nil {
		return apiserver.UserInfo{}, err
	}
	k := c.Kubernetes
	if k == nil || k.Namespace == "" || k.ServiceAccount.Name == "" || k.ServiceAccount.UID == "" {
		return apiserver.UserInfo{}, errors.New("service account token claims are incomplete")
	}
	if c.Subject != UserName(k.Namespace, k.ServiceAccount.Name) {
		return apiserver.UserInfo{}, errors.New("service account token subject does not match its service account claim")
	}
	deletedBefore := now.Add(-invalidIfDeletedFor)
	sa, err := a.objects.ServiceAccount(ctx, k.Namespace, k.ServiceAccount.Name)
	if err := stillValid(sa, err, k.ServiceAccount.UID, "service account", deletedBefore); err != nil {
		return apiserver.UserInfo{}, err
	}
	u := apiserver.UserInfo{Name: c.Subject, UID: string(sa.UID), Groups: Groups(k.Namespace), Extra: map[string][]string{}}
	if k.Pod != nil {
		pod, err := a.objects.Pod(ctx, k.Namespace, k.Pod.Name)
		if err := stillValid(pod, err, k.Pod.UID, "pod", deletedBefore); err != nil {
			return apiserver.UserInfo{}, err
		}
		u.Extra[ExtraPodName] = []string{k.Pod.Name}
		u.Extra[ExtraPodUID] = []string{k.Pod.UID}
	}
	if k.Secret != nil {
		secret, err := a.objects.Secret(ctx, k.Namespace, k.Secret.Name)
		if err := stillValid(secret, err, k.Secret.UID, "secret", deletedBefore); err != nil {
			return apiserver.UserInfo{}, err
		}
	}
	if k.Node != nil {
		// A node-bound token dies with its node; a pod-bound one only
		// names the node its pod was on (Kubernetes checks the pod).
		if k.Pod == nil {
			node, err := a.objects.Node(ctx, k.Node.Name)
			if err := stillValid(node, err, k.Node.UID, "node", deletedBefore); err != nil {
				return apiserver.UserInfo{}, err
			}
		}
		u.Extra[ExtraNodeName] = []string{k.Node.Name}
		u.Extra[ExtraNodeUID] = []string{k.Node.UID}
	}
	if c.ID != "" {
		u.Extra[ExtraCredentialID] = []string{"JTI=" + c.ID}
	}
	return u, nil
}

// stillValid checks a looked-up object against the uid a token names.
func stillValid(obj metav1.Object, err error, uid, what string, deletedBefore time.Time) error {
	if err != nil {
		if apierrors.IsNotFound(err) {
			return errInvalidated
		}
		return fmt.Errorf("look up the token's %s: %w", what, err)
	}
	if string(obj.GetUID()) != uid {
		return fmt.Errorf("%s UID (%s) does not match claim (%s)", what, obj.GetUID(), uid)
	}
	if dt := obj.GetDeletionTimestamp(); dt != nil && dt.Time.Before(deletedBefore) {
		return errInvalidated
	}
	return nil
}

// legacy checks a secret-based token: its service account and secret
// must exist and the secret must still hold this very token.
func (a *Authenticator) legacy(ctx context.Context, token string, c *Claims) (apiserver.UserInfo, error) {
	ns, name, secretName := c.LegacyNamespace, c.LegacyServiceAccountName, c.LegacySecretName
	if ns == "" || name == "" || secretName == "" || c.LegacyServiceAccountUID == "" {
		return apiserver.UserInfo{}, errors.New("service account token claims are incomplete")
	}
	if c.Subject != UserName(ns, name) {
		return apiserver.UserInfo{}, errors.New("service account token subject does not match its service account claim")
	}
	secret, err := a.objects.Secret(ctx, ns, secretName)
	if err != nil {
		if apierrors.IsNotFound(err) {
			return apiserver.UserInfo{}, errors.New("token has been invalidated")
		}
		return apiserver.UserInfo{}, fmt.Errorf("look up the token's secret: %w", err)
	}
	if secret.DeletionTimestamp != nil || subtle.ConstantTimeCompare(secret.Data[corev1.ServiceAccountTokenKey], []byte(token)) != 1 {
		return apiserver.UserInfo{}, errors.New("token has been invalidated")
	}
	sa, err := a.objects.ServiceAccount(ctx, ns, name)
	if err != nil {
		if apierrors.IsNotFound(err) {
			return apiserver.UserInfo{}, errInvalidated
		}
		return apiserver.UserInfo{}, fmt.Errorf("look up the token's service account: %w", err)
	}
	if string(sa.UID) != c.LegacyServiceAccountUID {
		return apiserver.UserInfo{}, fmt.Errorf("service account UID (%s) does not match claim (%s)", sa.UID, c.LegacyServiceAccountUID)
	}
	if sa.DeletionTimestamp != nil {
		return apiserver.UserInfo{}, errInvalidated
	}
	return apiserver.UserInfo{Name: c.Subject, UID: string(sa.UID), Groups: Groups(ns)}, nil
}
