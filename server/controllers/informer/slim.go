package informer

import (
	"context"
	"fmt"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
)

var podsGVR = corev1.SchemeGroupVersion.WithResource("pods")

// SlimPod is the transform of the Factory's typed pod informer, which the
// scheduler and most controllers share. Pods are by far the most numerous
// objects, and most of a pod's spec is for the kubelet only: it drops, per
// container, the command, args, env, working dir, probes, lifecycle hooks,
// volume mounts and devices, termination message settings and security
// context; the ephemeral containers; and the volumes other than
// persistentVolumeClaim and ephemeral ones (the scheduler and the volume
// and StatefulSet controllers look at claims only). Containers keep their
// name, image, ports, resources, resize and restart policies: what
// scheduling, endpoints, autoscaling and sidecar logic read. Metadata and
// status are kept whole, so status writes from the cache lose nothing (the
// API keeps the spec of a status update); a full update must first take
// the live spec back (WithLiveSpec).
//
// As client-go's informer transforms, it runs once per object before the
// object is cached; the object given is not modified (the result is a
// shallow copy with fresh container and volume slices). Other objects pass
// through unchanged.
func SlimPod(obj runtime.Object) runtime.Object {
	in, ok := obj.(*corev1.Pod)
	if !ok {
		return obj
	}
	pod := *in
	pod.Spec.InitContainers = slimContainers(in.Spec.InitContainers)
	pod.Spec.Containers = slimContainers(in.Spec.Containers)
	pod.Spec.EphemeralContainers = nil
	var volumes []corev1.Volume
	for _, v := range in.Spec.Volumes {
		if v.PersistentVolumeClaim != nil || v.Ephemeral != nil {
			volumes = append(volumes, v)
		}
	}
	pod.Spec.Volumes = volumes
	return &pod
}

func slimContainers(in []corev1.Container) []corev1.Container {
	if in == nil {
		return nil
	}
	out := make([]corev1.Container, len(in))
	for i := range in {
		c := &in[i]
		out[i] = corev1.Container{
			Name:          c.Name,
			Image:         c.Image,
			Ports:         c.Ports,
			Resources:     c.Resources,
			ResizePolicy:  c.ResizePolicy,
			RestartPolicy: c.RestartPolicy,
		}
	}
	return out
}

// Getter reads one object from the API.
type Getter interface {
	Get(ctx context.Context, gvr schema.GroupVersionResource, namespace, name string) (runtime.Object, error)
}

// WithLiveSpec prepares a full update of pod, a modified copy of a pod
// read from a SlimPod cache: it returns pod with the spec of the pod as
// the API holds it, so that the update changes only what the caller
// changed (metadata). pod's resourceVersion is kept: if the pod changed
// since the cache read it, the update fails with a conflict, as it would
// have without the transform.
func WithLiveSpec(ctx context.Context, api Getter, pod *corev1.Pod) (*corev1.Pod, error) {
	obj, err := api.Get(ctx, podsGVR, pod.Namespace, pod.Name)
	if err != nil {
		return nil, err
	}
	live, ok := obj.(*corev1.Pod)
	if !ok {
		return nil, fmt.Errorf("get pod %s/%s: unexpected type %T", pod.Namespace, pod.Name, obj)
	}
	out := *pod
	out.Spec = live.Spec
	return &out, nil
}
