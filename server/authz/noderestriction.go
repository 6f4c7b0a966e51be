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

// NodeGetter reads Nodes from a cache; informer.Lister[*corev1.Node] is one.
type NodeGetter interface {
	Get(namespace, name string) (*corev1.Node, bool)
}

// mirrorPodAnnotation marks a pod as the API mirror of a node's static pod.
const mirrorPodAnnotation = "kubernetes.io/config.mirror"

// AttachNodeRestriction adds the part of Kubernetes' NodeRestriction
// admission plugin the node authorizer cannot do, because the name of a
// created object is in the body: a node creates only its own Node, its
// own Lease, and mirror pods of its static pods (checked against nodes).
func (c *Cluster) AttachNodeRestriction(table *registry.Table) error {
	nodes := table.Lookup(corev1.SchemeGroupVersion, "nodes")
	leases := table.Lookup(coordinationv1.SchemeGroupVersion, "leases")
	pods := table.Lookup(corev1.SchemeGroupVersion, "pods")
	if nodes == nil || leases == nil || pods == nil {
		return fmt.Errorf("authz: nodes, leases or pods are not in the table")
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
	guardCreates(pods, func(_ context.Context, u apiserver.UserInfo, obj runtime.Object) error {
		node, ok := NodeName(u)
		if !ok {
			return nil
		}
		pod := obj.(*corev1.Pod)
		if err := admitMirrorPod(node, pod, c.nodes); err != nil {
			return apierrors.NewForbidden(corev1.Resource("pods"), pod.Name, err)
		}
		return nil
	})
	return nil
}

// admitMirrorPod is NodeRestriction's check of a pod a node creates: only
// a mirror pod, bound to the node, owned (if at all) by the node itself
// as its controller, and referring to no other API object, since a node
// could otherwise read any secret by creating a pod that names it.
func admitMirrorPod(node string, pod *corev1.Pod, nodes NodeGetter) error {
	if _, mirror := pod.Annotations[mirrorPodAnnotation]; !mirror {
		return fmt.Errorf("pod does not have %q annotation, node %q can only create mirror pods", mirrorPodAnnotation, node)
	}
	if pod.Spec.NodeName != node {
		return fmt.Errorf("node %q can only create pods with spec.nodeName set to itself", node)
	}
	if len(pod.OwnerReferences) > 1 {
		return fmt.Errorf("node %q can only create pods with a single owner reference set to itself", node)
	}
	if len(pod.OwnerReferences) == 1 {
		owner := pod.OwnerReferences[0]
		if owner.APIVersion != corev1.SchemeGroupVersion.String() || owner.Kind != "Node" || owner.Name != node {
			return fmt.Errorf("node %q can only create pods with an owner reference set to itself", node)
		}
		if owner.Controller == nil || !*owner.Controller {
			return fmt.Errorf("node %q can only create pods with a controller owner reference set to itself", node)
		}
		if owner.BlockOwnerDeletion != nil && *owner.BlockOwnerDeletion {
			return fmt.Errorf("node %q must not set blockOwnerDeletion on an owner reference", node)
		}
		n, ok := nodes.Get("", node)
		if !ok {
			return fmt.Errorf("error looking up node %s to verify uid: node %q not found", node, node)
		}
		if owner.UID != n.UID {
			return fmt.Errorf("node %s UID mismatch: expected %s got %s", node, owner.UID, n.UID)
		}
	}
	if pod.Spec.ServiceAccountName != "" {
		return fmt.Errorf("node %q can not create pods that reference a service account", node)
	}
	var refErr error
	visitPodReferences(pod, func(kind refKind, _ string) bool {
		switch kind {
		case refSecret:
			refErr = fmt.Errorf("node %q can not create pods that reference secrets", node)
		case refConfigMap:
			refErr = fmt.Errorf("node %q can not create pods that reference configmaps", node)
		case refClaim:
			refErr = fmt.Errorf("node %q can not create pods that reference persistentvolumeclaims", node)
		}
		return refErr == nil
	})
	return refErr
}
