package cronjob

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"strconv"
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

func resources() []*registry.Resource {
	withStatus := func(name, kind string, newObj, newList func() runtime.Object) *registry.Resource {
		return &registry.Resource{
			GroupVersion: batchv1.SchemeGroupVersion, Name: name, Kind: kind, Namespaced: true,
			Subresources: []string{"status"}, PrepareForUpdate: fakeapi.KeepStatus, PrepareForStatusUpdate: fakeapi.KeepAllButStatus,
			New: newObj, NewList: newList,
		}
	}
	return append(fakeapi.Resources(),
		withStatus("jobs", "Job", func() runtime.Object { return &batchv1.Job{} }, func() runtime.Object { return &batchv1.JobList{} }),
		withStatus("cronjobs", "CronJob", func() runtime.Object { return &batchv1.CronJob{} }, func() runtime.Object { return &batchv1.CronJobList{} }))
}

type harness struct {
	t     *testing.T
	ctx   context.Context
	api   *fakeapi.API
	clock *clocktesting.FakeClock
	rec   *controllertest.Recorder
	c     *Controller
}

// start is when every test's CronJob is created.
var start = time.Date(2025, 5, 1, 12, 0, 30, 0, time.UTC)

func newHarness(t *testing.T) *harness {
	t.Helper()
	clock := clocktesting.NewFakeClock(start)
	api := fakeapi.New(resources()...)
	api.Now = clock.Now
	factory := informer.NewFactory(api, quiet)
	rec := &controllertest.Recorder{}
	c := New(api, factory, rec, Options{Now: clock.Now, Location: time.UTC, Logger: quiet})
	ctx := controllertest.StartInformers(t, factory, c.cronJobs, c.jobs)
	return &harness{t: t, ctx: ctx, api: api, clock: clock, rec: rec, c: c}
}

// waitCache waits until the informers show what the fake stores.
func (h *harness) waitCache() {
	h.t.Helper()
	controllertest.WaitForCaches(h.t, h.api, h.c.jobs, h.c.cronJobs)
}

// syncAt sets the clock to at, reconciles the CronJob "cj" and returns
// the requeue delay.
func (h *harness) syncAt(at time.Time) time.Duration {
	h.t.Helper()
	h.clock.SetTime(at)
	h.waitCache()
	err := h.c.reconcile(h.ctx, "default/cj")
	if err == nil {
		return 0
	}
	if d, ok := queue.RequeueDelay(err); ok {
		return d
	}
	h.t.Fatalf("reconcile: %v", err)
	return 0
}

func newCronJob(schedule string) *batchv1.CronJob {
	return &batchv1.CronJob{
		ObjectMeta: metav1.ObjectMeta{Name: "cj", Namespace: "default"},
		Spec: batchv1.CronJobSpec{
			Schedule:          schedule,
			ConcurrencyPolicy: batchv1.AllowConcurrent,
			JobTemplate: batchv1.JobTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"app": "cj"}, Annotations: map[string]string{"a": "b"}},
				Spec: batchv1.JobSpec{Template: corev1.PodTemplateSpec{Spec: corev1.PodSpec{
					RestartPolicy: corev1.RestartPolicyNever,
					Containers:    []corev1.Container{{Name: "c", Image: "busybox"}},
				}}},
			},
		},
	}
}

func (h *harness) create(cj *batchv1.CronJob) {
	h.clock.SetTime(start)
	h.api.MustCreate(cronJobsGVR, cj)
}

func (h *harness) cronJob() *batchv1.CronJob {
	h.t.Helper()
	obj, err := h.api.Get(h.ctx, cronJobsGVR, "default", "cj")
	if err != nil {
		h.t.Fatal(err)
	}
	return obj.(*batchv1.CronJob)
}

func (h *harness) jobNames() []string {
	h.t.Helper()
	objs, _, err := h.api.List(h.ctx, jobsGVR, "default", metav1.ListOptions{})
	if err != nil {
		h.t.Fatal(err)
	}
	var names []string
	for _, obj := range objs {
		names = append(names, obj.(*batchv1.Job).Name)
	}
	slices.Sort(names)
	return names
}

