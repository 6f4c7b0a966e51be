package registry

import (
	"strings"
	"testing"
	"time"

	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

func TestRBACEntries(t *testing.T) {
	gv := rbacv1.SchemeGroupVersion
	bindingCols := []string{"Name", "Role", "Age", "Users", "Groups", "ServiceAccounts"}
	checkEntries(t, []entryCase{
		{gv, "roles", "Role", true, nil, nil, []string{"Name", "Created At"}},
		{gv, "rolebindings", "RoleBinding", true, nil, nil, bindingCols},
		{gv, "clusterroles", "ClusterRole", false, nil, nil, []string{"Name", "Created At"}},
		{gv, "clusterrolebindings", "ClusterRoleBinding", false, nil, nil, bindingCols},
	})
	// -o wide shows the subjects.
	r := tableResource(t, gv, "clusterrolebindings")
	for _, c := range r.Columns[3:] {
		if c.Priority != 1 {
			t.Errorf("column %s has priority %d, want 1", c.Name, c.Priority)
		}
	}
}

func TestRBACNames(t *testing.T) {
	for _, name := range []string{"roles", "rolebindings", "clusterroles", "clusterrolebindings"} {
		r := tableResource(t, rbacv1.SchemeGroupVersion, name)
		for _, tt := range []struct {
			name  string
			valid bool
		}{
			{"system:node", true},
			{"system:controller:deployment-controller", true},
			{"Admin_Role", true},
			{"a/b", false},
			{"..", false},
			{"a%b", false},
		} {
			if got := len(r.NameValidation(tt.name, false)) == 0; got != tt.valid {
				t.Errorf("%s: name %q valid = %v, want %v", name, tt.name, got, tt.valid)
			}
		}
	}
}

func TestValidateRoles(t *testing.T) {
	roles := tableResource(t, rbacv1.SchemeGroupVersion, "roles")
	clusterRoles := tableResource(t, rbacv1.SchemeGroupVersion, "clusterroles")
	podsRule := rbacv1.PolicyRule{APIGroups: []string{""}, Resources: []string{"pods"}, Verbs: []string{"get", "list"}}
	healthz := rbacv1.PolicyRule{NonResourceURLs: []string{"/healthz"}, Verbs: []string{"get"}}
	tests := []struct {
		name            string
		rules           []rbacv1.PolicyRule
		wantRole        []string
		wantClusterRole []string
	}{
		{"resource rule", []rbacv1.PolicyRule{podsRule}, nil, nil},
		{"no rules", nil, nil, nil},
		{"verbs required", []rbacv1.PolicyRule{{APIGroups: []string{""}, Resources: []string{"pods"}}},
			[]string{"rules[0].verbs: FieldValueRequired"}, []string{"rules[0].verbs: FieldValueRequired"}},
		{"apiGroups and resources required", []rbacv1.PolicyRule{podsRule, {Verbs: []string{"get"}}},
			[]string{"rules[1].apiGroups: FieldValueRequired", "rules[1].resources: FieldValueRequired"},
			[]string{"rules[1].apiGroups: FieldValueRequired", "rules[1].resources: FieldValueRequired"}},
		{"non-resource URLs only in cluster roles", []rbacv1.PolicyRule{healthz},
			[]string{"rules[0].nonResourceURLs: FieldValueInvalid"}, nil},
		{"non-resource URLs with resources", []rbacv1.PolicyRule{{NonResourceURLs: []string{"/metrics"},
			Resources: []string{"pods"}, Verbs: []string{"get"}}},
			[]string{"rules[0].nonResourceURLs: FieldValueInvalid", "rules[0].nonResourceURLs: FieldValueInvalid"},
			[]string{"rules[0].nonResourceURLs: FieldValueInvalid"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			checkErrors(t, roles.Validate(&rbacv1.Role{Rules: tt.rules}), tt.wantRole...)
			checkErrors(t, clusterRoles.Validate(&rbacv1.ClusterRole{Rules: tt.rules}), tt.wantClusterRole...)
		})
	}

	agg := &rbacv1.ClusterRole{AggregationRule: &rbacv1.AggregationRule{}}
	checkErrors(t, clusterRoles.Validate(agg), "aggregationRule.clusterRoleSelectors: FieldValueRequired")
	agg.AggregationRule.ClusterRoleSelectors = []metav1.LabelSelector{
		{MatchLabels: map[string]string{"rbac.example.com/aggregate-to-admin": "true"}},
		{MatchExpressions: []metav1.LabelSelectorRequirement{{Key: "a", Operator: "Maybe"}}},
	}
	checkErrors(t, clusterRoles.Validate(agg), "aggregationRule.clusterRoleSelectors[1].matchExpressions[0].operator: FieldValueInvalid")
}

func TestRoleBindingDefaults(t *testing.T) {
	r := tableResource(t, rbacv1.SchemeGroupVersion, "rolebindings")
	rb := &rbacv1.RoleBinding{
		RoleRef: rbacv1.RoleRef{Kind: "Role", Name: "reader"},
		Subjects: []rbacv1.Subject{
			{Kind: "User", Name: "alice"},
			{Kind: "Group", Name: "devs"},
			{Kind: "ServiceAccount", Name: "default", Namespace: "ns"},
			{Kind: "User", Name: "bob", APIGroup: "example.com"},
		},
	}
	r.Default(rb)
	if rb.RoleRef.APIGroup != rbacv1.GroupName {
		t.Errorf("roleRef.apiGroup %q", rb.RoleRef.APIGroup)
	}
	for i, want := range []string{rbacv1.GroupName, rbacv1.GroupName, "", "example.com"} {
		if got := rb.Subjects[i].APIGroup; got != want {
			t.Errorf("subjects[%d].apiGroup %q, want %q", i, got, want)
		}
	}
}

func TestValidateRoleBindings(t *testing.T) {
	rbs := tableResource(t, rbacv1.SchemeGroupVersion, "rolebindings")
	crbs := tableResource(t, rbacv1.SchemeGroupVersion, "clusterrolebindings")
	ref := func(kind, name string) rbacv1.RoleRef {
		return rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: kind, Name: name}
	}
	user := rbacv1.Subject{Kind: "User", APIGroup: rbacv1.GroupName, Name: "alice"}
	sa := rbacv1.Subject{Kind: "ServiceAccount", Name: "builder", Namespace: "ci"}
	tests := []struct {
		name     string
		ref      rbacv1.RoleRef
		subjects []rbacv1.Subject
		wantRB   []string
		wantCRB  []string
	}{
		{"cluster role", ref("ClusterRole", "system:node"), []rbacv1.Subject{user, sa}, nil, nil},
		{"role", ref("Role", "reader"), nil, nil, []string{"roleRef.kind: FieldValueNotSupported"}},
		{"unknown kind", ref("Policy", "p"), nil,
			[]string{"roleRef.kind: FieldValueNotSupported"}, []string{"roleRef.kind: FieldValueNotSupported"}},
		{"wrong api group", rbacv1.RoleRef{APIGroup: "example.com", Kind: "ClusterRole", Name: "x"}, nil,
			[]string{"roleRef.apiGroup: FieldValueNotSupported"}, []string{"roleRef.apiGroup: FieldValueNotSupported"}},
		{"name required", ref("ClusterRole", ""), nil,
			[]string{"roleRef.name: FieldValueRequired"}, []string{"roleRef.name: FieldValueRequired"}},
		{"bad name", ref("ClusterRole", "a/b"), nil,
			[]string{"roleRef.name: FieldValueInvalid"}, []string{"roleRef.name: FieldValueInvalid"}},
		{"service account without namespace", ref("ClusterRole", "view"),
			[]rbacv1.Subject{{Kind: "ServiceAccount", Name: "default"}},
			nil, []string{"subjects[0].namespace: FieldValueRequired"}},
		{"service account with api group", ref("ClusterRole", "view"),
			[]rbacv1.Subject{{Kind: "ServiceAccount", Name: "default", Namespace: "a", APIGroup: rbacv1.GroupName}},
			[]string{"subjects[0].apiGroup: FieldValueNotSupported"}, []string{"subjects[0].apiGroup: FieldValueNotSupported"}},
		{"bad service account name", ref("ClusterRole", "view"),
			[]rbacv1.Subject{{Kind: "ServiceAccount", Name: "Build_er", Namespace: "a"}},
			[]string{"subjects[0].name: FieldValueInvalid"}, []string{"subjects[0].name: FieldValueInvalid"}},
		{"user without api group", ref("ClusterRole", "view"), []rbacv1.Subject{{Kind: "User", Name: "bob"}},
			[]string{"subjects[0].apiGroup: FieldValueNotSupported"}, []string{"subjects[0].apiGroup: FieldValueNotSupported"}},
		{"unknown subject kind", ref("ClusterRole", "view"), []rbacv1.Subject{{Kind: "Robot", Name: "r2"}},
			[]string{"subjects[0].kind: FieldValueNotSupported"}, []string{"subjects[0].kind: FieldValueNotSupported"}},
		{"subject name required", ref("ClusterRole", "view"),
			[]rbacv1.Subject{{Kind: "Group", APIGroup: rbacv1.GroupName}},
			[]string{"subjects[0].name: FieldValueRequired"}, []string{"subjects[0].name: FieldValueRequired"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			checkErrors(t, rbs.Validate(&rbacv1.RoleBinding{RoleRef: tt.ref, Subjects: tt.subjects}), tt.wantRB...)
			checkErrors(t, crbs.Validate(&rbacv1.ClusterRoleBinding{RoleRef: tt.ref, Subjects: tt.subjects}), tt.wantCRB...)
		})
	}
}

