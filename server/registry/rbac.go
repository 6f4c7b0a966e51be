package registry

import (
	"fmt"
	"slices"
	"strings"

	rbacv1 "k8s.io/api/rbac/v1"
	apivalidation "k8s.io/apimachinery/pkg/api/validation"
	pathvalidation "k8s.io/apimachinery/pkg/api/validation/path"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	metav1validation "k8s.io/apimachinery/pkg/apis/meta/v1/validation"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/validation/field"
)

// rbac.authorization.k8s.io/v1: roles, rolebindings, clusterroles and
// clusterrolebindings (pkg/registry/rbac, pkg/apis/rbac/{v1,validation}).
// RBAC names are path segments, not DNS names: "system:node" is a valid
// ClusterRole. Escalation checks (a user may only grant what they hold)
// belong to the authorizer, not to this table.

var rbacGV = rbacv1.SchemeGroupVersion

func rbacResources() []*Resource {
	return []*Resource{rolesResource(), roleBindingsResource(), clusterRolesResource(), clusterRoleBindingsResource()}
}

// rbacCreatedAtColumns are Kubernetes' default table columns, which roles
// and cluster roles use: they have no printer of their own.
func rbacCreatedAtColumns() []metav1.TableColumnDefinition {
	return []metav1.TableColumnDefinition{
		nameColumn(),
		{Name: "Created At", Type: "date", Description: metav1.ObjectMeta{}.SwaggerDoc()["creationTimestamp"]},
	}
}

func rolesResource() *Resource {
	return &Resource{
		GroupVersion:   rbacGV,
		Name:           "roles",
		Kind:           "Role",
		SingularName:   "role",
		Namespaced:     true,
		New:            func() runtime.Object { return &rbacv1.Role{} },
		NewList:        func() runtime.Object { return &rbacv1.RoleList{} },
		NameValidation: pathvalidation.ValidatePathSegmentName,
		Validate: func(obj runtime.Object) field.ErrorList {
			return validatePolicyRules(obj.(*rbacv1.Role).Rules, true)
		},
		Columns: rbacCreatedAtColumns(),
		Row: func(obj runtime.Object) []interface{} {
			r := obj.(*rbacv1.Role)
			return []interface{}{r.Name, r.CreationTimestamp}
		},
	}
}

func clusterRolesResource() *Resource {
	return &Resource{
		GroupVersion:   rbacGV,
		Name:           "clusterroles",
		Kind:           "ClusterRole",
		SingularName:   "clusterrole",
		New:            func() runtime.Object { return &rbacv1.ClusterRole{} },
		NewList:        func() runtime.Object { return &rbacv1.ClusterRoleList{} },
		NameValidation: pathvalidation.ValidatePathSegmentName,
		Validate:       func(obj runtime.Object) field.ErrorList { return validateClusterRole(obj.(*rbacv1.ClusterRole)) },
		Columns:        rbacCreatedAtColumns(),
		Row: func(obj runtime.Object) []interface{} {
			r := obj.(*rbacv1.ClusterRole)
			return []interface{}{r.Name, r.CreationTimestamp}
		},
	}
}

func roleBindingsResource() *Resource {
	return &Resource{
		GroupVersion:   rbacGV,
		Name:           "rolebindings",
		Kind:           "RoleBinding",
		SingularName:   "rolebinding",
		Namespaced:     true,
		New:            func() runtime.Object { return &rbacv1.RoleBinding{} },
		NewList:        func() runtime.Object { return &rbacv1.RoleBindingList{} },
		NameValidation: pathvalidation.ValidatePathSegmentName,
		Default: func(obj runtime.Object) {
			rb := obj.(*rbacv1.RoleBinding)
			defaultRoleRefAndSubjects(&rb.RoleRef, rb.Subjects)
		},
		Validate: func(obj runtime.Object) field.ErrorList {
			rb := obj.(*rbacv1.RoleBinding)
			return validateRoleBinding(rb.RoleRef, rb.Subjects, true)
		},
		ValidateUpdate: func(obj, old runtime.Object) field.ErrorList {
			return validateRoleRefUpdate(obj.(*rbacv1.RoleBinding).RoleRef, old.(*rbacv1.RoleBinding).RoleRef)
		},
		Columns: roleBindingColumns("roleBinding", rbacv1.RoleBinding{}.SwaggerDoc()["roleRef"]),
		Row: func(obj runtime.Object) []interface{} {
			rb := obj.(*rbacv1.RoleBinding)
			return roleBindingRow(rb.Name, rb.CreationTimestamp, rb.RoleRef, rb.Subjects)
		},
	}
}