func (h *harness) activeNames() []string {
	var names []string
	for _, ref := range h.cronJob().Status.Active {
		names = append(names, ref.Name)
	}
	return names
}

// finish marks a Job Complete or Failed at the clock's time.
func (h *harness) finish(name string, cond batchv1.JobConditionType) {
	h.t.Helper()
	obj, err := h.api.Get(h.ctx, jobsGVR, "default", name)
	if err != nil {
		h.t.Fatal(err)
	}
	job := obj.(*batchv1.Job)
	now := metav1.NewTime(h.clock.Now())
	job.Status.Conditions = append(job.Status.Conditions, batchv1.JobCondition{Type: cond, Status: corev1.ConditionTrue, LastTransitionTime: now})
	if cond == batchv1.JobComplete {
		job.Status.CompletionTime = &now
	}
	if _, err := h.api.Update(h.ctx, jobsGVR, job, "status", "test"); err != nil {
		h.t.Fatal(err)
	}
}

// nameAt is the Job name of a scheduled time.
func nameAt(t time.Time) string { return "cj-" + strconv.FormatInt(t.Unix()/60, 10) }

func at(hhmm string) time.Time {
	t, err := time.Parse("15:04:05", hhmm)
	if err != nil {
		panic(err)
	}
	return time.Date(2025, 5, 1, t.Hour(), t.Minute(), t.Second(), 0, time.UTC)
}

func TestFiresAtScheduledMinutes(t *testing.T) {
	h := newHarness(t)
	h.create(newCronJob("*/5 * * * *"))

	if d := h.syncAt(start); d != 4*time.Minute+30*time.Second+nextScheduleDelta {
		t.Fatalf("requeue after %v, want until 12:05:00.1", d)
	}
	if names := h.jobNames(); len(names) != 0 {
		t.Fatalf("jobs %v before the first scheduled time", names)
	}
	fire := at("12:05:00")
	if d := h.syncAt(fire.Add(nextScheduleDelta)); d != 5*time.Minute {
		t.Fatalf("requeue after %v, want 5m", d)
	}
	want := nameAt(fire)
	if names := h.jobNames(); !slices.Equal(names, []string{want}) {
		t.Fatalf("jobs %v, want [%s]", names, want)
	}
	obj, _ := h.api.Get(h.ctx, jobsGVR, "default", want)
	job := obj.(*batchv1.Job)
	if job.Annotations[batchv1.CronJobScheduledTimestampAnnotation] != "2025-05-01T12:05:00Z" || job.Annotations["a"] != "b" || job.Labels["app"] != "cj" {
		t.Errorf("job metadata %v %v", job.Labels, job.Annotations)
	}
	if ref := metav1.GetControllerOf(job); ref == nil || ref.Kind != "CronJob" || ref.Name != "cj" {
		t.Errorf("controller ref %+v", ref)
	}
	cj := h.cronJob()
	if !slices.Equal(h.activeNames(), []string{want}) || !cj.Status.LastScheduleTime.Time.Equal(fire) {
		t.Fatalf("status %+v", cj.Status)
	}
	if ev := h.rec.Take(); !slices.Equal(ev, []string{"Normal SuccessfulCreate Created job " + want}) {
		t.Fatalf("events %v", ev)
	}
	// The same scheduled time is not run twice.
	h.syncAt(fire.Add(time.Minute))
	if n := len(h.jobNames()); n != 1 {
		t.Fatalf("%d jobs", n)
	}

	// Completion is noticed and recorded.
	h.clock.SetTime(fire.Add(2 * time.Minute))
	h.finish(want, batchv1.JobComplete)
	h.syncAt(fire.Add(2 * time.Minute))
	cj = h.cronJob()
	if len(cj.Status.Active) != 0 || cj.Status.LastSuccessfulTime == nil || !cj.Status.LastSuccessfulTime.Time.Equal(fire.Add(2*time.Minute)) {
		t.Fatalf("status %+v", cj.Status)
	}
	if ev := h.rec.Take(); !slices.Equal(ev, []string{"Normal SawCompletedJob Saw completed job: " + want + ", condition: Complete"}) {
		t.Fatalf("events %v", ev)
	}
}

