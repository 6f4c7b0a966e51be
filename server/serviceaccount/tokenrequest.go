package serviceaccount

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/uuid"
	"k8s.io/apimachinery/pkg/util/validation/field"

	"github.com/orch-dev/orch/server/apiserver"
)

// Lifetimes of requested tokens, as Kubernetes has them.
const (
	// DefaultExpirationSeconds is a TokenRequest's default lifetime.
	DefaultExpirationSeconds = 3600
	// MinExpirationSeconds and MaxExpirationSeconds bound what may be asked.
	MinExpirationSeconds = 600
	MaxExpirationSeconds = 1 << 32
	// KubeletExpirationSeconds is the lifetime the service account
	// admission plugin asks for in its projected volume. Pod-bound tokens
	// asked with exactly this lifetime for the API server's audiences get
	// a year instead (with "warnafter" at the hour), so that pods whose
	// client libraries do not reload tokens keep working: Kubernetes'
	// --service-account-extend-token-expiration, on by default.
	KubeletExpirationSeconds = 3607
	extendedExpiration       = 365 * 24 * time.Hour
)

var tokenRequestKind = authenticationv1.SchemeGroupVersion.WithKind("TokenRequest")

// TokenRequests answers the serviceaccounts/token subresource.
type TokenRequests struct {
	signer    *Signer
	objects   Objects
	issuer    string
	audiences []string
	now       func() time.Time
}

// NewTokenRequests issues tokens with signer for the objects found in
// objects. Issuer, APIAudiences and Now default as for NewAuthenticator.
func NewTokenRequests(signer *Signer, objects Objects, opts AuthenticatorOptions) *TokenRequests {
	opts = opts.withDefaults()
	return &TokenRequests{signer: signer, objects: objects, issuer: opts.Issuer, audiences: opts.APIAudiences, now: opts.Now}
}

// ValidateTokenRequest checks a TokenRequest's spec as Kubernetes does.
func ValidateTokenRequest(tr *authenticationv1.TokenRequest) field.ErrorList {
	var errs field.ErrorList
	p := field.NewPath("spec", "expirationSeconds")
	if e := tr.Spec.ExpirationSeconds; e != nil {
		if *e < MinExpirationSeconds {
			errs = append(errs, field.Invalid(p, *e, "may not specify a duration less than 10 minutes"))
		}
		if *e > MaxExpirationSeconds {
			errs = append(errs, field.Invalid(p, *e, "may not specify a duration larger than 2^32 seconds"))
		}
	}
	return errs
}

// Create issues a token for the service account namespace/name as req
// asks and returns req completed with the token (the response body of
// POST .../serviceaccounts/NAME/token).
func (t *TokenRequests) Create(ctx context.Context, namespace, name string, req *authenticationv1.TokenRequest) (*authenticationv1.TokenRequest, error) {
	out := req.DeepCopy()
	gk := tokenRequestKind.GroupKind()
	if out.Name != "" && out.Name != name {
		return nil, apierrors.NewInvalid(gk, name, field.ErrorList{field.Invalid(field.NewPath("metadata", "name"), out.Name, "must match the service account name if specified")})
	}
	if out.Namespace != "" && out.Namespace != namespace {
		return nil, apierrors.NewInvalid(gk, name, field.ErrorList{field.Invalid(field.NewPath("metadata", "namespace"), out.Namespace, "must match the service account namespace if specified")})
	}
	if out.Spec.ExpirationSeconds == nil {
		exp := int64(DefaultExpirationSeconds)
		out.Spec.ExpirationSeconds = &exp
	}
	if errs := ValidateTokenRequest(out); len(errs) > 0 {
		return nil, apierrors.NewInvalid(gk, name, errs)
	}
	if err := t.nodeRestriction(ctx, namespace, name, out.Spec.BoundObjectRef); err != nil {
		return nil, err
	}
	sa, err := t.objects.ServiceAccount(ctx, namespace, name)
	if err != nil {
		return nil, err
	}
	if len(out.Spec.Audiences) == 0 {
		out.Spec.Audiences = slices.Clone(t.audiences)
	}
	out.Name, out.Namespace = sa.Name, sa.Namespace
	// The time is taken before the token is made, so the expiry reported
	// is never later than the token's.
	now := t.now()
	out.CreationTimestamp = metav1.NewTime(now)
	out.Status = authenticationv1.TokenRequestStatus{}

	lifetime := time.Duration(*out.Spec.ExpirationSeconds) * time.Second
	c := t.claims(sa, out.Spec.Audiences, now, lifetime)
	if ref := out.Spec.BoundObjectRef; ref != nil {
		bound, err := t.bind(ctx, sa, ref)
		if err != nil {
			return nil, err
		}
		switch o := bound.(type) {
		case *corev1.Pod:
			c.Kubernetes.Pod = &Ref{Name: o.Name, UID: string(o.UID)}
			// The token names the node its pod runs on, so that the node
			// can be told from it (a pod not scheduled yet has none).
			if o.Spec.NodeName != "" {
				if node, err := t.objects.Node(ctx, o.Spec.NodeName); err == nil {
					c.Kubernetes.Node = &Ref{Name: node.Name, UID: string(node.UID)}
				}
			}
			if *out.Spec.ExpirationSeconds == KubeletExpirationSeconds && t.forAPIServer(out.Spec.Audiences) {
				warnAfter := c.Expiry
				c.Kubernetes.WarnAfter = &warnAfter
				c.Expiry = now.Add(extendedExpiration).Unix()
			}
		case *corev1.Node:
			c.Kubernetes.Node = &Ref{Name: o.Name, UID: string(o.UID)}
		case *corev1.Secret:
			c.Kubernetes.Secret = &Ref{Name: o.Name, UID: string(o.UID)}
		}
	}
	token, err := t.signer.Sign(c)
	if err != nil {
		return nil, apierrors.NewInternalError(err)
	}
	out.Status = authenticationv1.TokenRequestStatus{Token: token, ExpirationTimestamp: metav1.NewTime(now.Add(lifetime))}
	out.SetGroupVersionKind(tokenRequestKind)
	return out, nil
}