func clusterRoleBindingsResource() *Resource {
	return &Resource{
		GroupVersion:   rbacGV,
		Name:           "clusterrolebindings",
		Kind:           "ClusterRoleBinding",
		SingularName:   "clusterrolebinding",
		New:            func() runtime.Object { return &rbacv1.ClusterRoleBinding{} },
		NewList:        func() runtime.Object { return &rbacv1.ClusterRoleBindingList{} },
		NameValidation: pathvalidation.ValidatePathSegmentName,
		Default: func(obj runtime.Object) {
			crb := obj.(*rbacv1.ClusterRoleBinding)
			defaultRoleRefAndSubjects(&crb.RoleRef, crb.Subjects)
		},
		Validate: func(obj runtime.Object) field.ErrorList {
			crb := obj.(*rbacv1.ClusterRoleBinding)
			return validateRoleBinding(crb.RoleRef, crb.Subjects, false)
		},
		ValidateUpdate: func(obj, old runtime.Object) field.ErrorList {
			return validateRoleRefUpdate(obj.(*rbacv1.ClusterRoleBinding).RoleRef, old.(*rbacv1.ClusterRoleBinding).RoleRef)
		},
		Columns: roleBindingColumns("clusterRoleBinding", rbacv1.ClusterRoleBinding{}.SwaggerDoc()["roleRef"]),
		Row: func(obj runtime.Object) []interface{} {
			crb := obj.(*rbacv1.ClusterRoleBinding)
			return roleBindingRow(crb.Name, crb.CreationTimestamp, crb.RoleRef, crb.Subjects)
		},
	}
}

// defaultRoleRefAndSubjects is SetDefaults_RoleBinding,
// SetDefaults_ClusterRoleBinding and SetDefaults_Subject: roles and users
// and groups belong to the RBAC API group, service accounts to core.
func defaultRoleRefAndSubjects(ref *rbacv1.RoleRef, subjects []rbacv1.Subject) {
	if ref.APIGroup == "" {
		ref.APIGroup = rbacv1.GroupName
	}
	for i := range subjects {
		s := &subjects[i]
		if s.APIGroup != "" {
			continue
		}
		switch s.Kind {
		case rbacv1.UserKind, rbacv1.GroupKind:
			s.APIGroup = rbacv1.GroupName
		}
	}
}

// validatePolicyRules is ValidatePolicyRule for each rule: every rule names
// verbs, and either resources (with their API groups) or, in cluster roles
// only, non-resource URLs.
func validatePolicyRules(rules []rbacv1.PolicyRule, namespaced bool) field.ErrorList {
	var allErrs field.ErrorList
	for i, rule := range rules {
		p := field.NewPath("rules").Index(i)
		if len(rule.Verbs) == 0 {
			allErrs = append(allErrs, field.Required(p.Child("verbs"), "verbs must contain at least one value"))
		}
		if len(rule.NonResourceURLs) > 0 {
			if namespaced {
				allErrs = append(allErrs, field.Invalid(p.Child("nonResourceURLs"), rule.NonResourceURLs, "namespaced rules cannot apply to non-resource URLs"))
			}
			if len(rule.APIGroups) > 0 || len(rule.Resources) > 0 || len(rule.ResourceNames) > 0 {
				allErrs = append(allErrs, field.Invalid(p.Child("nonResourceURLs"), rule.NonResourceURLs, "rules cannot apply to both regular resources and non-resource URLs"))
			}
			continue
		}
		if len(rule.APIGroups) == 0 {
			allErrs = append(allErrs, field.Required(p.Child("apiGroups"), "resource rules must supply at least one api group"))
		}
		if len(rule.Resources) == 0 {
			allErrs = append(allErrs, field.Required(p.Child("resources"), "resource rules must supply at least one resource"))
		}
	}
	return allErrs
}

// validateClusterRole adds aggregation rules to the policy rules: an
// aggregated role selects the cluster roles it sums up.
func validateClusterRole(cr *rbacv1.ClusterRole) field.ErrorList {
	allErrs := validatePolicyRules(cr.Rules, false)
	if cr.AggregationRule == nil {
		return allErrs
	}
	selPath := field.NewPath("aggregationRule", "clusterRoleSelectors")
	if len(cr.AggregationRule.ClusterRoleSelectors) == 0 {
		allErrs = append(allErrs, field.Required(selPath, "at least one clusterRoleSelector required if aggregationRule is non-nil"))
	}
	for i := range cr.AggregationRule.ClusterRoleSelectors {
		sel := &cr.AggregationRule.ClusterRoleSelectors[i]
		allErrs = append(allErrs, metav1validation.ValidateLabelSelector(sel, metav1validation.LabelSelectorValidationOptions{}, selPath.Index(i))...)
	}
	return allErrs
}

