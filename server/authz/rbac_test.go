package authz

import (
	"context"
	"strings"
	"testing"

	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/orch-dev/orch/server/apiserver"
)

// staticPolicy is a PolicySource over fixed objects.
type staticPolicy struct {
	clusterRoles        []*rbacv1.ClusterRole
	clusterRoleBindings []*rbacv1.ClusterRoleBinding
	roles               []*rbacv1.Role
	roleBindings        []*rbacv1.RoleBinding
}

func (p *staticPolicy) ClusterRoleBindings() []*rbacv1.ClusterRoleBinding {
	return p.clusterRoleBindings
}

func (p *staticPolicy) RoleBindings(ns string) []*rbacv1.RoleBinding {
	var out []*rbacv1.RoleBinding
	for _, b := range p.roleBindings {
		if b.Namespace == ns {
			out = append(out, b)
		}
	}
	return out
}

func (p *staticPolicy) ClusterRole(name string) (*rbacv1.ClusterRole, bool) {
	for _, r := range p.clusterRoles {
		if r.Name == name {
			return r, true
		}
	}
	return nil, false
}

func (p *staticPolicy) Role(ns, name string) (*rbacv1.Role, bool) {
	for _, r := range p.roles {
		if r.Namespace == ns && r.Name == name {
			return r, true
		}
	}
	return nil, false
}

func testPolicy() *staticPolicy {
	p := &staticPolicy{
		roles: []*rbacv1.Role{{
			ObjectMeta: metav1.ObjectMeta{Namespace: "team", Name: "pod-reader"},
			Rules:      []rbacv1.PolicyRule{rule(readVerbs, core, "pods")},
		}},
		roleBindings: []*rbacv1.RoleBinding{
			{
				ObjectMeta: metav1.ObjectMeta{Namespace: "team", Name: "sa-reads-pods"},
				RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "Role", Name: "pod-reader"},
				// No namespace: the binding's own.
				Subjects: []rbacv1.Subject{{Kind: rbacv1.ServiceAccountKind, Name: "robot"}},
			},
			{
				ObjectMeta: metav1.ObjectMeta{Namespace: "team", Name: "alice-edits"},
				RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: "edit"},
				Subjects:   []rbacv1.Subject{{Kind: rbacv1.UserKind, APIGroup: rbacv1.GroupName, Name: "alice"}},
			},
			{
				ObjectMeta: metav1.ObjectMeta{Namespace: "team", Name: "dangling"},
				RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "Role", Name: "missing"},
				Subjects:   []rbacv1.Subject{{Kind: rbacv1.UserKind, APIGroup: rbacv1.GroupName, Name: "carol"}},
			},
		},
	}
	roles, err := aggregatedBootstrapRoles()
	if err != nil {
		panic(err)
	}
	for i := range roles {
		p.clusterRoles = append(p.clusterRoles, &roles[i])
	}
	bindings := BootstrapClusterRoleBindings()
	for i := range bindings {
		p.clusterRoleBindings = append(p.clusterRoleBindings, &bindings[i])
	}
	return p
}

