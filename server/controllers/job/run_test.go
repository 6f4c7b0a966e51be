package job

import (
	"context"
	"testing"
	"time"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/orch-dev/orch/server/controllers/controllertest"
	"github.com/orch-dev/orch/server/controllers/fakeapi"
	"github.com/orch-dev/orch/server/controllers/informer"
)

// TestRunDrivesJobsFromWatchEvents runs the whole loop (informers, queue,
// workers) with the real clock: pod status changes alone move the Job on.
func TestRunDrivesJobsFromWatchEvents(t *testing.T) {
	api := fakeapi.New(batchResources()...)
	factory := informer.NewFactory(api, quiet)
	c := New(api, factory, &controllertest.Recorder{}, Options{Logger: quiet})
	ctx := controllertest.Run(t, factory.Run, c.Run)

	api.MustCreate(jobsGVR, newJob("run", 2, 2))
	controllertest.Eventually(t, 10*time.Second, "two pods", func() bool { return len(listPods(t, api)) == 2 })
	for _, pod := range listPods(t, api) {
		pod.Status.Phase = corev1.PodSucceeded
		if _, err := api.Update(ctx, podsGVR, pod, "status", "test"); err != nil {
			t.Fatal(err)
		}
	}
	controllertest.Eventually(t, 10*time.Second, "the job to complete", func() bool {
		obj, err := api.Get(ctx, jobsGVR, "default", "run")
		return err == nil && finished(obj.(*batchv1.Job)) && obj.(*batchv1.Job).Status.Succeeded == 2
	})
	for _, pod := range listPods(t, api) {
		if hasFinalizer(pod) {
			t.Errorf("pod %s keeps the tracking finalizer", pod.Name)
		}
	}
}

func listPods(t *testing.T, api *fakeapi.API) []*corev1.Pod {
	t.Helper()
	objs, _, err := api.List(context.Background(), podsGVR, "default", metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	var out []*corev1.Pod
	for _, obj := range objs {
		out = append(out, obj.(*corev1.Pod))
	}
	return out
}
