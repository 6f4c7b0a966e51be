package main

import (
	"context"
	"fmt"
	"time"

	"golang.org/x/sync/errgroup"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/kubernetes"
)

// schedulingThroughput measures the scheduler through the real API server
// at scale, the way Kubernetes' scheduler_perf measures kube-scheduler's
// throughput (its ~100–300 pods/s default): n pods are created by 32
// clients at once, and the time from the first create until all n are
// bound is taken; the scheduler binds while they are being created. The
// simulated kubelets start the bound pods meanwhile, as real ones would,
// on the same 2 cores. created is when the last create returned.
func schedulingThroughput(ctx context.Context, cs kubernetes.Interface, n int) (bound int, created, took time.Duration, err error) {
	const label = "sched"
	list, err := cs.CoreV1().Pods("default").List(ctx, metav1.ListOptions{LabelSelector: "app=" + label})
	if err != nil {
		return 0, 0, 0, err
	}
	w, err := cs.CoreV1().Pods("default").Watch(ctx, metav1.ListOptions{LabelSelector: "app=" + label, ResourceVersion: list.ResourceVersion})
	if err != nil {
		return 0, 0, 0, err
	}
	defer w.Stop()

	start := time.Now()
	createErr := make(chan error, 1)
	go func() {
		err := forEach(n, func(i int) error {
			pod := &corev1.Pod{
				ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("%s-%d", label, i), Labels: map[string]string{"app": label}},
				Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: "busybox"}}},
			}
			_, err := cs.CoreV1().Pods("default").Create(ctx, pod, metav1.CreateOptions{})
			return err
		})
		created = time.Since(start)
		createErr <- err
	}()
	boundPods := map[types.UID]bool{}
	timeout := time.After(5 * time.Minute)
	for len(boundPods) < n {
		select {
		case ev, ok := <-w.ResultChan():
			if !ok {
				return len(boundPods), 0, time.Since(start), fmt.Errorf("pod watch ended with %d of %d bound", len(boundPods), n)
			}
			if p, isPod := ev.Object.(*corev1.Pod); isPod && ev.Type != watch.Deleted && p.Spec.NodeName != "" {
				boundPods[p.UID] = true
			}
		case <-timeout:
			return len(boundPods), 0, time.Since(start), fmt.Errorf("%d of %d pods bound after 5 minutes", len(boundPods), n)
		}
	}
	took = time.Since(start)
	err = <-createErr
	return n, created, took, err
}

// forEach calls fn(0) … fn(n-1), 32 at a time, and returns the first
// error.
func forEach(n int, fn func(i int) error) error {
	var g errgroup.Group
	g.SetLimit(32)
	for i := range n {
		g.Go(func() error { return fn(i) })
	}
	return g.Wait()
}
