package authz

import (
	"context"
	"fmt"

	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/runtime"

	"github.com/orch-dev/orch/server/apiserver"
	"github.com/orch-dev/orch/server/registry"
)

// AttachNodeRestriction adds the part of Kubernetes' NodeRestriction
// admission plugin the node authorizer cannot do, because the name of a
// created object is in the body: a node creates only its own Node and its
// own Lease.
func AttachNodeRestriction(table *registry.Table) error {
	nodes := table.Lookup(corev1.SchemeGroupVersion, "nodes")
	leases := table.Lookup(coordinationv1.SchemeGroupVersion, "leases")
	if nodes == nil || leases == nil {
		return fmt.Errorf("authz: nodes or leases are not in the table")
	}
	guardWrites(nodes, func(_ context.Context, u apiserver.UserInfo, obj runtime.Object) error {
		node, ok := NodeName(u)
		if n := obj.(*corev1.Node); ok && n.Name != node {
			return apierrors.NewForbidden(corev1.Resource("nodes"), n.Name, fmt.Errorf("node %q is not allowed to modify node %q", node, n.Name))
		}
		return nil
	})
	guardWrites(leases, func(_ context.Context, u apiserver.UserInfo, obj runtime.Object) error {
		node, ok := NodeName(u)
		if l := obj.(*coordinationv1.Lease); ok && (l.Name != node || l.Namespace != nodeLeaseNamespace) {
			return apierrors.NewForbidden(coordinationv1.Resource("leases"), l.Name, fmt.Errorf("can only access node lease with the same name as the requesting node"))
		}
		return nil
	})
	return nil
}
