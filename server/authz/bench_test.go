package authz

import (
	"context"
	"fmt"
	"testing"

	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/orch-dev/orch/server/apiserver"
)

// BenchmarkRBACAuthorize: a service account allowed by a RoleBinding in
// a namespace with 100 other bindings, beside the bootstrap policy.
func BenchmarkRBACAuthorize(b *testing.B) {
	p := testPolicy()
	for i := range 100 {
		p.roleBindings = append(p.roleBindings, &rbacv1.RoleBinding{
			ObjectMeta: metav1.ObjectMeta{Namespace: "team", Name: fmt.Sprintf("other-%d", i)},
			RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: "edit"},
			Subjects:   []rbacv1.Subject{{Kind: rbacv1.UserKind, APIGroup: rbacv1.GroupName, Name: fmt.Sprintf("user-%d", i)}},
		})
	}
	az := NewRBAC(p)
	a := resourceAttrs("list", "", "pods", "", "team", "")
	a.User = apiserver.UserInfo{Name: "system:serviceaccount:team:robot", Groups: []string{"system:serviceaccounts", "system:authenticated"}}
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		if d, _, _ := az.Authorize(ctx, a); d != apiserver.DecisionAllow {
			b.Fatal("not allowed")
		}
	}
}
