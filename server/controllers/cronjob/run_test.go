package cronjob

import (
	"context"
	"testing"
	"time"

	batchv1 "k8s.io/api/batch/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/orch-dev/orch/server/controllers/fakeapi"
	"github.com/orch-dev/orch/server/controllers/informer"
)

// TestRunRequeuesAtTheNextScheduledTime runs the whole loop with the real
// clock: nothing but the requeue at the next scheduled time makes the
// CronJob fire.
func TestRunRequeuesAtTheNextScheduledTime(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	api := fakeapi.New(resources()...)
	factory := informer.NewFactory(api, quiet)
	c := New(api, factory, &fakeRecorder{}, Options{Location: time.UTC, Logger: quiet})
	done := make(chan struct{}, 2)
	go func() { _ = factory.Run(ctx); done <- struct{}{} }()
	go func() { _ = c.Run(ctx); done <- struct{}{} }()
	t.Cleanup(func() { cancel(); <-done; <-done })

	cj := newCronJob("@every 1s")
	cj.Spec.ConcurrencyPolicy = batchv1.ForbidConcurrent
	api.MustCreate(cronJobsGVR, cj)
	deadline := time.Now().Add(10 * time.Second)
	for {
		objs, _, err := api.List(ctx, jobsGVR, "default", metav1.ListOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if len(objs) == 1 {
			break
		}
		if len(objs) > 1 || time.Now().After(deadline) {
			t.Fatalf("%d jobs, want exactly one (Forbid)", len(objs))
		}
		time.Sleep(10 * time.Millisecond)
	}
	obj, err := api.Get(ctx, cronJobsGVR, "default", "cj")
	if err != nil {
		t.Fatal(err)
	}
	if got := obj.(*batchv1.CronJob).Status; len(got.Active) != 1 || got.LastScheduleTime == nil {
		t.Fatalf("status %+v", got)
	}
}