func TestConcurrencyPolicies(t *testing.T) {
	first, second := at("13:00:00"), at("14:00:00")
	for _, tc := range []struct {
		policy     batchv1.ConcurrencyPolicy
		wantJobs   []string
		wantActive []string
		wantEvents []string
	}{
		{batchv1.AllowConcurrent, []string{nameAt(first), nameAt(second)}, []string{nameAt(first), nameAt(second)},
			[]string{"Normal SuccessfulCreate Created job " + nameAt(second)}},
		{batchv1.ForbidConcurrent, []string{nameAt(first)}, []string{nameAt(first)},
			[]string{"Normal JobAlreadyActive Not starting job because prior execution is running and concurrency policy is Forbid"}},
		{batchv1.ReplaceConcurrent, []string{nameAt(second)}, []string{nameAt(second)},
			[]string{"Normal SuccessfulDelete Deleted job " + nameAt(first), "Normal SuccessfulCreate Created job " + nameAt(second)}},
	} {
		t.Run(string(tc.policy), func(t *testing.T) {
			h := newHarness(t)
			cj := newCronJob("@hourly")
			cj.Spec.ConcurrencyPolicy = tc.policy
			h.create(cj)
			h.syncAt(first)
			h.rec.Take()
			if d := h.syncAt(second); d != time.Hour+nextScheduleDelta {
				t.Errorf("requeue after %v", d)
			}
			if got := h.jobNames(); !slices.Equal(got, tc.wantJobs) {
				t.Errorf("jobs %v, want %v", got, tc.wantJobs)
			}
			if got := h.activeNames(); !slices.Equal(got, tc.wantActive) {
				t.Errorf("active %v, want %v", got, tc.wantActive)
			}
			if got := h.rec.Take(); !slices.Equal(got, tc.wantEvents) {
				t.Errorf("events %v, want %v", got, tc.wantEvents)
			}
			if tc.policy == batchv1.ReplaceConcurrent {
				for _, a := range h.api.Actions() {
					if a.Verb == "delete" && a.Propagation != metav1.DeletePropagationBackground {
						t.Errorf("replaced job deleted with %q propagation", a.Propagation)
					}
				}
			}
			if tc.policy == batchv1.ForbidConcurrent {
				// Once the running job ends, the missed 14:00 run starts late.
				h.clock.SetTime(at("14:10:00"))
				h.finish(nameAt(first), batchv1.JobFailed)
				h.syncAt(at("14:10:00"))
				if got := h.activeNames(); !slices.Equal(got, []string{nameAt(second)}) {
					t.Errorf("after the first job ended: active %v", got)
				}
			}
		})
	}
}