func (t *TokenRequests) claims(sa *corev1.ServiceAccount, audiences []string, now time.Time, lifetime time.Duration) *Claims {
	return &Claims{
		Issuer:    t.issuer,
		Subject:   UserName(sa.Namespace, sa.Name),
		Audience:  slices.Clone(audiences),
		IssuedAt:  now.Unix(),
		NotBefore: now.Unix(),
		Expiry:    now.Add(lifetime).Unix(),
		ID:        string(uuid.NewUUID()),
		Kubernetes: &KubernetesClaims{
			Namespace:      sa.Namespace,
			ServiceAccount: Ref{Name: sa.Name, UID: string(sa.UID)},
		},
	}
}

// forAPIServer reports whether audiences are all API server audiences.
func (t *TokenRequests) forAPIServer(audiences []string) bool {
	for _, a := range audiences {
		if !slices.Contains(t.audiences, a) {
			return false
		}
	}
	return true
}

// bind looks up the object a token is to be bound to.
func (t *TokenRequests) bind(ctx context.Context, sa *corev1.ServiceAccount, ref *authenticationv1.BoundObjectReference) (metav1.Object, error) {
	gvk := schema.FromAPIVersionAndKind(ref.APIVersion, ref.Kind)
	var obj metav1.Object
	switch {
	case gvk.Group == "" && gvk.Kind == "Pod":
		pod, err := t.objects.Pod(ctx, sa.Namespace, ref.Name)
		if err != nil {
			return nil, err
		}
		if pod.Spec.ServiceAccountName != sa.Name {
			return nil, apierrors.NewBadRequest(fmt.Sprintf("cannot bind token for serviceaccount %q to pod running with different serviceaccount name.", sa.Name))
		}
		obj = pod
	case gvk.Group == "" && gvk.Kind == "Node":
		node, err := t.objects.Node(ctx, ref.Name)
		if err != nil {
			return nil, err
		}
		obj = node
	case gvk.Group == "" && gvk.Kind == "Secret":
		secret, err := t.objects.Secret(ctx, sa.Namespace, ref.Name)
		if err != nil {
			return nil, err
		}
		obj = secret
	default:
		return nil, apierrors.NewBadRequest(fmt.Sprintf("cannot bind token to object of type %s", gvk.String()))
	}
	if ref.UID != "" && obj.GetUID() != ref.UID {
		return nil, apierrors.NewConflict(schema.GroupResource{Group: gvk.Group, Resource: gvk.Kind}, ref.Name,
			fmt.Errorf("the UID in the bound object reference (%s) does not match the UID in record. The object might have been deleted and then recreated", ref.UID))
	}
	return obj, nil
}

// nodeRestriction applies Kubernetes' NodeRestriction rule to tokens a
// node asks for: only for a pod scheduled on that node, named with its uid,
// so that a node cannot mint free-standing credentials of the accounts its
// pods use.
func (t *TokenRequests) nodeRestriction(ctx context.Context, namespace, name string, ref *authenticationv1.BoundObjectReference) error {
	u, ok := apiserver.UserFrom(ctx)
	if !ok || !slices.Contains(u.Groups, nodesGroup) || !strings.HasPrefix(u.Name, nodeUserPrefix) {
		return nil
	}
	node := strings.TrimPrefix(u.Name, nodeUserPrefix)
	forbidden := func(err error) error {
		return apierrors.NewForbidden(schema.GroupResource{Resource: "serviceaccounts"}, name, err)
	}
	if ref == nil || ref.APIVersion != "v1" || ref.Kind != "Pod" || ref.Name == "" {
		return forbidden(errors.New("node requested token not bound to a pod"))
	}
	if ref.UID == "" {
		return forbidden(errors.New("node requested token with a pod binding without a uid"))
	}
	pod, err := t.objects.Pod(ctx, namespace, ref.Name)
	if apierrors.IsNotFound(err) {
		return err
	}
	if err != nil {
		return forbidden(err)
	}
	if pod.UID != ref.UID {
		return forbidden(fmt.Errorf("the UID in the bound object reference (%s) does not match the UID in record. The object might have been deleted and then recreated", ref.UID))
	}
	if pod.Spec.NodeName != node {
		return forbidden(errors.New("node requested token bound to a pod scheduled on a different node"))
	}
	return nil
}

// The identity of nodes (their client certificates).
const (
	nodesGroup     = "system:nodes"
	nodeUserPrefix = "system:node:"
)

// LegacyToken signs the never-expiring token the token controller puts in
// a kubernetes.io/service-account-token secret of sa.
func LegacyToken(signer *Signer, sa *corev1.ServiceAccount, secret *corev1.Secret) (string, error) {
	return signer.Sign(&Claims{
		Issuer:                   LegacyIssuer,
		Subject:                  UserName(sa.Namespace, sa.Name),
		LegacyNamespace:          sa.Namespace,
		LegacySecretName:         secret.Name,
		LegacyServiceAccountName: sa.Name,
		LegacyServiceAccountUID:  string(sa.UID),
	})
}