func TestRoleRefImmutable(t *testing.T) {
	rbs := tableResource(t, rbacv1.SchemeGroupVersion, "rolebindings")
	crbs := tableResource(t, rbacv1.SchemeGroupVersion, "clusterrolebindings")
	ref := rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: "view"}
	other := ref
	other.Name = "edit"
	newSubjects := []rbacv1.Subject{{Kind: "User", APIGroup: rbacv1.GroupName, Name: "alice"}}

	checkErrors(t, rbs.ValidateUpdate(&rbacv1.RoleBinding{RoleRef: ref, Subjects: newSubjects}, &rbacv1.RoleBinding{RoleRef: ref}))
	errs := rbs.ValidateUpdate(&rbacv1.RoleBinding{RoleRef: other}, &rbacv1.RoleBinding{RoleRef: ref})
	checkErrors(t, errs, "roleRef: FieldValueInvalid")
	if len(errs) == 1 && !strings.Contains(errs[0].Detail, "cannot change roleRef") {
		t.Errorf("detail %q", errs[0].Detail)
	}
	checkErrors(t, crbs.ValidateUpdate(&rbacv1.ClusterRoleBinding{RoleRef: other}, &rbacv1.ClusterRoleBinding{RoleRef: ref}),
		"roleRef: FieldValueInvalid")
}

