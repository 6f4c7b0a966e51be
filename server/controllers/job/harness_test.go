package job

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"testing"
	"time"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	clocktesting "k8s.io/utils/clock/testing"

	"github.com/orch-dev/orch/server/controllers/controllertest"
	"github.com/orch-dev/orch/server/controllers/fakeapi"
	"github.com/orch-dev/orch/server/controllers/informer"
	"github.com/orch-dev/orch/server/controllers/queue"
	"github.com/orch-dev/orch/server/registry"
)

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

func batchResources() []*registry.Resource {
	return append(fakeapi.Resources(),
		&registry.Resource{
			GroupVersion: batchv1.SchemeGroupVersion, Name: "jobs", Kind: "Job", Namespaced: true,
			Subresources: []string{"status"}, PrepareForUpdate: fakeapi.KeepStatus, PrepareForStatusUpdate: fakeapi.KeepAllButStatus,
			New: func() runtime.Object { return &batchv1.Job{} }, NewList: func() runtime.Object { return &batchv1.JobList{} },
		})
}

type harness struct {
	t     *testing.T
	ctx   context.Context
	api   *fakeapi.API
	clock *clocktesting.FakeClock
	rec   *controllertest.Recorder
	c     *Controller
}

func newHarness(t *testing.T) *harness {
	t.Helper()
	clock := clocktesting.NewFakeClock(time.Date(2025, 5, 1, 12, 0, 0, 0, time.UTC))
	api := fakeapi.New(batchResources()...)
	api.Now = clock.Now
	factory := informer.NewFactory(api, quiet)
	rec := &controllertest.Recorder{}
	c := New(api, factory, rec, Options{Now: clock.Now, Logger: quiet})
	ctx := controllertest.StartInformers(t, factory, c.jobs, c.pods)
	return &harness{t: t, ctx: ctx, api: api, clock: clock, rec: rec, c: c}
}

// waitCache waits until the informers show what the fake stores.
func (h *harness) waitCache() {
	h.t.Helper()
	controllertest.WaitForCaches(h.t, h.api, h.c.jobs, h.c.pods)
}

// sync reconciles key on a current cache and returns the requeue delay
// (0 if none); other errors fail the test.
func (h *harness) sync(key string) time.Duration {
	h.t.Helper()
	h.waitCache()
	err := h.c.reconcile(h.ctx, key)
	if err == nil {
		return 0
	}
	if d, ok := queue.RequeueDelay(err); ok {
		return d
	}
	h.t.Fatalf("reconcile %s: %v", key, err)
	return 0
}

func (h *harness) createJob(job *batchv1.Job) *batchv1.Job {
	h.t.Helper()
	if job.Namespace == "" {
		job.Namespace = "default"
	}
	return h.api.MustCreate(jobsGVR, job).(*batchv1.Job)
}

func (h *harness) job(name string) *batchv1.Job {
	h.t.Helper()
	obj, err := h.api.Get(h.ctx, jobsGVR, "default", name)
	if err != nil {
		h.t.Fatal(err)
	}
	return obj.(*batchv1.Job)
}

func (h *harness) updateJob(name string, mutate func(*batchv1.Job)) {
	h.t.Helper()
	job := h.job(name)
	mutate(job)
	if _, err := h.api.Update(h.ctx, jobsGVR, job, "", "test"); err != nil {
		h.t.Fatal(err)
	}
}

// pods lists the job's pods (including terminating ones) by creation order
// (names are random, so sort by index, then uid).
func (h *harness) pods() []*corev1.Pod {
	h.t.Helper()
	objs, _, err := h.api.List(h.ctx, podsGVR, "default", metav1.ListOptions{})
	if err != nil {
		h.t.Fatal(err)
	}
	var out []*corev1.Pod
	for _, obj := range objs {
		out = append(out, obj.(*corev1.Pod))
	}
	return out
}

// activePods are the pods not finished and not being deleted.
func (h *harness) activePods() []*corev1.Pod {
	var out []*corev1.Pod
	for _, p := range h.pods() {
		if p.DeletionTimestamp == nil && p.Status.Phase != corev1.PodSucceeded && p.Status.Phase != corev1.PodFailed {
			out = append(out, p)
		}
	}
	return out
}

// setPhase plays the kubelet: the pod runs on node1 and reaches phase,
// its container "main" exiting with exitCode when finished.
func (h *harness) setPhase(pod *corev1.Pod, phase corev1.PodPhase, exitCode int32) {
	h.t.Helper()
	obj, err := h.api.Get(h.ctx, podsGVR, pod.Namespace, pod.Name)
	if err != nil {
		h.t.Fatal(err)
	}
	p := obj.(*corev1.Pod)
	if p.Spec.NodeName == "" {
		p.Spec.NodeName = "node1"
		if obj, err = h.api.Update(h.ctx, podsGVR, p, "", "test"); err != nil {
			h.t.Fatal(err)
		}
		p = obj.(*corev1.Pod)
	}
	p.Status.Phase = phase
	switch phase {
	case corev1.PodSucceeded, corev1.PodFailed:
		p.Status.ContainerStatuses = []corev1.ContainerStatus{{Name: "main", State: corev1.ContainerState{
			Terminated: &corev1.ContainerStateTerminated{ExitCode: exitCode, FinishedAt: metav1.NewTime(h.clock.Now())}}}}
	case corev1.PodRunning:
		p.Status.Conditions = []corev1.PodCondition{{Type: corev1.PodReady, Status: corev1.ConditionTrue}}
	}
	if _, err := h.api.Update(h.ctx, podsGVR, p, "status", "test"); err != nil {
		h.t.Fatal(err)
	}
}

// kubeletDelete finishes the deletion of a terminating pod, as the kubelet
// does after the grace period.
func (h *harness) kubeletDelete(pod *corev1.Pod) {
	h.t.Helper()
	zero := int64(0)
	if _, err := h.api.Delete(h.ctx, podsGVR, pod.Namespace, pod.Name, &metav1.DeleteOptions{GracePeriodSeconds: &zero}); err != nil {
		h.t.Fatal(err)
	}
}

func (h *harness) hasEvent(want string) bool {
	for _, e := range h.rec.Events() {
		if e == want {
			return true
		}
	}
	return false
}

func newJob(name string, parallelism, completions int32) *batchv1.Job {
	backoff := int32(6)
	return &batchv1.Job{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "default"},
		Spec: batchv1.JobSpec{
			Parallelism:  &parallelism,
			Completions:  &completions,
			BackoffLimit: &backoff,
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"app": name}},
				Spec: corev1.PodSpec{
					RestartPolicy: corev1.RestartPolicyNever,
					Containers:    []corev1.Container{{Name: "main", Image: "busybox"}},
				},
			},
		},
	}
}

func conditionTypes(job *batchv1.Job) []string {
	var out []string
	for _, c := range job.Status.Conditions {
		out = append(out, fmt.Sprintf("%s=%s/%s", c.Type, c.Status, c.Reason))
	}
	return out
}
