package authz

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"

	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"

	"github.com/orch-dev/orch/server/apiserver"
	"github.com/orch-dev/orch/server/auth"
	"github.com/orch-dev/orch/server/registry"
)

// Privilege escalation through RBAC objects is refused as kube-apiserver's
// RBAC storage refuses it: a user may write a Role or ClusterRole only
// with rules it holds itself (or with the "escalate" verb on it), and bind
// a role only when it holds the role's rules (or has the "bind" verb on
// it). Without this, anyone allowed to create RoleBindings could bind
// cluster-admin. In-process callers (controllers, the bootstrap policy)
// carry no user and are not checked.

// AttachEscalationChecks makes writes of the RBAC resources of table go
// through the checks, before the hooks attached so far.
func (c *Cluster) AttachEscalationChecks(table *registry.Table) error {
	checks := map[string]func(ctx context.Context, u apiserver.UserInfo, obj runtime.Object) error{
		"roles":               c.checkRole,
		"clusterroles":        c.checkClusterRole,
		"rolebindings":        c.checkRoleBinding,
		"clusterrolebindings": c.checkClusterRoleBinding,
	}
	for name, check := range checks {
		res := table.Lookup(rbacv1.SchemeGroupVersion, name)
		if res == nil {
			return fmt.Errorf("authz: resource %s/%s is not in the table", rbacv1.SchemeGroupVersion, name)
		}
		guardWrites(res, func(ctx context.Context, u apiserver.UserInfo, obj runtime.Object) error {
			if slices.Contains(u.Groups, auth.MastersGroup) {
				return nil
			}
			return check(ctx, u, obj)
		})
	}
	return nil
}

// guardWrites makes check run before the create and update hooks of res
// for requests with a user (not for in-process callers).
func guardWrites(res *registry.Resource, check func(ctx context.Context, u apiserver.UserInfo, obj runtime.Object) error) {
	guardCreates(res, check)
	guard := userGuard(check)
	nextUpdate := res.BeginUpdate
	res.BeginUpdate = func(ctx context.Context, obj, old runtime.Object) (registry.FinishFunc, error) {
		if err := guard(ctx, obj); err != nil {
			return nil, err
		}
		if nextUpdate == nil {
			return nil, nil
		}
		return nextUpdate(ctx, obj, old)
	}
}

// guardCreates makes check run before the create hook of res for
// requests with a user.
func guardCreates(res *registry.Resource, check func(ctx context.Context, u apiserver.UserInfo, obj runtime.Object) error) {
	guard := userGuard(check)
	nextCreate := res.BeginCreate
	res.BeginCreate = func(ctx context.Context, obj runtime.Object) (registry.FinishFunc, error) {
		if err := guard(ctx, obj); err != nil {
			return nil, err
		}
		if nextCreate == nil {
			return nil, nil
		}
		return nextCreate(ctx, obj)
	}
}

// userGuard runs check for requests with a user only.
func userGuard(check func(ctx context.Context, u apiserver.UserInfo, obj runtime.Object) error) func(context.Context, runtime.Object) error {
	return func(ctx context.Context, obj runtime.Object) error {
		u, ok := apiserver.UserFrom(ctx)
		if !ok {
			return nil
		}
		return check(ctx, u, obj)
	}
}

var (
	rolesGR        = schema.GroupResource{Group: rbacv1.GroupName, Resource: "roles"}
	clusterRolesGR = schema.GroupResource{Group: rbacv1.GroupName, Resource: "clusterroles"}
	// fullAuthority is what an aggregationRule may pull in.
	fullAuthority = []rbacv1.PolicyRule{
		{Verbs: []string{"*"}, APIGroups: []string{"*"}, Resources: []string{"*"}},
		{Verbs: []string{"*"}, NonResourceURLs: []string{"*"}},
	}
)

func (c *Cluster) checkRole(ctx context.Context, u apiserver.UserInfo, obj runtime.Object) error {
	r := obj.(*rbacv1.Role)
	if c.allowed(ctx, u, "escalate", rolesGR, r.Namespace, r.Name) {
		return nil
	}
	return c.confirmNoEscalation(u, r.Namespace, r.Rules, rolesGR, r.Name)
}

func (c *Cluster) checkClusterRole(ctx context.Context, u apiserver.UserInfo, obj runtime.Object) error {
	r := obj.(*rbacv1.ClusterRole)
	if c.allowed(ctx, u, "escalate", clusterRolesGR, "", r.Name) {
		return nil
	}
	if r.AggregationRule != nil {
		if err := c.confirmNoEscalation(u, "", fullAuthority, clusterRolesGR, r.Name); err != nil {
			return apierrors.NewForbidden(clusterRolesGR, r.Name, errors.New("must have cluster-admin privileges to use an aggregationRule"))
		}
		return nil
	}
	return c.confirmNoEscalation(u, "", r.Rules, clusterRolesGR, r.Name)
}