func TestRBAC(t *testing.T) {
	robot := apiserver.UserInfo{Name: "system:serviceaccount:team:robot",
		Groups: []string{"system:serviceaccounts", "system:serviceaccounts:team", "system:authenticated"}}
	otherRobot := apiserver.UserInfo{Name: "system:serviceaccount:other:robot",
		Groups: []string{"system:serviceaccounts", "system:serviceaccounts:other", "system:authenticated"}}
	alice := apiserver.UserInfo{Name: "alice", Groups: []string{"system:authenticated"}}
	carol := apiserver.UserInfo{Name: "carol", Groups: []string{"system:authenticated"}}
	node := apiserver.UserInfo{Name: "system:node:n1", Groups: []string{"system:nodes", "system:authenticated"}}
	kubeProxy := apiserver.UserInfo{Name: "system:kube-proxy", Groups: []string{"system:authenticated"}}
	with := func(u apiserver.UserInfo, a apiserver.Attributes) apiserver.Attributes { a.User = u; return a }

	tests := []struct {
		name       string
		a          apiserver.Attributes
		want       apiserver.Decision
		wantReason string
	}{
		{"service account lists pods in its namespace", with(robot, resourceAttrs("list", "", "pods", "", "team", "")), apiserver.DecisionAllow,
			`RBAC: allowed by RoleBinding "team/sa-reads-pods" of Role "pod-reader" to ServiceAccount "team/robot"`},
		{"service account may not list pods elsewhere", with(robot, resourceAttrs("list", "", "pods", "", "default", "")), apiserver.DecisionNoOpinion, ""},
		{"service account may not list pods cluster-wide", with(robot, resourceAttrs("list", "", "pods", "", "", "")), apiserver.DecisionNoOpinion, ""},
		{"service account may not read secrets", with(robot, resourceAttrs("get", "", "secrets", "", "team", "s")), apiserver.DecisionNoOpinion, ""},
		{"service account may not delete pods", with(robot, resourceAttrs("delete", "", "pods", "", "team", "p")), apiserver.DecisionNoOpinion, ""},
		{"same name in another namespace is another account", with(otherRobot, resourceAttrs("list", "", "pods", "", "team", "")), apiserver.DecisionNoOpinion, ""},
		{"aggregated edit grants deployments", with(alice, resourceAttrs("create", "apps", "deployments", "", "team", "")), apiserver.DecisionAllow, ""},
		{"aggregated edit includes view", with(alice, resourceAttrs("get", "apps", "deployments", "status", "team", "d")), apiserver.DecisionAllow, ""},
		{"edit does not grant roles", with(alice, resourceAttrs("create", "rbac.authorization.k8s.io", "roles", "", "team", "")), apiserver.DecisionNoOpinion, ""},
		{"discovery for everyone", with(alice, apiserver.Attributes{Verb: "get", Path: "/apis/apps/v1"}), apiserver.DecisionAllow, ""},
		{"self reviews for everyone", with(carol, resourceAttrs("create", "authorization.k8s.io", "selfsubjectaccessreviews", "", "", "")), apiserver.DecisionAllow, ""},
		{"missing role is reported", with(carol, resourceAttrs("get", "", "pods", "", "team", "p")), apiserver.DecisionNoOpinion,
			`RBAC: role.rbac.authorization.k8s.io "missing" not found`},
		{"nodes read no services themselves", with(node, resourceAttrs("watch", "", "services", "", "", "")), apiserver.DecisionNoOpinion, ""},
		{"nodes impersonate kube-proxy", with(node, resourceAttrs("impersonate", "", "users", "", "", "system:kube-proxy")), apiserver.DecisionAllow, ""},
		{"nodes impersonate the network policy reader", with(node, resourceAttrs("impersonate", "", "users", "", "", "system:orch:network-policy")), apiserver.DecisionAllow, ""},
		{"nodes impersonate nobody else", with(node, resourceAttrs("impersonate", "", "users", "", "", "system:admin")), apiserver.DecisionNoOpinion, ""},
		{"kube-proxy reads services", with(kubeProxy, resourceAttrs("watch", "", "services", "", "", "")), apiserver.DecisionAllow, ""},
		{"kube-proxy reads no pods", with(kubeProxy, resourceAttrs("list", "", "pods", "", "", "")), apiserver.DecisionNoOpinion, ""},
		{"nodes get no secrets from RBAC", with(node, resourceAttrs("get", "", "secrets", "", "team", "s")), apiserver.DecisionNoOpinion, ""},
	}
	az := NewRBAC(testPolicy())
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d, reason, err := az.Authorize(context.Background(), tt.a)
			if err != nil {
				t.Fatal(err)
			}
			if d != tt.want {
				t.Errorf("decision = %v (%q), want %v", d, reason, tt.want)
			}
			if tt.wantReason != "" && reason != tt.wantReason {
				t.Errorf("reason = %q, want %q", reason, tt.wantReason)
			}
		})
	}
}

func TestRBACRulesFor(t *testing.T) {
	az := NewRBAC(testPolicy())
	u := apiserver.UserInfo{Name: "system:serviceaccount:team:robot", Groups: []string{"system:authenticated"}}
	rules, incomplete := az.RulesFor(u, "team")
	if len(incomplete) != 0 {
		t.Errorf("incomplete = %v", incomplete)
	}
	var sawPods, sawDiscovery bool
	for _, r := range rules {
		if len(r.Resources) == 1 && r.Resources[0] == "pods" && strings.Join(r.Verbs, ",") == "get,list,watch" {
			sawPods = true
		}
		for _, u := range r.NonResourceURLs {
			sawDiscovery = sawDiscovery || u == "/apis/*"
		}
	}
	if !sawPods || !sawDiscovery {
		t.Errorf("rules %+v lack the pod-reader role or discovery", rules)
	}
	if _, incomplete := az.RulesFor(apiserver.UserInfo{Name: "carol"}, "team"); len(incomplete) != 1 {
		t.Errorf("a binding of a missing role should make the rules incomplete, got %v", incomplete)
	}
}

func TestUnion(t *testing.T) {
	masters := apiserver.UserInfo{Name: "admin", Groups: []string{"system:masters"}}
	nobody := apiserver.UserInfo{Name: "nobody", Groups: []string{"system:authenticated"}}
	authorize := Union(Masters{}, NewNode(fakePods{}, fakeClaims{}), NewRBAC(testPolicy()))
	a := resourceAttrs("delete", "", "nodes", "", "", "n1")
	a.User = masters
	if d, _, _ := authorize(context.Background(), a); d != apiserver.DecisionAllow {
		t.Errorf("system:masters: %v, want Allow", d)
	}
	a.User = nobody
	if d, _, _ := authorize(context.Background(), a); d == apiserver.DecisionAllow {
		t.Errorf("nobody may delete nodes, got %v", d)
	}
}