func TestHistoryLimits(t *testing.T) {
	h := newHarness(t)
	cj := newCronJob("0 0 1 1 *")
	two, one := int32(2), int32(1)
	cj.Spec.SuccessfulJobsHistoryLimit = &two
	cj.Spec.FailedJobsHistoryLimit = &one
	h.create(cj)
	owner := h.cronJob()
	for i, cond := range []batchv1.JobConditionType{batchv1.JobComplete, batchv1.JobFailed, batchv1.JobComplete, batchv1.JobFailed, batchv1.JobComplete, ""} {
		started := metav1.NewTime(start.Add(time.Duration(i) * time.Minute))
		job := &batchv1.Job{ObjectMeta: metav1.ObjectMeta{
			Name: fmt.Sprintf("old-%d", i), Namespace: "default",
			OwnerReferences: []metav1.OwnerReference{*metav1.NewControllerRef(owner, cronJobKind)},
		}}
		job = h.api.MustCreate(jobsGVR, job).(*batchv1.Job)
		job.Status.StartTime = &started
		if cond != "" {
			job.Status.Conditions = []batchv1.JobCondition{{Type: cond, Status: corev1.ConditionTrue}}
		}
		if _, err := h.api.Update(h.ctx, jobsGVR, job, "status", "test"); err != nil {
			t.Fatal(err)
		}
	}
	h.syncAt(start.Add(10 * time.Minute))
	// Kept: the two newest successes (old-2, old-4), the newest failure
	// (old-3), and the unfinished old-5.
	if got := h.jobNames(); !slices.Equal(got, []string{"old-2", "old-3", "old-4", "old-5"}) {
		t.Fatalf("jobs %v", got)
	}
	var deleted []string
	for _, e := range h.rec.Take() {
		if len(e) > len("Normal SuccessfulDelete ") && e[:len("Normal SuccessfulDelete ")] == "Normal SuccessfulDelete " {
			deleted = append(deleted, e)
		}
	}
	slices.Sort(deleted)
	if want := []string{"Normal SuccessfulDelete Deleted job old-0", "Normal SuccessfulDelete Deleted job old-1"}; !slices.Equal(deleted, want) {
		t.Fatalf("delete events %v, want %v", deleted, want)
	}
}

func TestMissedSchedules(t *testing.T) {
	deadline := int64(60)
	for _, tc := range []struct {
		name       string
		deadline   *int64
		now        time.Time
		wantJobs   []string
		wantEvents []string
	}{
		{"late start without deadline runs the most recent", nil, at("15:20:00"),
			[]string{nameAt(at("15:00:00"))}, []string{"Normal SuccessfulCreate Created job " + nameAt(at("15:00:00"))}},
		{"within the deadline", &deadline, at("15:00:59"),
			[]string{nameAt(at("15:00:00"))}, []string{"Normal SuccessfulCreate Created job " + nameAt(at("15:00:00"))}},
		{"past the deadline", &deadline, at("15:01:01"), nil, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t)
			cj := newCronJob("@hourly")
			cj.Spec.StartingDeadlineSeconds = tc.deadline
			h.create(cj)
			d := h.syncAt(tc.now)
			if got := h.jobNames(); !slices.Equal(got, tc.wantJobs) {
				t.Errorf("jobs %v, want %v", got, tc.wantJobs)
			}
			if got := h.rec.Take(); !slices.Equal(got, tc.wantEvents) {
				t.Errorf("events %v, want %v", got, tc.wantEvents)
			}
			if next := tc.now.Add(d); !next.Equal(at("16:00:00").Add(nextScheduleDelta)) {
				t.Errorf("requeued for %v, want 16:00:00.1", next)
			}
		})
	}

	t.Run("times before the deadline window are skipped", func(t *testing.T) {
		h := newHarness(t)
		cj := newCronJob("@hourly")
		short := int64(200)
		cj.Spec.StartingDeadlineSeconds = &short
		h.create(cj)
		// Created at 12:00:30; at 13:04:00 the deadline window starts at
		// 13:00:40: 13:00 is outside it and is skipped without an event
		// (as in Kubernetes), nothing runs.
		h.syncAt(at("13:04:00"))
		if got := h.jobNames(); len(got) != 0 {
			t.Fatalf("jobs %v", got)
		}
		if got := h.rec.Take(); len(got) != 0 {
			t.Fatalf("events %v", got)
		}
		// At 14:03:00 the window [13:59:40, now] holds 14:00, which is
		// still within 200 s: it runs.
		h.syncAt(at("14:03:00"))
		if got := h.jobNames(); !slices.Equal(got, []string{nameAt(at("14:00:00"))}) {
			t.Fatalf("jobs %v", got)
		}
	})

	t.Run("too many missed start times", func(t *testing.T) {
		h := newHarness(t)
		h.create(newCronJob("* * * * *"))
		now := start.Add(3 * time.Hour)
		h.syncAt(now)
		events := h.rec.Take()
		want := "Warning TooManyMissedTimes too many missed start times. Set or decrease .spec.startingDeadlineSeconds or check clock skew"
		if len(events) != 2 || events[0] != want {
			t.Fatalf("events %v, want the warning first", events)
		}
		if got := h.jobNames(); !slices.Equal(got, []string{nameAt(now.Truncate(time.Minute))}) {
			t.Fatalf("jobs %v, want only the most recent", got)
		}
	})
}

