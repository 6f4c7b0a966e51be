package disruption

import (
	"context"
	"fmt"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"

	"github.com/orch-dev/orch/server/controllers/informer"
	"github.com/orch-dev/orch/server/controllers/queue"
)

// staleDisruption reports whether pod carries a DisruptionTarget=True
// condition that becomes stale if the pod is still not being deleted, and
// in how long. Conditions the node's agent set are never stale (the pod
// may take arbitrarily long to terminate), nor are those of finished pods.
func (c *Controller) staleDisruption(pod *corev1.Pod) (bool, time.Duration) {
	if pod.DeletionTimestamp != nil || pod.Status.Phase == corev1.PodSucceeded || pod.Status.Phase == corev1.PodFailed {
		return false, 0
	}
	for _, cond := range pod.Status.Conditions {
		if cond.Type != corev1.DisruptionTarget {
			continue
		}
		if cond.Status != corev1.ConditionTrue || cond.Reason == corev1.PodReasonTerminationByKubelet {
			return false, 0
		}
		return true, max(StalePodDisruptionTimeout-c.clock.Since(cond.LastTransitionTime.Time), 0)
	}
	return false, 0
}

func (c *Controller) checkStaleDisruption(obj runtime.Object) {
	pod, ok := obj.(*corev1.Pod)
	if !ok {
		return
	}
	if has, after := c.staleDisruption(pod); has {
		if key, err := informer.KeyOf(pod); err == nil {
			c.stalePods.AddAfter(key, after)
		}
	}
}

// reconcileStalePod resets the pod's DisruptionTarget condition to False
// once it is stale: the disruption that set it did not happen.
func (c *Controller) reconcileStalePod(ctx context.Context, key string) error {
	ns, name := informer.SplitKey(key)
	pod, ok := c.pods.Get(ns, name)
	if !ok {
		return nil
	}
	has, after := c.staleDisruption(pod)
	if !has {
		return nil
	}
	if after > 0 {
		return queue.RequeueAfter(after)
	}
	updated := pod.DeepCopy()
	for i := range updated.Status.Conditions {
		cond := &updated.Status.Conditions[i]
		if cond.Type == corev1.DisruptionTarget {
			cond.Status = corev1.ConditionFalse
			cond.LastTransitionTime = metav1.NewTime(c.clock.Now())
		}
	}
	_, err := c.api.Update(ctx, podsGVR, updated, "status", c.opts.FieldManager)
	if apierrors.IsNotFound(err) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("reset stale DisruptionTarget condition of pod %s: %w", key, err)
	}
	c.log.Info("reset stale DisruptionTarget condition", "pod", key)
	return nil
}
