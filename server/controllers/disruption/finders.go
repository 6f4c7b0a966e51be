package disruption

import (
	"context"
	"fmt"
	"slices"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"

	"github.com/orch-dev/orch/server/registry"
)

// scaled is a pod controller and its desired replicas.
type scaled struct {
	uid      types.UID
	replicas int32
}

// finder returns the controller ref names with its scale, nil if ref is
// not its kind or does not exist (any more).
type finder func(ctx context.Context, ref *metav1.OwnerReference, namespace string) (*scaled, error)

// expectedScale sums the scales of the controllers of pods, each counted
// once. Pods without a controller are returned by name; a pod whose
// controller cannot be found is an error.
func (c *Controller) expectedScale(ctx context.Context, pods []*corev1.Pod) (int32, []string, error) {
	scales := map[types.UID]int32{}
	var unmanaged []string
	finders := []finder{c.replicaSetFinder, c.deploymentFinder, c.rcFinder, c.statefulSetFinder, c.scaleFinder}
	for _, pod := range pods {
		ref := metav1.GetControllerOf(pod)
		if ref == nil {
			unmanaged = append(unmanaged, pod.Name)
			continue
		}
		if _, seen := scales[ref.UID]; seen {
			continue
		}
		found := false
		for _, find := range finders {
			s, err := find(ctx, ref, pod.Namespace)
			if err != nil {
				return 0, nil, err
			}
			if s != nil {
				// Keyed by the counted controller's uid: a ReplicaSet's
				// pods all count their Deployment once.
				scales[s.uid] = s.replicas
				found = true
				break
			}
		}
		if !found {
			return 0, nil, fmt.Errorf("found no controllers for pod %q", pod.Name)
		}
	}
	var expected int32
	for _, n := range scales {
		expected += n
	}
	return expected, unmanaged, nil
}

// isKind reports whether ref is of kind in one of groups.
func isKind(ref *metav1.OwnerReference, kind string, groups ...string) (bool, error) {
	gv, err := schema.ParseGroupVersion(ref.APIVersion)
	if err != nil {
		return false, fmt.Errorf("owner reference %s/%s: %w", ref.Kind, ref.Name, err)
	}
	return ref.Kind == kind && slices.Contains(groups, gv.Group), nil
}

func replicasOrOne(p *int32) int32 {
	if p == nil {
		return 1
	}
	return *p
}

// replicasOf is a workload's spec.replicas (-1 for other objects).
func replicasOf(obj runtime.Object) int32 {
	switch o := obj.(type) {
	case *appsv1.ReplicaSet:
		return replicasOrOne(o.Spec.Replicas)
	case *appsv1.Deployment:
		return replicasOrOne(o.Spec.Replicas)
	case *appsv1.StatefulSet:
		return replicasOrOne(o.Spec.Replicas)
	case *corev1.ReplicationController:
		return replicasOrOne(o.Spec.Replicas)
	}
	return -1
}

// replicaSet returns the ReplicaSet ref names, if it is one and exists.
func (c *Controller) replicaSet(ref *metav1.OwnerReference, namespace string) (*appsv1.ReplicaSet, error) {
	if !c.hasLister[replicaSetsGVR] {
		return nil, nil
	}
	ok, err := isKind(ref, "ReplicaSet", "apps", "extensions")
	if !ok || err != nil {
		return nil, err
	}
	rs, found := c.replicaSets.Get(namespace, ref.Name)
	if !found || rs.UID != ref.UID {
		return nil, nil
	}
	return rs, nil
}

// replicaSetFinder counts a ReplicaSet that no Deployment controls.
func (c *Controller) replicaSetFinder(_ context.Context, ref *metav1.OwnerReference, namespace string) (*scaled, error) {
	rs, err := c.replicaSet(ref, namespace)
	if rs == nil || err != nil {
		return nil, err
	}
	if owner := metav1.GetControllerOf(rs); owner != nil && owner.Kind == "Deployment" {
		return nil, nil
	}
	return &scaled{uid: rs.UID, replicas: replicasOrOne(rs.Spec.Replicas)}, nil
}

