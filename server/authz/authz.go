// Package authz decides what an authenticated caller of the API may do. It
// is the union, in this order, of
//
//   - the system:masters group, which may do everything;
//   - the node authorizer (Node): what an agent's certificate may do;
//   - IngressTLS: the TLS Secrets the nodes' ingress proxies may read;
//   - RBAC (RBAC): Roles, ClusterRoles and their bindings, read from the
//     shared informers.
//
// It also answers the access reviews (SelfSubjectAccessReview and its
// kin, see Attach), creates the bootstrap policy (EnsureBootstrapPolicy)
// and fills aggregated ClusterRoles (AggregationController). It decides;
// it never authenticates (server/auth does) and never stores anything but
// RBAC objects, through the in-process API.
package authz

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	rbacv1 "k8s.io/api/rbac/v1"

	"github.com/orch-dev/orch/server/apiserver"
	"github.com/orch-dev/orch/server/auth"
	"github.com/orch-dev/orch/server/controllers/informer"
)

// Authorizer decides one kind of request; see apiserver.Authorizer.
type Authorizer interface {
	Authorize(ctx context.Context, a apiserver.Attributes) (apiserver.Decision, string, error)
}

// Union asks each authorizer in turn: the first Allow or Deny decides.
// When none does, the request is denied with the reasons they gave, as
// Kubernetes' union authorizer does.
func Union(authorizers ...Authorizer) apiserver.Authorizer {
	return func(ctx context.Context, a apiserver.Attributes) (apiserver.Decision, string, error) {
		var reasons []string
		var errs []error
		for _, az := range authorizers {
			d, reason, err := az.Authorize(ctx, a)
			if err != nil {
				errs = append(errs, err)
			}
			if reason != "" {
				reasons = append(reasons, reason)
			}
			if d != apiserver.DecisionNoOpinion {
				return d, reason, err
			}
		}
		return apiserver.DecisionNoOpinion, strings.Join(reasons, "\n"), errors.Join(errs...)
	}
}

// Masters allows everything to members of system:masters.
type Masters struct{}

// Authorize allows members of system:masters.
func (Masters) Authorize(_ context.Context, a apiserver.Attributes) (apiserver.Decision, string, error) {
	if slices.Contains(a.User.Groups, auth.MastersGroup) {
		return apiserver.DecisionAllow, "", nil
	}
	return apiserver.DecisionNoOpinion, "", nil
}

// Cluster is the server's authorizer: Masters, Node and RBAC over the
// shared informers.
type Cluster struct {
	RBAC      *RBAC
	Node      *Node
	union     apiserver.Authorizer
	informers []*informer.Informer
	nodes     NodeGetter // for NodeRestriction's mirror pod owner check
}

// New builds the authorizer over the informers of f (which must be run).
func New(f *informer.Factory) *Cluster {
	policy := informerPolicy{
		clusterRoles:        informer.NewLister[*rbacv1.ClusterRole](f.For(rbacv1.SchemeGroupVersion.WithResource("clusterroles"))),
		clusterRoleBindings: informer.NewLister[*rbacv1.ClusterRoleBinding](f.For(rbacv1.SchemeGroupVersion.WithResource("clusterrolebindings"))),
		roles:               informer.NewLister[*rbacv1.Role](f.For(rbacv1.SchemeGroupVersion.WithResource("roles"))),
		roleBindings:        informer.NewLister[*rbacv1.RoleBinding](f.For(rbacv1.SchemeGroupVersion.WithResource("rolebindings"))),
	}
	pods := f.For(corev1.SchemeGroupVersion.WithResource("pods"))
	claims := f.For(corev1.SchemeGroupVersion.WithResource("persistentvolumeclaims"))
	ingresses := f.For(networkingv1.SchemeGroupVersion.WithResource("ingresses"))
	c := &Cluster{RBAC: NewRBAC(policy),
		Node: NewNode(informer.NewLister[*corev1.Pod](pods), informer.NewLister[*corev1.PersistentVolumeClaim](claims))}
	c.union = Union(Masters{}, c.Node, NewIngressTLS(informer.NewLister[*networkingv1.Ingress](ingresses)), c.RBAC)
	for _, r := range []string{"clusterroles", "clusterrolebindings", "roles", "rolebindings"} {
		c.informers = append(c.informers, f.For(rbacv1.SchemeGroupVersion.WithResource(r)))
	}
	nodes := f.For(corev1.SchemeGroupVersion.WithResource("nodes"))
	c.nodes = informer.NewLister[*corev1.Node](nodes)
	c.informers = append(c.informers, pods, claims, ingresses, nodes)
	return c
}

// Authorize decides a request (apiserver.Config.Authorize). Until the
// informers have their first lists, requests other than system:masters'
// wait for them, bounded by the request's context: deciding on an empty
// cache would deny everyone.
func (c *Cluster) Authorize(ctx context.Context, a apiserver.Attributes) (apiserver.Decision, string, error) {
	if d, _, _ := (Masters{}).Authorize(ctx, a); d == apiserver.DecisionAllow {
		return d, "", nil
	}
	if !informer.WaitForSync(ctx, c.informers...) {
		return apiserver.DecisionNoOpinion, "", fmt.Errorf("authorization caches are not ready: %w", ctx.Err())
	}
	return c.union(ctx, a)
}

// RulesFor lists what user may do in namespace, for
// SelfSubjectRulesReview: everything for system:masters, else the RBAC
// rules that apply.
func (c *Cluster) RulesFor(ctx context.Context, user apiserver.UserInfo, namespace string) ([]rbacv1.PolicyRule, []string, error) {
	if slices.Contains(user.Groups, auth.MastersGroup) {
		return []rbacv1.PolicyRule{
			{Verbs: []string{"*"}, APIGroups: []string{"*"}, Resources: []string{"*"}},
			{Verbs: []string{"*"}, NonResourceURLs: []string{"*"}},
		}, nil, nil
	}
	if !informer.WaitForSync(ctx, c.informers...) {
		return nil, nil, fmt.Errorf("authorization caches are not ready: %w", ctx.Err())
	}
	rules, incomplete := c.RBAC.RulesFor(user, namespace)
	return rules, incomplete, nil
}

// informerPolicy reads RBAC objects from informer caches.
type informerPolicy struct {
	clusterRoles        informer.Lister[*rbacv1.ClusterRole]
	clusterRoleBindings informer.Lister[*rbacv1.ClusterRoleBinding]
	roles               informer.Lister[*rbacv1.Role]
	roleBindings        informer.Lister[*rbacv1.RoleBinding]
}

func (p informerPolicy) ClusterRoleBindings() []*rbacv1.ClusterRoleBinding {
	return p.clusterRoleBindings.List("", nil)
}

func (p informerPolicy) RoleBindings(namespace string) []*rbacv1.RoleBinding {
	return p.roleBindings.List(namespace, nil)
}

func (p informerPolicy) ClusterRole(name string) (*rbacv1.ClusterRole, bool) {
	return p.clusterRoles.Get("", name)
}

func (p informerPolicy) Role(namespace, name string) (*rbacv1.Role, bool) {
	return p.roles.Get(namespace, name)
}
