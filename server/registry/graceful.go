package registry

import (
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
)

// podGracefulDelete gives a running pod its grace period: the pod is marked
// with deletionTimestamp = now + grace and the node's agent stops it and
// deletes it finally with grace 0. Pods not on a node, or finished, go at
// once. A later delete may shorten the grace period, never extend it.
func podGracefulDelete(obj runtime.Object, requested *int64, now time.Time) bool {
	pod := obj.(*corev1.Pod)
	grace := int64(corev1.DefaultTerminationGracePeriodSeconds)
	if pod.Spec.TerminationGracePeriodSeconds != nil {
		grace = *pod.Spec.TerminationGracePeriodSeconds
	}
	if requested != nil {
		grace = *requested
	}
	if pod.Spec.NodeName == "" || pod.Status.Phase == corev1.PodSucceeded || pod.Status.Phase == corev1.PodFailed {
		grace = 0
	}
	if grace <= 0 {
		if pod.DeletionTimestamp != nil {
			zero := int64(0)
			pod.DeletionGracePeriodSeconds = &zero
		}
		return false
	}
	if pod.DeletionGracePeriodSeconds != nil && *pod.DeletionGracePeriodSeconds <= grace {
		return true
	}
	deadline := metav1.NewTime(now.Add(time.Duration(grace) * time.Second))
	pod.DeletionTimestamp = &deadline
	pod.DeletionGracePeriodSeconds = &grace
	return true
}

// namespaceGracefulDelete marks a namespace Terminating while its spec
// finalizers (the namespace controller's "kubernetes") remain.
func namespaceGracefulDelete(obj runtime.Object, _ *int64, now time.Time) bool {
	ns := obj.(*corev1.Namespace)
	if len(ns.Spec.Finalizers) == 0 {
		return false
	}
	if ns.DeletionTimestamp == nil {
		t := metav1.NewTime(now)
		ns.DeletionTimestamp = &t
		zero := int64(0)
		ns.DeletionGracePeriodSeconds = &zero
	}
	ns.Status.Phase = corev1.NamespaceTerminating
	return true
}
