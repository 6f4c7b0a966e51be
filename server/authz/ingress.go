package authz

import (
	"context"
	"fmt"

	networkingv1 "k8s.io/api/networking/v1"
	"k8s.io/apimachinery/pkg/labels"

	"github.com/orch-dev/orch/internal/jointoken"
	"github.com/orch-dev/orch/server/apiserver"
)

// IngressLister reads Ingresses from a cache;
// informer.Lister[*networkingv1.Ingress] is one.
type IngressLister interface {
	List(namespace string, sel labels.Selector) []*networkingv1.Ingress
}

// IngressTLS lets the nodes' ingress proxies, acting as
// jointoken.IngressUser, get the Secrets that an Ingress of the same
// namespace names in spec.tls, one at a time by name, and no other
// Secret. Every node may act as that user, so a cluster-wide read of
// Secrets there (what k3s grants Traefik's one pod) would let any node
// read every Secret; as with the node authorizer, the relationship
// decides instead. Other requests get no opinion.
type IngressTLS struct{ ingresses IngressLister }

// NewIngressTLS returns the authorizer reading Ingresses from ingresses.
func NewIngressTLS(ingresses IngressLister) *IngressTLS { return &IngressTLS{ingresses: ingresses} }

// Authorize decides the ingress user's requests for Secrets.
func (i *IngressTLS) Authorize(_ context.Context, a apiserver.Attributes) (apiserver.Decision, string, error) {
	if a.User.Name != jointoken.IngressUser || !a.ResourceRequest || a.APIGroup != "" || a.Resource != "secrets" {
		return apiserver.DecisionNoOpinion, "", nil
	}
	if a.Verb != "get" || a.Subresource != "" || a.Namespace == "" || a.Name == "" {
		return noOpinion("can only get secrets named for TLS by an ingress, one by one")
	}
	for _, ing := range i.ingresses.List(a.Namespace, labels.Everything()) {
		for _, tls := range ing.Spec.TLS {
			if tls.SecretName == a.Name {
				return allow()
			}
		}
	}
	return noOpinion(fmt.Sprintf("no ingress in namespace %q names secret %q for TLS", a.Namespace, a.Name))
}
