package authz

import (
	"context"
	"fmt"
	"slices"
	"strings"

	rbacv1 "k8s.io/api/rbac/v1"

	"github.com/orch-dev/orch/server/apiserver"
	"github.com/orch-dev/orch/server/serviceaccount"
)

// PolicySource reads the RBAC objects the authorizer evaluates. The
// informer-backed one (see New) reads the shared informers' caches;
// returned objects must not be modified.
type PolicySource interface {
	ClusterRoleBindings() []*rbacv1.ClusterRoleBinding
	RoleBindings(namespace string) []*rbacv1.RoleBinding
	ClusterRole(name string) (*rbacv1.ClusterRole, bool)
	Role(namespace, name string) (*rbacv1.Role, bool)
}

// RBAC authorizes requests by Roles, ClusterRoles and their bindings, as
// Kubernetes' RBAC authorizer: ClusterRoleBindings grant everywhere,
// RoleBindings in their namespace. It only ever allows (or has no opinion).
type RBAC struct{ policy PolicySource }

// NewRBAC returns an RBAC authorizer over policy.
func NewRBAC(policy PolicySource) *RBAC { return &RBAC{policy: policy} }

// Authorize allows a when a binding that applies to its user grants a
// rule matching it. The reason of a NoOpinion lists bindings whose role
// is missing, as upstream does, so a typo in a roleRef is visible.
func (r *RBAC) Authorize(_ context.Context, a apiserver.Attributes) (apiserver.Decision, string, error) {
	var allowedBy string
	var missing []string
	r.visitRules(a.User, a.Namespace, func(source func() string, rule *rbacv1.PolicyRule, err error) bool {
		if err != nil {
			missing = append(missing, err.Error())
			return true
		}
		if RuleAllows(a, rule) {
			allowedBy = source()
			return false
		}
		return true
	})
	if allowedBy != "" {
		return apiserver.DecisionAllow, "RBAC: allowed by " + allowedBy, nil
	}
	if len(missing) > 0 {
		return apiserver.DecisionNoOpinion, "RBAC: " + strings.Join(missing, ", "), nil
	}
	return apiserver.DecisionNoOpinion, "", nil
}

// RulesFor returns the rules user holds in namespace (cluster-wide ones
// included), for SelfSubjectRulesReview, and whether the list is
// incomplete because a binding names a missing role.
func (r *RBAC) RulesFor(user apiserver.UserInfo, namespace string) (rules []rbacv1.PolicyRule, incomplete []string) {
	r.visitRules(user, namespace, func(_ func() string, rule *rbacv1.PolicyRule, err error) bool {
		if err != nil {
			incomplete = append(incomplete, err.Error())
			return true
		}
		rules = append(rules, *rule)
		return true
	})
	return rules, incomplete
}

// visitRules calls visit for every rule granted to user in namespace, with
// a description of where it comes from (made only when asked for: most
// rules do not match), until visit returns false.
func (r *RBAC) visitRules(user apiserver.UserInfo, namespace string, visit func(source func() string, rule *rbacv1.PolicyRule, err error) bool) {
	for _, b := range r.policy.ClusterRoleBindings() {
		i := appliesTo(user, b.Subjects, "")
		if i < 0 {
			continue
		}
		rules, err := r.roleRules(b.RoleRef, "")
		if err != nil {
			if !visit(nil, nil, err) {
				return
			}
			continue
		}
		source := func() string {
			return fmt.Sprintf("ClusterRoleBinding %q of ClusterRole %q to %s", b.Name, b.RoleRef.Name, describeSubject(b.Subjects[i], ""))
		}
		for j := range rules {
			if !visit(source, &rules[j], nil) {
				return
			}
		}
	}
	if namespace == "" {
		return
	}
	for _, b := range r.policy.RoleBindings(namespace) {
		i := appliesTo(user, b.Subjects, namespace)
		if i < 0 {
			continue
		}
		rules, err := r.roleRules(b.RoleRef, namespace)
		if err != nil {
			if !visit(nil, nil, err) {
				return
			}
			continue
		}
		source := func() string {
			return fmt.Sprintf("RoleBinding \"%s/%s\" of %s %q to %s", namespace, b.Name, b.RoleRef.Kind, b.RoleRef.Name, describeSubject(b.Subjects[i], namespace))
		}
		for j := range rules {
			if !visit(source, &rules[j], nil) {
				return
			}
		}
	}
}

func (r *RBAC) roleRules(ref rbacv1.RoleRef, namespace string) ([]rbacv1.PolicyRule, error) {
	switch ref.Kind {
	case "ClusterRole":
		if cr, ok := r.policy.ClusterRole(ref.Name); ok {
			return cr.Rules, nil
		}
		return nil, fmt.Errorf("clusterrole.rbac.authorization.k8s.io %q not found", ref.Name)
	case "Role":
		if namespace != "" {
			if role, ok := r.policy.Role(namespace, ref.Name); ok {
				return role.Rules, nil
			}
		}
		return nil, fmt.Errorf("role.rbac.authorization.k8s.io %q not found", ref.Name)
	}
	return nil, fmt.Errorf("unsupported role reference kind: %q", ref.Kind)
}

// appliesTo returns the index of the first subject user matches, or -1.
// A ServiceAccount subject without a namespace means the binding's own.
func appliesTo(user apiserver.UserInfo, subjects []rbacv1.Subject, namespace string) int {
	for i, s := range subjects {
		switch s.Kind {
		case rbacv1.UserKind:
			if user.Name == s.Name {
				return i
			}
		case rbacv1.GroupKind:
			if slices.Contains(user.Groups, s.Name) {
				return i
			}
		case rbacv1.ServiceAccountKind:
			ns := s.Namespace
			if ns == "" {
				ns = namespace
			}
			if ns != "" && user.Name == serviceaccount.UserName(ns, s.Name) {
				return i
			}
		}
	}
	return -1
}

func describeSubject(s rbacv1.Subject, bindingNamespace string) string {
	switch s.Kind {
	case rbacv1.ServiceAccountKind:
		ns := s.Namespace
		if ns == "" {
			ns = bindingNamespace
		}
		return fmt.Sprintf("%s \"%s/%s\"", s.Kind, ns, s.Name)
	}
	return fmt.Sprintf("%s %q", s.Kind, s.Name)
}