// validateRoleBinding is ValidateRoleBinding (namespaced) and
// ValidateClusterRoleBinding: a cluster role binding can only grant a
// ClusterRole, and its service account subjects must say their namespace.
func validateRoleBinding(ref rbacv1.RoleRef, subjects []rbacv1.Subject, namespaced bool) field.ErrorList {
	var allErrs field.ErrorList
	refPath := field.NewPath("roleRef")
	if ref.APIGroup != rbacv1.GroupName {
		allErrs = append(allErrs, field.NotSupported(refPath.Child("apiGroup"), ref.APIGroup, []string{rbacv1.GroupName}))
	}
	kinds := []string{"ClusterRole"}
	if namespaced {
		kinds = []string{"Role", "ClusterRole"}
	}
	if !slices.Contains(kinds, ref.Kind) {
		allErrs = append(allErrs, field.NotSupported(refPath.Child("kind"), ref.Kind, kinds))
	}
	if ref.Name == "" {
		allErrs = append(allErrs, field.Required(refPath.Child("name"), ""))
	} else {
		for _, msg := range pathvalidation.ValidatePathSegmentName(ref.Name, false) {
			allErrs = append(allErrs, field.Invalid(refPath.Child("name"), ref.Name, msg))
		}
	}
	for i, s := range subjects {
		allErrs = append(allErrs, validateRBACSubject(s, namespaced, field.NewPath("subjects").Index(i))...)
	}
	return allErrs
}

// validateRBACSubject is ValidateRoleBindingSubject.
func validateRBACSubject(s rbacv1.Subject, namespaced bool, fldPath *field.Path) field.ErrorList {
	var allErrs field.ErrorList
	if s.Name == "" {
		allErrs = append(allErrs, field.Required(fldPath.Child("name"), ""))
	}
	switch s.Kind {
	case rbacv1.ServiceAccountKind:
		if s.Name != "" {
			for _, msg := range apivalidation.ValidateServiceAccountName(s.Name, false) {
				allErrs = append(allErrs, field.Invalid(fldPath.Child("name"), s.Name, msg))
			}
		}
		if s.APIGroup != "" {
			allErrs = append(allErrs, field.NotSupported(fldPath.Child("apiGroup"), s.APIGroup, []string{""}))
		}
		if !namespaced && s.Namespace == "" {
			allErrs = append(allErrs, field.Required(fldPath.Child("namespace"), ""))
		}
	case rbacv1.UserKind, rbacv1.GroupKind:
		if s.APIGroup != rbacv1.GroupName {
			allErrs = append(allErrs, field.NotSupported(fldPath.Child("apiGroup"), s.APIGroup, []string{rbacv1.GroupName}))
		}
	default:
		allErrs = append(allErrs, field.NotSupported(fldPath.Child("kind"), s.Kind,
			[]string{rbacv1.ServiceAccountKind, rbacv1.UserKind, rbacv1.GroupKind}))
	}
	return allErrs
}

// validateRoleRefUpdate: what a binding grants is fixed at creation, so
// that an update cannot silently widen it; clients delete and recreate
// (kubectl auth reconcile does).
func validateRoleRefUpdate(ref, old rbacv1.RoleRef) field.ErrorList {
	if ref != old {
		return field.ErrorList{field.Invalid(field.NewPath("roleRef"), ref, "cannot change roleRef")}
	}
	return nil
}

func roleBindingColumns(kind, roleDoc string) []metav1.TableColumnDefinition {
	return []metav1.TableColumnDefinition{
		nameColumn(),
		column("Role", "string", roleDoc, 0),
		ageColumn(),
		column("Users", "string", "Users in the "+kind, 1),
		column("Groups", "string", "Groups in the "+kind, 1),
		column("ServiceAccounts", "string", "ServiceAccounts in the "+kind, 1),
	}
}

// roleBindingRow is printRoleBinding and printClusterRoleBinding (always
// wide).
func roleBindingRow(name string, created metav1.Time, ref rbacv1.RoleRef, subjects []rbacv1.Subject) []interface{} {
	var users, groups, sas []string
	for _, s := range subjects {
		switch s.Kind {
		case rbacv1.ServiceAccountKind:
			sas = append(sas, s.Namespace+"/"+s.Name)
		case rbacv1.UserKind:
			users = append(users, s.Name)
		case rbacv1.GroupKind:
			groups = append(groups, s.Name)
		}
	}
	return []interface{}{name, fmt.Sprintf("%s/%s", ref.Kind, ref.Name), translateTimestampSince(created),
		strings.Join(users, ", "), strings.Join(groups, ", "), strings.Join(sas, ", ")}
}
