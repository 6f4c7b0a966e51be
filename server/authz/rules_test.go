package authz

import (
	"testing"

	rbacv1 "k8s.io/api/rbac/v1"

	"github.com/orch-dev/orch/server/apiserver"
)

func resourceAttrs(verb, group, resource, sub, ns, name string) apiserver.Attributes {
	return apiserver.Attributes{Verb: verb, ResourceRequest: true, APIGroup: group, Resource: resource, Subresource: sub, Namespace: ns, Name: name}
}

func TestRuleAllows(t *testing.T) {
	pods := rbacv1.PolicyRule{Verbs: []string{"get", "list"}, APIGroups: []string{""}, Resources: []string{"pods"}}
	tests := []struct {
		name string
		rule rbacv1.PolicyRule
		a    apiserver.Attributes
		want bool
	}{
		{"verb and resource match", pods, resourceAttrs("list", "", "pods", "", "default", ""), true},
		{"other verb", pods, resourceAttrs("delete", "", "pods", "", "default", "p"), false},
		{"other group", pods, resourceAttrs("get", "apps", "pods", "", "default", "p"), false},
		{"subresource needs its own entry", pods, resourceAttrs("get", "", "pods", "log", "default", "p"), false},
		{"res/sub matches the subresource",
			rbacv1.PolicyRule{Verbs: []string{"get"}, APIGroups: []string{""}, Resources: []string{"pods/log"}},
			resourceAttrs("get", "", "pods", "log", "default", "p"), true},
		{"res/sub does not grant the resource",
			rbacv1.PolicyRule{Verbs: []string{"get"}, APIGroups: []string{""}, Resources: []string{"pods/log"}},
			resourceAttrs("get", "", "pods", "", "default", "p"), false},
		{"*/sub matches any resource's subresource",
			rbacv1.PolicyRule{Verbs: []string{"update"}, APIGroups: []string{"*"}, Resources: []string{"*/status"}},
			resourceAttrs("update", "apps", "deployments", "status", "default", "d"), true},
		{"*/sub does not match another subresource",
			rbacv1.PolicyRule{Verbs: []string{"update"}, APIGroups: []string{"*"}, Resources: []string{"*/status"}},
			resourceAttrs("update", "apps", "deployments", "scale", "default", "d"), false},
		{"wildcards", rbacv1.PolicyRule{Verbs: []string{"*"}, APIGroups: []string{"*"}, Resources: []string{"*"}},
			resourceAttrs("deletecollection", "batch", "jobs", "", "x", ""), true},
		{"wildcard resource includes subresources", rbacv1.PolicyRule{Verbs: []string{"*"}, APIGroups: []string{"*"}, Resources: []string{"*"}},
			resourceAttrs("create", "", "pods", "exec", "x", "p"), true},
		{"resourceNames match the name",
			rbacv1.PolicyRule{Verbs: []string{"get"}, APIGroups: []string{""}, Resources: []string{"configmaps"}, ResourceNames: []string{"a"}},
			resourceAttrs("get", "", "configmaps", "", "default", "a"), true},
		{"resourceNames exclude other names",
			rbacv1.PolicyRule{Verbs: []string{"get"}, APIGroups: []string{""}, Resources: []string{"configmaps"}, ResourceNames: []string{"a"}},
			resourceAttrs("get", "", "configmaps", "", "default", "b"), false},
		{"resourceNames never grant a list of everything",
			rbacv1.PolicyRule{Verbs: []string{"list"}, APIGroups: []string{""}, Resources: []string{"configmaps"}, ResourceNames: []string{"a"}},
			resourceAttrs("list", "", "configmaps", "", "default", ""), false},
		{"resource rule does not grant a path", pods, apiserver.Attributes{Verb: "get", Path: "/api"}, false},
		{"exact URL", rbacv1.PolicyRule{Verbs: []string{"get"}, NonResourceURLs: []string{"/version"}},
			apiserver.Attributes{Verb: "get", Path: "/version"}, true},
		{"URL prefix", rbacv1.PolicyRule{Verbs: []string{"get"}, NonResourceURLs: []string{"/apis/*"}},
			apiserver.Attributes{Verb: "get", Path: "/apis/apps/v1"}, true},
		{"URL prefix is not the bare path", rbacv1.PolicyRule{Verbs: []string{"get"}, NonResourceURLs: []string{"/apis/*"}},
			apiserver.Attributes{Verb: "get", Path: "/apis"}, false},
		{"any URL", rbacv1.PolicyRule{Verbs: []string{"*"}, NonResourceURLs: []string{"*"}},
			apiserver.Attributes{Verb: "post", Path: "/anything"}, true},
		{"URL rule does not grant resources", rbacv1.PolicyRule{Verbs: []string{"*"}, NonResourceURLs: []string{"*"}},
			resourceAttrs("get", "", "pods", "", "default", "p"), false},
		{"URL verb must match", rbacv1.PolicyRule{Verbs: []string{"get"}, NonResourceURLs: []string{"/metrics"}},
			apiserver.Attributes{Verb: "post", Path: "/metrics"}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := RuleAllows(tt.a, &tt.rule); got != tt.want {
				t.Errorf("RuleAllows(%+v, %+v) = %v, want %v", tt.a, tt.rule, got, tt.want)
			}
		})
	}
}
