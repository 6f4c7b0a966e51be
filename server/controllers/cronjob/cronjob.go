// Package cronjob is the CronJob controller: it creates a Job from a
// CronJob's template at every scheduled time, as Kubernetes'
// pkg/controller/cronjob (ControllerV2) does.
//
// Jobs are named <cronjob>-<scheduled time in minutes since the epoch>,
// so a scheduled time is never run twice, and carry the
// batch.kubernetes.io/cronjob-scheduled-timestamp annotation. The
// controller honours concurrencyPolicy (Allow, Forbid, Replace), suspend,
// startingDeadlineSeconds (late and missed start times), timeZone, and the
// successful/failed jobs history limits; it keeps status.active,
// lastScheduleTime and lastSuccessfulTime, and requeues each CronJob for
// its next scheduled time.
//
// It writes only through the API it is given, never to the store.
package cronjob

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"time"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	apiequality "k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"

	"github.com/orch-dev/orch/internal/cron"
	"github.com/orch-dev/orch/server/controllers/informer"
	"github.com/orch-dev/orch/server/controllers/queue"
	"github.com/orch-dev/orch/server/events"
)

// API is the part of orch's in-process API (apiserver.Local) the
// controller writes through.
type API interface {
	Get(ctx context.Context, gvr schema.GroupVersionResource, ns, name string) (runtime.Object, error)
	Create(ctx context.Context, gvr schema.GroupVersionResource, obj runtime.Object, fieldManager string) (runtime.Object, error)
	Update(ctx context.Context, gvr schema.GroupVersionResource, obj runtime.Object, subresource, fieldManager string) (runtime.Object, error)
	Delete(ctx context.Context, gvr schema.GroupVersionResource, ns, name string, opts *metav1.DeleteOptions) (bool, error)
}

var (
	cronJobsGVR = batchv1.SchemeGroupVersion.WithResource("cronjobs")
	jobsGVR     = batchv1.SchemeGroupVersion.WithResource("jobs")
	cronJobKind = batchv1.SchemeGroupVersion.WithKind("CronJob")
)

// nextScheduleDelta is added to requeue delays so that the reconcile
// happens just after, never just before, the scheduled time.
const nextScheduleDelta = 100 * time.Millisecond

// tooManyMissed is how many missed start times make the controller warn.
const tooManyMissed = 100

// Options configure the controller.
type Options struct {
	// Workers reconciling cronjobs concurrently (default 5, as Kubernetes).
	Workers int
	// FieldManager recorded on the controller's writes.
	FieldManager string
	// Now is the clock (default time.Now); tests inject a fake one.
	Now func() time.Time
	// Location interprets schedules of CronJobs without spec.timeZone
	// (default time.Local, the controller's zone, as in Kubernetes).
	Location *time.Location
	Logger   *slog.Logger
}

// Controller is the CronJob controller.
type Controller struct {
	api      API
	cronJobs *informer.Informer
	jobs     *informer.Informer
	jobList  informer.Lister[*batchv1.Job]
	queue    *queue.Queue
	recorder events.Recorder
	opts     Options
	log      *slog.Logger
	now      func() time.Time
}

