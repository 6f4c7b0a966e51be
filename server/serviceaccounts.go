package server

import (
	"context"
	"log/slog"
	"path/filepath"

	"golang.org/x/sync/errgroup"
	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"

	"github.com/orch-dev/orch/server/admission"
	"github.com/orch-dev/orch/server/apiserver"
	"github.com/orch-dev/orch/server/auth"
	"github.com/orch-dev/orch/server/controllers/informer"
	sacontrollers "github.com/orch-dev/orch/server/controllers/serviceaccount"
	"github.com/orch-dev/orch/server/registry"
	"github.com/orch-dev/orch/server/serviceaccount"
)

var (
	serviceAccountsGVR    = corev1.SchemeGroupVersion.WithResource("serviceaccounts")
	tokenReviewsGVR       = authenticationv1.SchemeGroupVersion.WithResource("tokenreviews")
	selfSubjectReviewsGVR = authenticationv1.SchemeGroupVersion.WithResource("selfsubjectreviews")
)

// serviceAccounts wires service account tokens into the server: the
// signing key (server/tls/service.key, made on first start), the bearer
// token authenticator, the serviceaccounts/token subresource, TokenReview
// and SelfSubjectReview, the pod admission plugin and the token and root
// CA controllers.
type serviceAccounts struct {
	signer   *serviceaccount.Signer
	authn    *serviceaccount.Authenticator
	requests *serviceaccount.TokenRequests
	api      *lateAPI
	caPEM    []byte
}

func newServiceAccounts(tlsDir string, caPEM []byte) (*serviceAccounts, error) {
	key, err := auth.EnsureServiceAccountKey(filepath.Join(tlsDir, "service.key"))
	if err != nil {
		return nil, err
	}
	signer, err := serviceaccount.NewSigner(key)
	if err != nil {
		return nil, err
	}
	verifier, err := serviceaccount.NewVerifier(signer.PublicKey())
	if err != nil {
		return nil, err
	}
	api := &lateAPI{}
	objects := serviceaccount.ObjectsFrom(api)
	return &serviceAccounts{
		signer:   signer,
		authn:    serviceaccount.NewAuthenticator(verifier, objects, serviceaccount.AuthenticatorOptions{}),
		requests: serviceaccount.NewTokenRequests(signer, objects, serviceaccount.AuthenticatorOptions{}),
		api:      api,
		caPEM:    caPEM,
	}, nil
}

// lateAPI reads through the in-process API once the API server exists: the
// token authenticator is built before it (the API server needs the
// authenticator), and attach sets it before any request is served.
type lateAPI struct{ local *apiserver.Local }

func (l *lateAPI) Get(ctx context.Context, gvr schema.GroupVersionResource, ns, name string) (runtime.Object, error) {
	if l.local == nil {
		return nil, apierrors.NewServiceUnavailable("the server is starting up")
	}
	return l.local.Get(ctx, gvr, ns, name)
}

// attach hooks the token pieces into the table's entries and installs the
// ServiceAccount admission plugin on pods.
func (s *serviceAccounts) attach(api *apiserver.Server, table *registry.Table, authn *auth.Authenticator, factory *informer.Factory) {
	local := api.Local()
	s.api.local = local
	plugin := admission.NewServiceAccount(
		informer.NewLister[*corev1.ServiceAccount](factory.For(serviceAccountsGVR)),
		serviceaccount.ObjectsFrom(local).ServiceAccount)
	for _, res := range table.Resources() {
		switch res.GroupVersionResource() {
		case serviceAccountsGVR:
			res.Actions = map[string]registry.Action{"token": {
				GroupVersionKind: authenticationv1.SchemeGroupVersion.WithKind("TokenRequest"),
				New:              func() runtime.Object { return &authenticationv1.TokenRequest{} },
				Create: func(ctx context.Context, ns, name string, obj runtime.Object) (runtime.Object, error) {
					return s.requests.Create(ctx, ns, name, obj.(*authenticationv1.TokenRequest))
				},
			}}
		case tokenReviewsGVR:
			res.Ephemeral = authn.ReviewToken
		case selfSubjectReviewsGVR:
			res.Ephemeral = auth.ReviewSelf
		}
		plugin.Attach(res)
	}
}

// run starts the token controller and the root CA publisher once the API
// server is ready, until ctx ends.
func (s *serviceAccounts) run(ctx context.Context, api *apiserver.Server, factory *informer.Factory, log *slog.Logger) error {
	select {
	case <-api.Ready():
	case <-ctx.Done():
		return nil
	}
	local := api.Local()
	tokens := sacontrollers.NewTokens(local, factory,
		func(sa *corev1.ServiceAccount, secret *corev1.Secret) (string, error) {
			return serviceaccount.LegacyToken(s.signer, sa, secret)
		},
		sacontrollers.TokensOptions{RootCA: s.caPEM, Logger: log.With("component", "tokens-controller")})
	publisher := sacontrollers.NewRootCAPublisher(local, factory, s.caPEM,
		sacontrollers.RootCAOptions{Logger: log.With("component", "root-ca-cert-publisher")})
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error { return tokens.Run(gctx) })
	g.Go(func() error { return publisher.Run(gctx) })
	return g.Wait()
}