func TestRBACRows(t *testing.T) {
	created := metav1.NewTime(time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC))
	crbs := tableResource(t, rbacv1.SchemeGroupVersion, "clusterrolebindings")
	crb := &rbacv1.ClusterRoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: "admins"},
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: "cluster-admin"},
		Subjects: []rbacv1.Subject{
			{Kind: "User", Name: "alice"}, {Kind: "User", Name: "bob"},
			{Kind: "Group", Name: "system:masters"},
			{Kind: "ServiceAccount", Namespace: "kube-system", Name: "admin"},
		},
	}
	if got, want := sprint(crbs.Row(crb)), "[admins ClusterRole/cluster-admin <unknown> alice, bob system:masters kube-system/admin]"; got != want {
		t.Errorf("row %s, want %s", got, want)
	}
	rbs := tableResource(t, rbacv1.SchemeGroupVersion, "rolebindings")
	rb := &rbacv1.RoleBinding{ObjectMeta: metav1.ObjectMeta{Name: "r"}, RoleRef: rbacv1.RoleRef{Kind: "Role", Name: "reader"}}
	if got, want := sprint(rbs.Row(rb)), "[r Role/reader <unknown>   ]"; got != want {
		t.Errorf("row %s, want %s", got, want)
	}
	roles := tableResource(t, rbacv1.SchemeGroupVersion, "roles")
	cells := roles.Row(&rbacv1.Role{ObjectMeta: metav1.ObjectMeta{Name: "reader", CreationTimestamp: created}})
	if cells[0] != "reader" || cells[1] != created {
		t.Errorf("role row %v", cells)
	}
}
