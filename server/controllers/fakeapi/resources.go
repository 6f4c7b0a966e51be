package fakeapi

import (
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"

	"github.com/orch-dev/orch/server/registry"
)

// Well-known resources of the fake.
var (
	Namespaces  = schema.GroupVersionResource{Version: "v1", Resource: "namespaces"}
	Pods        = schema.GroupVersionResource{Version: "v1", Resource: "pods"}
	ConfigMaps  = schema.GroupVersionResource{Version: "v1", Resource: "configmaps"}
	Secrets     = schema.GroupVersionResource{Version: "v1", Resource: "secrets"}
	Events      = schema.GroupVersionResource{Version: "v1", Resource: "events"}
	Nodes       = schema.GroupVersionResource{Version: "v1", Resource: "nodes"}
	ReplicaSets = schema.GroupVersionResource{Group: "apps", Version: "v1", Resource: "replicasets"}
	Deployments = schema.GroupVersionResource{Group: "apps", Version: "v1", Resource: "deployments"}
	// EventsV1 is served from the storage of core events, as orch's
	// events.k8s.io/v1 is.
	EventsV1 = schema.GroupVersionResource{Group: "events.k8s.io", Version: "v1", Resource: "events"}
)

// Resources returns the fake's default resource table: a few core and apps
// kinds, with the strategies controllers rely on (status subresources, the
// namespaces/finalize subresource) and one alias entry (events.k8s.io
// events stored as core events).
func Resources() []*registry.Resource {
	withStatus := func(r *registry.Resource) *registry.Resource {
		r.Subresources = append(r.Subresources, "status")
		r.PrepareForUpdate = KeepStatus
		r.PrepareForStatusUpdate = KeepAllButStatus
		return r
	}
	events := &registry.Resource{
		GroupVersion: schema.GroupVersion{Version: "v1"}, Name: "events", Kind: "Event", Namespaced: true,
		New: func() runtime.Object { return &corev1.Event{} }, NewList: func() runtime.Object { return &corev1.EventList{} },
	}
	namespaces := withStatus(&registry.Resource{
		GroupVersion: schema.GroupVersion{Version: "v1"}, Name: "namespaces", Kind: "Namespace",
		New: func() runtime.Object { return &corev1.Namespace{} }, NewList: func() runtime.Object { return &corev1.NamespaceList{} },
	})
	namespaces.Subresources = append(namespaces.Subresources, "finalize")
	namespaces.PrepareForSubresource = map[string]func(obj, old runtime.Object){
		"finalize": FinalizeNamespace,
	}
	return []*registry.Resource{
		namespaces,
		withStatus(&registry.Resource{
			GroupVersion: schema.GroupVersion{Version: "v1"}, Name: "nodes", Kind: "Node",
			New: func() runtime.Object { return &corev1.Node{} }, NewList: func() runtime.Object { return &corev1.NodeList{} },
		}),
		withStatus(&registry.Resource{
			GroupVersion: schema.GroupVersion{Version: "v1"}, Name: "pods", Kind: "Pod", Namespaced: true,
			New: func() runtime.Object { return &corev1.Pod{} }, NewList: func() runtime.Object { return &corev1.PodList{} },
		}),
		{
			GroupVersion: schema.GroupVersion{Version: "v1"}, Name: "configmaps", Kind: "ConfigMap", Namespaced: true,
			New: func() runtime.Object { return &corev1.ConfigMap{} }, NewList: func() runtime.Object { return &corev1.ConfigMapList{} },
		},
		{
			GroupVersion: schema.GroupVersion{Version: "v1"}, Name: "secrets", Kind: "Secret", Namespaced: true,
			New: func() runtime.Object { return &corev1.Secret{} }, NewList: func() runtime.Object { return &corev1.SecretList{} },
		},
		events,
		withStatus(&registry.Resource{
			GroupVersion: schema.GroupVersion{Group: "apps", Version: "v1"}, Name: "replicasets", Kind: "ReplicaSet", Namespaced: true,
			New: func() runtime.Object { return &appsv1.ReplicaSet{} }, NewList: func() runtime.Object { return &appsv1.ReplicaSetList{} },
		}),
		withStatus(&registry.Resource{
			GroupVersion: schema.GroupVersion{Group: "apps", Version: "v1"}, Name: "deployments", Kind: "Deployment", Namespaced: true,
			New: func() runtime.Object { return &appsv1.Deployment{} }, NewList: func() runtime.Object { return &appsv1.DeploymentList{} },
		}),
		{
			GroupVersion: schema.GroupVersion{Group: "events.k8s.io", Version: "v1"}, Name: "events", Kind: "Event", Namespaced: true,
			Storage: events,
			New:     func() runtime.Object { return &corev1.Event{} }, NewList: func() runtime.Object { return &corev1.EventList{} },
		},
	}
}

// FinalizeNamespace is the namespaces/finalize update strategy orch's
// registry needs: everything is kept from old except spec.finalizers.
func FinalizeNamespace(obj, old runtime.Object) {
	ns := obj.(*corev1.Namespace)
	finalizers := ns.Spec.Finalizers
	*ns = *old.(*corev1.Namespace).DeepCopy()
	ns.Spec.Finalizers = finalizers
}
