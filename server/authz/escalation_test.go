package authz

import (
	"reflect"
	"testing"

	rbacv1 "k8s.io/api/rbac/v1"
)

func TestUncovered(t *testing.T) {
	podsRead := rule(readVerbs, core, "pods")
	tests := []struct {
		name   string
		owned  []rbacv1.PolicyRule
		wanted []rbacv1.PolicyRule
		want   []rbacv1.PolicyRule
	}{
		{"subset", []rbacv1.PolicyRule{podsRead}, []rbacv1.PolicyRule{rule([]string{"get"}, core, "pods")}, nil},
		{"other verb", []rbacv1.PolicyRule{podsRead}, []rbacv1.PolicyRule{rule([]string{"get", "delete"}, core, "pods")},
			[]rbacv1.PolicyRule{rule([]string{"delete"}, core, "pods")}},
		{"a wildcard needs a wildcard", []rbacv1.PolicyRule{podsRead}, []rbacv1.PolicyRule{rule([]string{"get"}, core, "*")},
			[]rbacv1.PolicyRule{rule([]string{"get"}, core, "*")}},
		{"everything covers everything", fullAuthority, []rbacv1.PolicyRule{rule([]string{"*"}, groups("*"), "*"), urlRule([]string{"get"}, "/metrics")}, nil},
		{"names are covered by the resource", []rbacv1.PolicyRule{podsRead},
			[]rbacv1.PolicyRule{{Verbs: []string{"get"}, APIGroups: core, Resources: []string{"pods"}, ResourceNames: []string{"a"}}}, nil},
		{"a named grant does not cover all names",
			[]rbacv1.PolicyRule{{Verbs: []string{"get"}, APIGroups: core, Resources: []string{"pods"}, ResourceNames: []string{"a"}}},
			[]rbacv1.PolicyRule{rule([]string{"get"}, core, "pods")},
			[]rbacv1.PolicyRule{rule([]string{"get"}, core, "pods")}},
		{"subresources", []rbacv1.PolicyRule{rule([]string{"get"}, groups("*"), "*/status")},
			[]rbacv1.PolicyRule{rule([]string{"get"}, core, "pods/status", "pods/log")},
			[]rbacv1.PolicyRule{rule([]string{"get"}, core, "pods/log")}},
		{"URL prefixes", []rbacv1.PolicyRule{urlRule([]string{"get"}, "/apis/*")},
			[]rbacv1.PolicyRule{urlRule([]string{"get"}, "/apis/apps", "/metrics")},
			[]rbacv1.PolicyRule{urlRule([]string{"get"}, "/metrics")}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := Uncovered(tt.owned, tt.wanted); !reflect.DeepEqual(got, tt.want) {
				t.Errorf("Uncovered = %+v, want %+v", got, tt.want)
			}
		})
	}
	if got := describeRule(rule([]string{"get", "list"}, core, "secrets")); got != `{APIGroups:[""], Resources:["secrets"], Verbs:["get" "list"]}` {
		t.Errorf("describeRule = %s", got)
	}
}
