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
// scheduler, most controllers and the node authorizer share. Pods are by
// far the most numerous objects, and most of a pod's spec is for the
// kubelet only: it drops, per container, the command, args, working dir,
// probes, lifecycle hooks, volume mounts and devices, termination message
// settings, security context and the env entries that name no object; and
// the volumes that name no object (emptyDir, hostPath, downwardAPI, ...),
// keeping of a projected volume only its secret and config map sources.
// Containers keep their name, image, ports, resources, resize and restart
// policies (what scheduling, endpoints, autoscaling and sidecar logic
// read), and with the kept volumes, envFrom, secret and config map env
// references, image pull secrets and the service account, everything a pod
// names: the node authorizer grants a node the objects its pods name
// (server/authz). Ephemeral containers are rare and kept whole. Metadata
// (but for managed fields) and status are kept whole, so status writes
// from the cache lose nothing
// (the API keeps the spec of a status update); a full update must first
// take the live spec back (WithLiveSpec).
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
	// Nothing reads managed fields from the cache, and an update that
	// carries none keeps the stored ones (as upstream's field manager
	// does): client-go's TransformStripManagedFields, which Kubernetes'
	// own controllers use. They were ~1.7 KB of every cached pod.
	pod.ManagedFields = nil
	pod.Spec.InitContainers = slimContainers(in.Spec.InitContainers)
	pod.Spec.Containers = slimContainers(in.Spec.Containers)
	var volumes []corev1.Volume
	for _, v := range in.Spec.Volumes {
		if v, ok := slimVolume(v); ok {
			volumes = append(volumes, v)
		}
	}
	pod.Spec.Volumes = volumes
	return &pod
}

// slimVolume returns v as far as it names other objects, and false when
// it names none.
func slimVolume(v corev1.Volume) (corev1.Volume, bool) {
	src := &v.VolumeSource
	switch {
	case src.EmptyDir != nil, src.HostPath != nil, src.DownwardAPI != nil, src.Image != nil,
		src.CSI != nil && src.CSI.NodePublishSecretRef == nil:
		return v, false
	case src.Projected != nil:
		var sources []corev1.VolumeProjection
		for _, p := range src.Projected.Sources {
			switch {
			case p.Secret != nil:
				sources = append(sources, corev1.VolumeProjection{Secret: &corev1.SecretProjection{LocalObjectReference: p.Secret.LocalObjectReference}})
			case p.ConfigMap != nil:
				sources = append(sources, corev1.VolumeProjection{ConfigMap: &corev1.ConfigMapProjection{LocalObjectReference: p.ConfigMap.LocalObjectReference}})
			}
		}
		if sources == nil {
			return v, false
		}
		return corev1.Volume{Name: v.Name, VolumeSource: corev1.VolumeSource{Projected: &corev1.ProjectedVolumeSource{Sources: sources}}}, true
	}
	return v, true
}

// slimEnv keeps the env entries that name a secret or a config map, as
// bare references.
func slimEnv(in []corev1.EnvVar) []corev1.EnvVar {
	var out []corev1.EnvVar
	for _, e := range in {
		if e.ValueFrom == nil || (e.ValueFrom.SecretKeyRef == nil && e.ValueFrom.ConfigMapKeyRef == nil) {
			continue
		}
		out = append(out, corev1.EnvVar{Name: e.Name, ValueFrom: &corev1.EnvVarSource{
			SecretKeyRef: e.ValueFrom.SecretKeyRef, ConfigMapKeyRef: e.ValueFrom.ConfigMapKeyRef}})
	}
	return out
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
			EnvFrom:       c.EnvFrom,
			Env:           slimEnv(c.Env),
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