func (c *Cluster) checkRoleBinding(ctx context.Context, u apiserver.UserInfo, obj runtime.Object) error {
	b := obj.(*rbacv1.RoleBinding)
	return c.checkBinding(ctx, u, b.RoleRef, b.Namespace, schema.GroupResource{Group: rbacv1.GroupName, Resource: "rolebindings"}, b.Name)
}

func (c *Cluster) checkClusterRoleBinding(ctx context.Context, u apiserver.UserInfo, obj runtime.Object) error {
	b := obj.(*rbacv1.ClusterRoleBinding)
	return c.checkBinding(ctx, u, b.RoleRef, "", schema.GroupResource{Group: rbacv1.GroupName, Resource: "clusterrolebindings"}, b.Name)
}

// checkBinding: binding a role needs the "bind" verb on it, or holding its
// rules where the binding applies.
func (c *Cluster) checkBinding(ctx context.Context, u apiserver.UserInfo, ref rbacv1.RoleRef, namespace string, gr schema.GroupResource, name string) error {
	roleGR := clusterRolesGR
	if ref.Kind == "Role" {
		roleGR = rolesGR
	}
	if c.allowed(ctx, u, "bind", roleGR, namespace, ref.Name) {
		return nil
	}
	rules, err := c.RBAC.roleRules(ref, namespace)
	if err != nil {
		return apierrors.NewForbidden(gr, name, err)
	}
	return c.confirmNoEscalation(u, namespace, rules, gr, name)
}

func (c *Cluster) allowed(ctx context.Context, u apiserver.UserInfo, verb string, gr schema.GroupResource, namespace, name string) bool {
	d, _, _ := c.Authorize(ctx, apiserver.Attributes{User: u, Verb: verb, ResourceRequest: true,
		APIGroup: gr.Group, APIVersion: rbacv1.SchemeGroupVersion.Version, Resource: gr.Resource, Namespace: namespace, Name: name})
	return d == apiserver.DecisionAllow
}

// confirmNoEscalation fails unless u holds every rule of rules in
// namespace ("" = cluster-wide).
func (c *Cluster) confirmNoEscalation(u apiserver.UserInfo, namespace string, rules []rbacv1.PolicyRule, gr schema.GroupResource, name string) error {
	owned, _ := c.RBAC.RulesFor(u, namespace)
	missing := Uncovered(owned, rules)
	if len(missing) == 0 {
		return nil
	}
	msg := fmt.Sprintf("user %q (groups=%s) is attempting to grant RBAC permissions not currently held:", u.Name, quotedList(u.Groups))
	for _, r := range missing {
		msg += "\n" + describeRule(r)
	}
	return apierrors.NewForbidden(gr, name, errors.New(msg))
}

// Uncovered breaks rules into rules of one verb, group, resource and name
// (or URL) and returns those that owned does not grant, as upstream's
// validation.Covers: a "*" is covered only by a "*".
func Uncovered(owned, rules []rbacv1.PolicyRule) []rbacv1.PolicyRule {
	var missing []rbacv1.PolicyRule
	for _, r := range rules {
		for _, verb := range r.Verbs {
			for _, url := range r.NonResourceURLs {
				if !RulesAllow(apiserver.Attributes{Verb: verb, Path: url}, owned...) {
					missing = append(missing, rbacv1.PolicyRule{Verbs: []string{verb}, NonResourceURLs: []string{url}})
				}
			}
			names := r.ResourceNames
			if len(names) == 0 {
				names = []string{""}
			}
			for _, group := range r.APIGroups {
				for _, resource := range r.Resources {
					res, sub, _ := strings.Cut(resource, "/")
					for _, name := range names {
						a := apiserver.Attributes{Verb: verb, ResourceRequest: true, APIGroup: group, Resource: res, Subresource: sub, Name: name}
						if RulesAllow(a, owned...) {
							continue
						}
						atomic := rbacv1.PolicyRule{Verbs: []string{verb}, APIGroups: []string{group}, Resources: []string{resource}}
						if name != "" {
							atomic.ResourceNames = []string{name}
						}
						missing = append(missing, atomic)
					}
				}
			}
		}
	}
	return missing
}

// describeRule prints a rule as upstream's escalation error does.
func describeRule(r rbacv1.PolicyRule) string {
	var parts []string
	add := func(field string, values []string) {
		if len(values) > 0 {
			parts = append(parts, field+":"+quotedList(values))
		}
	}
	if len(r.NonResourceURLs) == 0 {
		parts = append(parts, "APIGroups:"+quotedList(r.APIGroups))
	}
	add("Resources", r.Resources)
	add("ResourceNames", r.ResourceNames)
	add("NonResourceURLs", r.NonResourceURLs)
	add("Verbs", r.Verbs)
	return "{" + strings.Join(parts, ", ") + "}"
}

// quotedList prints ["a" "b"], as %q of a []string does.
func quotedList(values []string) string { return fmt.Sprintf("%q", values) }
