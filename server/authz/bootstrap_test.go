package authz

import (
	"context"
	"slices"
	"testing"

	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"

	"github.com/orch-dev/orch/server/apiserver"
	"github.com/orch-dev/orch/server/join"
)

// The user-facing roles come out of aggregation with what users of each
// expect, before the aggregation controller has run.
func TestAggregatedBootstrapRoles(t *testing.T) {
	roles, err := aggregatedBootstrapRoles()
	if err != nil {
		t.Fatal(err)
	}
	byName := map[string]int{}
	for i, r := range roles {
		byName[r.Name] = i
	}
	u := apiserver.UserInfo{Name: "someone"}
	top := apiserver.Attributes{User: u, Verb: "list", ResourceRequest: true, APIGroup: "metrics.k8s.io", Resource: "pods", Namespace: "default"}
	secrets := apiserver.Attributes{User: u, Verb: "get", ResourceRequest: true, Resource: "secrets", Namespace: "default"}
	for _, tt := range []struct {
		role string
		a    apiserver.Attributes
		want bool
	}{
		{"view", top, true},
		{"edit", top, true},
		{"admin", top, true},
		{"view", secrets, false},
		{"edit", secrets, true},
	} {
		i, ok := byName[tt.role]
		if !ok {
			t.Fatalf("no bootstrap role %q", tt.role)
		}
		if got := RulesAllow(tt.a, roles[i].Rules...); got != tt.want {
			t.Errorf("%s allows %s %s/%s = %v, want %v", tt.role, tt.a.Verb, tt.a.APIGroup, tt.a.Resource, got, tt.want)
		}
	}
}

// memClient is a Client over a map of cluster-scoped objects by
// resource and name.
type memClient map[string]runtime.Object

func (m memClient) key(gvr schema.GroupVersionResource, name string) string {
	return gvr.Resource + "/" + name
}

func (m memClient) Get(_ context.Context, gvr schema.GroupVersionResource, _, name string) (runtime.Object, error) {
	if obj, ok := m[m.key(gvr, name)]; ok {
		return obj.DeepCopyObject(), nil
	}
	return nil, apierrors.NewNotFound(gvr.GroupResource(), name)
}

func (m memClient) Create(_ context.Context, gvr schema.GroupVersionResource, obj runtime.Object, _ string) (runtime.Object, error) {
	name := obj.(metav1.Object).GetName()
	if _, ok := m[m.key(gvr, name)]; ok {
		return nil, apierrors.NewAlreadyExists(gvr.GroupResource(), name)
	}
	m[m.key(gvr, name)] = obj.DeepCopyObject()
	return obj, nil
}

func (m memClient) Update(_ context.Context, gvr schema.GroupVersionResource, obj runtime.Object, _, _ string) (runtime.Object, error) {
	m[m.key(gvr, obj.(metav1.Object).GetName())] = obj.DeepCopyObject()
	return obj, nil
}

func (m memClient) Delete(_ context.Context, gvr schema.GroupVersionResource, _, name string, _ *metav1.DeleteOptions) (bool, error) {
	if _, ok := m[m.key(gvr, name)]; !ok {
		return false, apierrors.NewNotFound(gvr.GroupResource(), name)
	}
	delete(m, m.key(gvr, name))
	return true, nil
}

// An upgraded cluster loses the grants earlier versions gave nodes (the
// reconcile otherwise only adds), unless an admin opted out of updates.
func TestEnsureBootstrapPolicyWithdrawsRetiredGrants(t *testing.T) {
	ctx := context.Background()
	nodes := group(join.NodesGroup)
	old := func(name, role string, subjects ...rbacv1.Subject) *rbacv1.ClusterRoleBinding {
		b := binding(name, role, subjects...)
		setBootstrapMeta(&b.ObjectMeta)
		return &b
	}
	c := memClient{}
	c[c.key(clusterRoleBindingsGVR, "orch:node-proxier")] = old("orch:node-proxier", "system:node-proxier", nodes)
	c[c.key(clusterRoleBindingsGVR, "orch:network-policy")] = old("orch:network-policy", "orch:network-policy", nodes)
	if err := EnsureBootstrapPolicy(ctx, c); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Get(ctx, clusterRoleBindingsGVR, "", "orch:node-proxier"); !apierrors.IsNotFound(err) {
		t.Errorf("orch:node-proxier: err %v, want it deleted", err)
	}
	live, err := c.Get(ctx, clusterRoleBindingsGVR, "", "orch:network-policy")
	if err != nil {
		t.Fatal(err)
	}
	if got, want := live.(*rbacv1.ClusterRoleBinding).Subjects, []rbacv1.Subject{userSubject(join.NetworkPolicyUser)}; !slices.Equal(got, want) {
		t.Errorf("orch:network-policy subjects %v, want %v", got, want)
	}

	// autoupdate=false: the admin's binding stays as it is.
	kept := old("orch:node-proxier", "system:node-proxier", nodes)
	kept.Annotations[autoUpdateKey] = "false"
	c[c.key(clusterRoleBindingsGVR, "orch:node-proxier")] = kept
	if err := EnsureBootstrapPolicy(ctx, c); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Get(ctx, clusterRoleBindingsGVR, "", "orch:node-proxier"); err != nil {
		t.Errorf("opted-out binding: %v", err)
	}
}