// New builds the controller and registers its informers with factory.
// recorder emits the CronJob's events (component "cronjob-controller").
func New(api API, factory *informer.Factory, recorder events.Recorder, opts Options) *Controller {
	if opts.Workers <= 0 {
		opts.Workers = 5
	}
	if opts.FieldManager == "" {
		opts.FieldManager = "orch-cronjob-controller"
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Location == nil {
		opts.Location = time.Local
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	c := &Controller{
		api:      api,
		cronJobs: factory.For(cronJobsGVR),
		jobs:     factory.For(jobsGVR),
		queue:    queue.New(nil),
		recorder: recorder,
		opts:     opts,
		log:      opts.Logger.With("controller", "cronjob"),
		now:      opts.Now,
	}
	c.jobList = informer.NewLister[*batchv1.Job](c.jobs)
	c.cronJobs.AddHandler(informer.OnAddOrUpdate(c.enqueue))
	c.jobs.AddHandler(informer.HandlerFuncs{
		AddFunc: c.enqueueOwner,
		UpdateFunc: func(oldObj, obj runtime.Object) {
			c.enqueueOwner(oldObj)
			c.enqueueOwner(obj)
		},
		DeleteFunc: c.enqueueOwner,
	})
	return c
}

// Run reconciles cronjobs until ctx ends.
func (c *Controller) Run(ctx context.Context) error {
	if !informer.WaitForSync(ctx, c.cronJobs, c.jobs) {
		return nil
	}
	c.log.Info("started", "workers", c.opts.Workers)
	queue.RunWorkers(ctx, c.queue, c.opts.Workers, c.log, c.reconcile)
	return nil
}

func (c *Controller) enqueue(obj runtime.Object) {
	if key, err := informer.KeyOf(obj); err == nil {
		c.queue.Add(key)
	}
}

// enqueueOwner queues the CronJob controlling a Job.
func (c *Controller) enqueueOwner(obj runtime.Object) {
	job, ok := obj.(*batchv1.Job)
	if !ok {
		return
	}
	if ref := metav1.GetControllerOf(job); ref != nil && ref.Kind == cronJobKind.Kind && ref.APIVersion == cronJobKind.GroupVersion().String() {
		c.queue.Add(informer.Key(job.Namespace, ref.Name))
	}
}

// reconcile converges the CronJob named by key and requeues it for its
// next scheduled time.
func (c *Controller) reconcile(ctx context.Context, key string) error {
	ns, name := informer.SplitKey(key)
	obj, err := c.api.Get(ctx, cronJobsGVR, ns, name)
	if apierrors.IsNotFound(err) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("get cronjob %s: %w", key, err)
	}
	cj, ok := obj.(*batchv1.CronJob)
	if !ok {
		return fmt.Errorf("get cronjob %s: unexpected type %T", key, obj)
	}
	jobs := c.jobsOf(cj)
	updated := cj.DeepCopy()

	requeue, syncErr := c.sync(ctx, updated, jobs)
	if updated.DeletionTimestamp == nil {
		c.cleanupFinished(ctx, updated, jobs)
	}
	if !apiequality.Semantic.DeepEqual(&cj.Status, &updated.Status) {
		if _, err := c.api.Update(ctx, cronJobsGVR, updated, "status", c.opts.FieldManager); err != nil {
			return fmt.Errorf("update status of cronjob %s: %w", key, err)
		}
	}
	if syncErr != nil {
		return syncErr
	}
	if requeue > 0 {
		return queue.RequeueAfter(requeue)
	}
	return nil
}

// jobsOf lists the Jobs the CronJob controls, from the cache.
func (c *Controller) jobsOf(cj *batchv1.CronJob) []*batchv1.Job {
	var out []*batchv1.Job
	for _, job := range c.jobList.List(cj.Namespace, nil) {
		if ref := metav1.GetControllerOf(job); ref != nil && ref.UID == cj.UID {
			out = append(out, job)
		}
	}
	return out
}

// sync updates cj's status from its jobs and starts the Job of the most
// recent unmet scheduled time, as Kubernetes' syncCronJob. It returns when
// to look again.
func (c *Controller) sync(ctx context.Context, cj *batchv1.CronJob, jobs []*batchv1.Job) (time.Duration, error) {
	now := c.now()
	children := map[types.UID]bool{}
	for _, job := range jobs {
		children[job.UID] = true
		active := inActiveList(cj, job.UID)
		done, cond := finishedStatus(job)
		switch {
		case !active && !done:
			// Created just before a crash (or status conflict), or by
			// someone else: Kubernetes only reports it.
			c.recorder.Eventf(cj, corev1.EventTypeWarning, "UnexpectedJob", "Saw a job that the controller did not create or forgot: %s", job.Name)
		case active && done:
			deleteFromActiveList(cj, job.UID)
			c.recorder.Eventf(cj, corev1.EventTypeNormal, "SawCompletedJob", "Saw completed job: %s, condition: %v", job.Name, cond)
		}
		if done && cond == batchv1.JobComplete && job.Status.CompletionTime != nil {
			if t := cj.Status.LastSuccessfulTime; t == nil || job.Status.CompletionTime.After(t.Time) {
				cj.Status.LastSuccessfulTime = job.Status.CompletionTime.DeepCopy()
			}
		}
	}
	// An active Job the cache does not show may be new, or gone.
	for _, ref := range slices.Clone(cj.Status.Active) {
		if children[ref.UID] {
			continue
		}
		obj, err := c.api.Get(ctx, jobsGVR, ref.Namespace, ref.Name)
		switch {
		case apierrors.IsNotFound(err):
		case err != nil:
			return 0, fmt.Errorf("get job %s/%s: %w", ref.Namespace, ref.Name, err)
		default:
			if job, ok := obj.(*batchv1.Job); ok && job.UID == ref.UID {
				continue
			}
		}
		c.recorder.Eventf(cj, corev1.EventTypeNormal, "MissingJob", "Active job went missing: %v", ref.Name)
		deleteFromActiveList(cj, ref.UID)
	}

	if cj.DeletionTimestamp != nil {
		return 0, nil
	}
	loc := c.opts.Location
	if tz := cj.Spec.TimeZone; tz != nil {
		l, err := time.LoadLocation(*tz)
		if err != nil {
			c.recorder.Eventf(cj, corev1.EventTypeWarning, "UnknownTimeZone", "invalid timeZone: %q: %s", *tz, err)
			return 0, nil
		}
		loc = l
	}
	if cj.Spec.Suspend != nil && *cj.Spec.Suspend {
		return 0, nil
	}
	parsed, err := cron.Parse(cj.Spec.Schedule)
	if err != nil {
		c.recorder.Eventf(cj, corev1.EventTypeWarning, "UnparseableSchedule", "unparseable schedule: %q : %s", cj.Spec.Schedule, err)
		return 0, nil
	}
	sched := schedule{parsed, loc}

	scheduled, missed, err := mostRecentScheduleTime(cj, now, sched, true)
	if err != nil {
		c.recorder.Eventf(cj, corev1.EventTypeWarning, "InvalidSchedule", "invalid schedule: %s : %s", cj.Spec.Schedule, err)
		return 0, nil
	}
	next := func() time.Duration { return nextScheduleDelay(cj, now, sched) }
	if scheduled == nil {
		return next(), nil
	}
	if missed > tooManyMissed {
		c.recorder.Eventf(cj, corev1.EventTypeWarning, "TooManyMissedTimes", "too many missed start times. Set or decrease .spec.startingDeadlineSeconds or check clock skew")
		c.log.Info("too many missed start times", "cronjob", informer.Key(cj.Namespace, cj.Name), "missed", missed)
	}
	if d := cj.Spec.StartingDeadlineSeconds; d != nil && scheduled.Add(time.Duration(*d)*time.Second).Before(now) {
		c.recorder.Eventf(cj, corev1.EventTypeWarning, "MissSchedule", "Missed scheduled time to start a job: %s", scheduled.UTC().Format(time.RFC1123Z))
		return next(), nil
	}
	name := jobName(cj, *scheduled)
	if inActiveListByName(cj, name) || (cj.Status.LastScheduleTime != nil && cj.Status.LastScheduleTime.Time.Equal(*scheduled)) {
		return next(), nil
	}
	switch cj.Spec.ConcurrencyPolicy {
	case batchv1.ForbidConcurrent:
		if len(cj.Status.Active) > 0 {
			// The missed time is retried (late) once the active Job ends.
			c.recorder.Eventf(cj, corev1.EventTypeNormal, "JobAlreadyActive", "Not starting job because prior execution is running and concurrency policy is Forbid")
			return next(), nil
		}
	case batchv1.ReplaceConcurrent:
		for _, ref := range slices.Clone(cj.Status.Active) {
			if err := c.deleteJob(ctx, cj, ref.Namespace, ref.Name, ref.UID); err != nil {
				return 0, err
			}
		}
	}

	job := newJob(cj, *scheduled, loc)
	created, err := c.api.Create(ctx, jobsGVR, job, c.opts.FieldManager)
	switch {
	case apierrors.IsAlreadyExists(err):
		obj, err := c.api.Get(ctx, jobsGVR, job.Namespace, job.Name)
		if err != nil {
			return 0, fmt.Errorf("get job %s/%s: %w", job.Namespace, job.Name, err)
		}
		existing, ok := obj.(*batchv1.Job)
		if !ok || !metav1.IsControlledBy(existing, cj) || inActiveList(cj, existing.UID) {
			// Someone else's, or already recorded.
			return next(), nil
		}
		created = existing
	case err != nil:
		c.recorder.Eventf(cj, corev1.EventTypeWarning, "FailedCreate", "Error creating job: %v", err)
		return 0, fmt.Errorf("create job %s/%s: %w", job.Namespace, job.Name, err)
	default:
		c.recorder.Eventf(cj, corev1.EventTypeNormal, "SuccessfulCreate", "Created job %v", job.Name)
	}
	createdJob, ok := created.(*batchv1.Job)
	if !ok {
		return 0, fmt.Errorf("create job %s/%s: unexpected type %T", job.Namespace, job.Name, created)
	}
	cj.Status.Active = append(cj.Status.Active, corev1.ObjectReference{
		Kind: "Job", APIVersion: batchv1.SchemeGroupVersion.String(),
		Namespace: createdJob.Namespace, Name: createdJob.Name, UID: createdJob.UID,
		ResourceVersion: createdJob.ResourceVersion,
	})
	cj.Status.LastScheduleTime = &metav1.Time{Time: *scheduled}
	return next(), nil
}

// newJob builds the Job of one scheduled time from the CronJob's template.
func newJob(cj *batchv1.CronJob, scheduled time.Time, loc *time.Location) *batchv1.Job {
	tmpl := cj.Spec.JobTemplate.DeepCopy()
	annotations := tmpl.Annotations
	if annotations == nil {
		annotations = map[string]string{}
	}
	// Kubernetes writes the time in the CronJob's timeZone, UTC without.
	zone := time.UTC
	if cj.Spec.TimeZone != nil {
		zone = loc
	}
	annotations[batchv1.CronJobScheduledTimestampAnnotation] = scheduled.In(zone).Format(time.RFC3339)
	return &batchv1.Job{
		ObjectMeta: metav1.ObjectMeta{
			Name:            jobName(cj, scheduled),
			Namespace:       cj.Namespace,
			Labels:          tmpl.Labels,
			Annotations:     annotations,
			OwnerReferences: []metav1.OwnerReference{*metav1.NewControllerRef(cj, cronJobKind)},
		},
		Spec: tmpl.Spec,
	}
}

// jobName is <cronjob>-<scheduled time in minutes since the epoch>: the
// name is the lock that keeps a scheduled time from running twice.
func jobName(cj *batchv1.CronJob, scheduled time.Time) string {
	return fmt.Sprintf("%s-%d", cj.Name, scheduled.Unix()/60)
}

// deleteJob deletes an active Job (background propagation, as Kubernetes)
// and drops it from the active list.
func (c *Controller) deleteJob(ctx context.Context, cj *batchv1.CronJob, ns, name string, uid types.UID) error {
	policy := metav1.DeletePropagationBackground
	opts := &metav1.DeleteOptions{PropagationPolicy: &policy}
	if uid != "" {
		opts.Preconditions = &metav1.Preconditions{UID: &uid}
	}
	if _, err := c.api.Delete(ctx, jobsGVR, ns, name, opts); err != nil && !apierrors.IsNotFound(err) {
		c.recorder.Eventf(cj, corev1.EventTypeWarning, "FailedDelete", "Deleted job: %v", err)
		return fmt.Errorf("delete job %s/%s: %w", ns, name, err)
	}
	deleteFromActiveList(cj, uid)
	c.recorder.Eventf(cj, corev1.EventTypeNormal, "SuccessfulDelete", "Deleted job %v", name)
	return nil
}

// cleanupFinished deletes the oldest finished Jobs beyond the history
// limits (nil: keep all).
func (c *Controller) cleanupFinished(ctx context.Context, cj *batchv1.CronJob, jobs []*batchv1.Job) {
	var succeeded, failed []*batchv1.Job
	for _, job := range jobs {
		switch done, cond := finishedStatus(job); {
		case done && cond == batchv1.JobComplete:
			succeeded = append(succeeded, job)
		case done && cond == batchv1.JobFailed:
			failed = append(failed, job)
		}
	}
	for _, h := range []struct {
		jobs  []*batchv1.Job
		limit *int32
	}{{succeeded, cj.Spec.SuccessfulJobsHistoryLimit}, {failed, cj.Spec.FailedJobsHistoryLimit}} {
		if h.limit == nil || len(h.jobs) <= int(*h.limit) {
			continue
		}
		slices.SortStableFunc(h.jobs, byStartTime)
		for _, job := range h.jobs[:len(h.jobs)-int(*h.limit)] {
			if err := c.deleteJob(ctx, cj, job.Namespace, job.Name, job.UID); err != nil {
				c.log.Warn("couldn't delete finished job", "cronjob", informer.Key(cj.Namespace, cj.Name), "job", job.Name, "err", err)
			}
		}
	}
}

// byStartTime orders Jobs oldest first by status.startTime (Jobs without
// one last), then by name, as Kubernetes' byJobStartTime.
func byStartTime(a, b *batchv1.Job) int {
	as, bs := a.Status.StartTime, b.Status.StartTime
	switch {
	case as == nil && bs != nil:
		return 1
	case as != nil && bs == nil:
		return -1
	case as != nil && !as.Equal(bs):
		return as.Compare(bs.Time)
	}
	return strings.Compare(a.Name, b.Name)
}

// finishedStatus reports whether the Job finished and with which condition.
func finishedStatus(job *batchv1.Job) (bool, batchv1.JobConditionType) {
	for _, c := range job.Status.Conditions {
		if (c.Type == batchv1.JobComplete || c.Type == batchv1.JobFailed) && c.Status == corev1.ConditionTrue {
			return true, c.Type
		}
	}
	return false, ""
}

func inActiveList(cj *batchv1.CronJob, uid types.UID) bool {
	return slices.ContainsFunc(cj.Status.Active, func(r corev1.ObjectReference) bool { return r.UID == uid })
}

func inActiveListByName(cj *batchv1.CronJob, name string) bool {
	return slices.ContainsFunc(cj.Status.Active, func(r corev1.ObjectReference) bool {
		return r.Name == name && r.Namespace == cj.Namespace
	})
}

func deleteFromActiveList(cj *batchv1.CronJob, uid types.UID) {
	cj.Status.Active = slices.DeleteFunc(cj.Status.Active, func(r corev1.ObjectReference) bool { return r.UID == uid })
}

// schedule is a CronJob's schedule evaluated in its time zone.
type schedule struct {
	cron.Schedule
	loc *time.Location
}

// Next returns the first activation strictly after t, in the CronJob's
// zone, or the zero time if there is none within five years.
func (s schedule) Next(t time.Time) time.Time { return s.Schedule.Next(t.In(s.loc)) }

// mostRecentScheduleTime returns the latest scheduled time in
// (earliest, now] and how many were missed, as Kubernetes computes them:
// earliest is the last schedule time (else the creation time), moved up to
// now-startingDeadlineSeconds when withDeadline. The count is estimated
// from the interval between two activations rather than enumerated, so a
// clock off by years costs nothing.
func mostRecentScheduleTime(cj *batchv1.CronJob, now time.Time, sched schedule, withDeadline bool) (*time.Time, int64, error) {
	earliest := earliestTime(cj, now, withDeadline)
	t1 := sched.Next(earliest)
	if t1.IsZero() || now.Before(t1) {
		return nil, 0, nil
	}
	t2 := sched.Next(t1)
	if t2.IsZero() || now.Before(t2) {
		return &t1, 1, nil
	}
	interval := int64(t2.Sub(t1).Round(time.Second).Seconds())
	if interval < 1 {
		return nil, 0, fmt.Errorf("time difference between two schedules is less than 1 second")
	}
	missed := int64(now.Sub(t1).Seconds())/interval + 1
	var recent time.Time
	t := t1
	if skip := missed - 2; skip > 0 {
		t = alignedAtOrAfter(sched, t1.Add(time.Duration(skip*interval)*time.Second))
	}
	for ; !t.IsZero() && !t.After(now); t = sched.Next(t) {
		recent = t
	}
	if recent.IsZero() {
		return nil, missed, nil
	}
	return &recent, missed, nil
}

// alignedAtOrAfter returns the first activation at or after t. Jumping
// ahead by whole intervals lands on an activation of a regular schedule,
// but between two of an irregular one (monthly, day-of-week lists):
// Kubernetes would then report t itself as a scheduled time.
func alignedAtOrAfter(sched schedule, t time.Time) time.Time {
	if _, every := sched.Every(); every {
		return t // t1 plus whole periods: always an activation
	}
	// Cron activations are whole minutes; t is one when t1 is.
	return sched.Next(t.Add(-time.Second))
}

func earliestTime(cj *batchv1.CronJob, now time.Time, withDeadline bool) time.Time {
	earliest := cj.CreationTimestamp.Time
	if cj.Status.LastScheduleTime != nil {
		earliest = cj.Status.LastScheduleTime.Time
	}
	if withDeadline && cj.Spec.StartingDeadlineSeconds != nil {
		if d := now.Add(-time.Duration(*cj.Spec.StartingDeadlineSeconds) * time.Second); d.After(earliest) {
			earliest = d
		}
	}
	return earliest
}

// nextScheduleDelay is how long until just after the next scheduled time
// (0 when there is none).
func nextScheduleDelay(cj *batchv1.CronJob, now time.Time, sched schedule) time.Duration {
	from := earliestTime(cj, now, false)
	if recent, _, err := mostRecentScheduleTime(cj, now, sched, false); err == nil && recent != nil {
		from = *recent
	}
	next := sched.Next(from)
	if next.IsZero() {
		return 0
	}
	return next.Add(nextScheduleDelta).Sub(now)
}