// deploymentFinder counts the Deployment controlling a pod's ReplicaSet:
// during a rollout the pods of all its ReplicaSets share its one scale.
func (c *Controller) deploymentFinder(_ context.Context, ref *metav1.OwnerReference, namespace string) (*scaled, error) {
	rs, err := c.replicaSet(ref, namespace)
	if rs == nil || err != nil || !c.hasLister[deploymentsGVR] {
		return nil, err
	}
	owner := metav1.GetControllerOf(rs)
	if owner == nil {
		return nil, nil
	}
	if ok, err := isKind(owner, "Deployment", "apps", "extensions"); !ok || err != nil {
		return nil, err
	}
	d, found := c.deployments.Get(namespace, owner.Name)
	if !found || d.UID != owner.UID {
		return nil, nil
	}
	return &scaled{uid: d.UID, replicas: replicasOrOne(d.Spec.Replicas)}, nil
}

func (c *Controller) rcFinder(_ context.Context, ref *metav1.OwnerReference, namespace string) (*scaled, error) {
	if !c.hasLister[rcsGVR] {
		return nil, nil
	}
	if ok, err := isKind(ref, "ReplicationController", ""); !ok || err != nil {
		return nil, err
	}
	rc, found := c.rcs.Get(namespace, ref.Name)
	if !found || rc.UID != ref.UID {
		return nil, nil
	}
	return &scaled{uid: rc.UID, replicas: replicasOrOne(rc.Spec.Replicas)}, nil
}

func (c *Controller) statefulSetFinder(_ context.Context, ref *metav1.OwnerReference, namespace string) (*scaled, error) {
	if !c.hasLister[statefulSetsGVR] {
		return nil, nil
	}
	if ok, err := isKind(ref, "StatefulSet", "apps"); !ok || err != nil {
		return nil, err
	}
	ss, found := c.statefulSets.Get(namespace, ref.Name)
	if !found || ss.UID != ref.UID {
		return nil, nil
	}
	return &scaled{uid: ss.UID, replicas: replicasOrOne(ss.Spec.Replicas)}, nil
}

// scaleFinder counts any other controller kind through its scale
// subresource's view (spec.replicas), e.g. a custom resource.
func (c *Controller) scaleFinder(ctx context.Context, ref *metav1.OwnerReference, namespace string) (*scaled, error) {
	gv, err := schema.ParseGroupVersion(ref.APIVersion)
	if err != nil {
		return nil, fmt.Errorf("owner reference %s/%s: %w", ref.Kind, ref.Name, err)
	}
	gk := schema.GroupKind{Group: gv.Group, Kind: ref.Kind}
	res := c.scaleKinds[gk]
	if res == nil {
		if r := c.servedKind(gk); r != nil {
			return nil, fmt.Errorf("%s does not implement the scale subresource", r.GroupVersionResource().GroupResource())
		}
		return nil, fmt.Errorf("no matches for kind %q in group %q", gk.Kind, gk.Group)
	}
	obj, err := c.api.Get(ctx, res.GroupVersionResource(), namespace, ref.Name)
	if apierrors.IsNotFound(err) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("get %s %s/%s: %w", gk, namespace, ref.Name, err)
	}
	u, err := runtime.DefaultUnstructuredConverter.ToUnstructured(obj)
	if err != nil {
		return nil, fmt.Errorf("read scale of %s %s/%s: %w", gk, namespace, ref.Name, err)
	}
	if uid, _, _ := unstructured.NestedString(u, "metadata", "uid"); types.UID(uid) != ref.UID {
		return nil, nil
	}
	// As the API server's scale subresource: a missing spec.replicas is 1.
	replicas, found, err := unstructured.NestedInt64(u, "spec", "replicas")
	if err != nil {
		return nil, fmt.Errorf("read scale of %s %s/%s: %w", gk, namespace, ref.Name, err)
	}
	if !found {
		replicas = 1
	}
	return &scaled{uid: ref.UID, replicas: int32(replicas)}, nil
}

// servedKind returns a resource serving gk, nil if none does.
func (c *Controller) servedKind(gk schema.GroupKind) *registry.Resource {
	for _, r := range c.api.Resources() {
		if r.GroupVersion.Group == gk.Group && r.Kind == gk.Kind {
			return r
		}
	}
	return nil
}
