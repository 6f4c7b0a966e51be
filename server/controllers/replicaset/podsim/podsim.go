// Package podsim is a tiny simulated kubelet for controller tests on the
// fake API (package fakeapi): it binds pending pods to a node, reports them
// Running and Ready (or holds them back as a test asks) and completes the
// deletion of terminating pods, as a node's agent would. Only tests import
// it.
package podsim

import (
	"context"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/orch-dev/orch/server/controllers/fakeapi"
)

var podsGVR = corev1.SchemeGroupVersion.WithResource("pods")

// Kubelet simulates one node. Build it with Start.
type Kubelet struct {
	api  *fakeapi.API
	node string

	mu sync.Mutex
	// ready decides whether a running pod reports Ready; nil means yes.
	ready func(*corev1.Pod) bool
	// paused stops all changes while true.
	paused bool
}

// Start runs a simulated kubelet for node until the test ends.
func Start(t testing.TB, api *fakeapi.API, node string) *Kubelet {
	k := &Kubelet{api: api, node: node}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() {
		tick := time.NewTicker(5 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
				k.step(ctx)
			}
		}
	})
	t.Cleanup(func() {
		cancel()
		wg.Wait()
	})
	return k
}

// SetReady decides which running pods report Ready (nil: all).
func (k *Kubelet) SetReady(fn func(*corev1.Pod) bool) {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.ready = fn
}

// Pause stops (true) or resumes (false) the kubelet: pods keep their state.
func (k *Kubelet) Pause(paused bool) {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.paused = paused
}

func (k *Kubelet) settings() (func(*corev1.Pod) bool, bool) {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.ready, k.paused
}

func (k *Kubelet) step(ctx context.Context) {
	readyFn, paused := k.settings()
	if paused {
		return
	}
	objs, _, err := k.api.List(ctx, podsGVR, "", metav1.ListOptions{})
	if err != nil {
		return
	}
	for _, obj := range objs {
		pod := obj.(*corev1.Pod)
		if pod.Spec.NodeName != "" && pod.Spec.NodeName != k.node {
			continue
		}
		if pod.DeletionTimestamp != nil {
			zero := int64(0)
			_, _ = k.api.Delete(ctx, podsGVR, pod.Namespace, pod.Name, &metav1.DeleteOptions{GracePeriodSeconds: &zero})
			continue
		}
		if pod.Spec.NodeName == "" {
			bound := pod.DeepCopy()
			bound.Spec.NodeName = k.node
			out, err := k.api.Update(ctx, podsGVR, bound, "", "podsim")
			if err != nil {
				continue
			}
			pod = out.(*corev1.Pod)
		}
		ready := readyFn == nil || readyFn(pod)
		if err := k.report(ctx, pod, ready); err != nil && !apierrors.IsConflict(err) && !apierrors.IsNotFound(err) {
			continue
		}
	}
}

// report sets phase Running and the Ready condition, if they differ.
func (k *Kubelet) report(ctx context.Context, pod *corev1.Pod, ready bool) error {
	status := corev1.ConditionFalse
	if ready {
		status = corev1.ConditionTrue
	}
	var cur *corev1.PodCondition
	for i := range pod.Status.Conditions {
		if pod.Status.Conditions[i].Type == corev1.PodReady {
			cur = &pod.Status.Conditions[i]
		}
	}
	if pod.Status.Phase == corev1.PodRunning && cur != nil && cur.Status == status {
		return nil
	}
	upd := pod.DeepCopy()
	upd.Status.Phase = corev1.PodRunning
	now := metav1.Now()
	if upd.Status.StartTime == nil {
		upd.Status.StartTime = &now
	}
	cond := corev1.PodCondition{Type: corev1.PodReady, Status: status, LastTransitionTime: now}
	replaced := false
	for i := range upd.Status.Conditions {
		if upd.Status.Conditions[i].Type == corev1.PodReady {
			upd.Status.Conditions[i] = cond
			replaced = true
		}
	}
	if !replaced {
		upd.Status.Conditions = append(upd.Status.Conditions, cond)
	}
	_, err := k.api.Update(ctx, podsGVR, upd, "status", "podsim")
	return err
}
