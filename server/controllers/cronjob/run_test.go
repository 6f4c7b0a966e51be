package cronjob

import (
	"testing"
	"time"

	batchv1 "k8s.io/api/batch/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/orch-dev/orch/server/controllers/controllertest"
	"github.com/orch-dev/orch/server/controllers/fakeapi"
	"github.com/orch-dev/orch/server/controllers/informer"
)

// TestRunRequeuesAtTheNextScheduledTime runs the whole loop with the real
// clock: nothing but the requeue at the next scheduled time makes the
// CronJob fire.
func TestRunRequeuesAtTheNextScheduledTime(t *testing.T) {
	api := fakeapi.New(resources()...)
	factory := informer.NewFactory(api, quiet)
	c := New(api, factory, &controllertest.Recorder{}, Options{Location: time.UTC, Logger: quiet})
	ctx := controllertest.Run(t, factory.Run, c.Run)

	cj := newCronJob("@every 1s")
	cj.Spec.ConcurrencyPolicy = batchv1.ForbidConcurrent
	api.MustCreate(cronJobsGVR, cj)
	jobs := func() int {
		objs, _, err := api.List(ctx, jobsGVR, "default", metav1.ListOptions{})
		if err != nil {
			t.Fatal(err)
		}
		return len(objs)
	}
	// Wait for the first Job, then check that Forbid made no second one.
	controllertest.WaitUntil(10*time.Second, func() bool { return jobs() > 0 })
	if n := jobs(); n != 1 {
		t.Fatalf("%d jobs, want exactly one (Forbid)", n)
	}
	obj, err := api.Get(ctx, cronJobsGVR, "default", "cj")
	if err != nil {
		t.Fatal(err)
	}
	if got := obj.(*batchv1.CronJob).Status; len(got.Active) != 1 || got.LastScheduleTime == nil {
		t.Fatalf("status %+v", got)
	}
}