func TestTimeZone(t *testing.T) {
	if _, err := time.LoadLocation("Asia/Tokyo"); err != nil {
		t.Skip("no time zone data:", err)
	}
	h := newHarness(t)
	cj := newCronJob("0 9 * * *")
	tz := "Asia/Tokyo"
	cj.Spec.TimeZone = &tz
	h.create(cj)
	// 09:00 in Tokyo is 00:00 UTC.
	d := h.syncAt(start)
	if next := start.Add(d); !next.Equal(time.Date(2025, 5, 2, 0, 0, 0, 0, time.UTC).Add(nextScheduleDelta)) {
		t.Fatalf("requeued for %v, want 2025-05-02 00:00 UTC", next)
	}
	fire := time.Date(2025, 5, 2, 0, 0, 0, 0, time.UTC)
	h.syncAt(fire.Add(time.Second))
	obj, err := h.api.Get(h.ctx, jobsGVR, "default", nameAt(fire))
	if err != nil {
		t.Fatalf("job of 09:00 JST: %v (jobs %v)", err, h.jobNames())
	}
	if got := obj.(*batchv1.Job).Annotations[batchv1.CronJobScheduledTimestampAnnotation]; got != "2025-05-02T09:00:00+09:00" {
		t.Fatalf("scheduled timestamp %q", got)
	}
}

func TestNoSchedulingWhen(t *testing.T) {
	bad := "Mars/Olympus_Mons"
	for _, tc := range []struct {
		name   string
		mutate func(*batchv1.CronJob)
		events []string
	}{
		{"suspended", func(cj *batchv1.CronJob) { s := true; cj.Spec.Suspend = &s }, nil},
		{"unknown time zone", func(cj *batchv1.CronJob) { cj.Spec.TimeZone = &bad },
			[]string{`Warning UnknownTimeZone invalid timeZone: "Mars/Olympus_Mons": unknown time zone Mars/Olympus_Mons`}},
		{"unparseable schedule", func(cj *batchv1.CronJob) { cj.Spec.Schedule = "61 * * * *" },
			[]string{`Warning UnparseableSchedule unparseable schedule: "61 * * * *" : end of range (61) above maximum (59): 61`}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t)
			cj := newCronJob("* * * * *")
			tc.mutate(cj)
			h.create(cj)
			if d := h.syncAt(start.Add(time.Hour)); d != 0 {
				t.Errorf("requeued after %v", d)
			}
			if got := h.jobNames(); len(got) != 0 {
				t.Errorf("jobs %v", got)
			}
			if got := h.rec.Take(); !slices.Equal(got, tc.events) {
				t.Errorf("events %v, want %v", got, tc.events)
			}
		})
	}
}

func TestMissingActiveJobIsDropped(t *testing.T) {
	h := newHarness(t)
	h.create(newCronJob("@hourly"))
	h.syncAt(at("13:00:00"))
	name := nameAt(at("13:00:00"))
	if _, err := h.api.Delete(h.ctx, jobsGVR, "default", name, nil); err != nil {
		t.Fatal(err)
	}
	h.rec.Take()
	h.syncAt(at("13:30:00"))
	if got := h.activeNames(); len(got) != 0 {
		t.Fatalf("active %v", got)
	}
	if got := h.rec.Take(); !slices.Equal(got, []string{"Normal MissingJob Active job went missing: " + name}) {
		t.Fatalf("events %v", got)
	}
}
