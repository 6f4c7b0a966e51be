// Package job is the Job controller: it runs a Job's pods to completion as
// Kubernetes' pkg/controller/job does, and deletes finished Jobs once their
// ttlSecondsAfterFinished has passed (Kubernetes' ttlafterfinished
// controller).
//
// Pods are created from the Job's template up to spec.parallelism while
// completions remain (NonIndexed or Indexed completion mode), and carry the
// batch.kubernetes.io/job-tracking finalizer: a finished pod is first
// recorded in status.uncountedTerminatedPods, then its finalizer is
// removed, then it is moved into status.succeeded/failed, so counts survive
// pod deletion and controller restarts without counting a pod twice.
// Failures are retried with exponential back-off up to spec.backoffLimit;
// spec.podFailurePolicy rules can fail the Job at once or ignore a
// failure; spec.activeDeadlineSeconds bounds the run; spec.suspend stops
// it. A finished Job gets the SuccessCriteriaMet or FailureTarget
// condition first and Complete or Failed once its pods are gone, as
// Kubernetes 1.33 does.
//
// It writes only through the API it is given, never to the store.
package job

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"

	"github.com/orch-dev/orch/server/controllers/expectations"
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
	jobsGVR = batchv1.SchemeGroupVersion.WithResource("jobs")
	podsGVR = corev1.SchemeGroupVersion.WithResource("pods")
)

// Labels, annotations and the finalizer Kubernetes puts on a Job's pods.
const (
	trackingFinalizer    = batchv1.JobTrackingFinalizer // batch.kubernetes.io/job-tracking
	completionIndexKey   = batchv1.JobCompletionIndexAnnotation
	completionIndexEnv   = "JOB_COMPLETION_INDEX"
	labelJobName         = batchv1.JobNameLabel       // batch.kubernetes.io/job-name
	labelControllerUID   = batchv1.ControllerUidLabel // batch.kubernetes.io/controller-uid
	legacyLabelJobName   = "job-name"
	legacyLabelControlID = "controller-uid"
)

// podKeyPrefix marks queue keys of pods whose Job is gone but which still
// carry the tracking finalizer; job keys never contain ':'.
const podKeyPrefix = "pod:"

// Options configure the controller.
type Options struct {
	// Workers reconciling jobs concurrently (default 5, as Kubernetes).
	Workers int
	// FieldManager recorded on the controller's writes.
	FieldManager string
	// Now is the clock (default time.Now); tests inject a fake one.
	Now    func() time.Time
	Logger *slog.Logger
}

// Controller is the Job controller.
type Controller struct {
	api      API
	jobs     *informer.Informer
	pods     *informer.Informer
	podList  informer.Lister[*corev1.Pod]
	queue    *queue.Queue
	recorder events.Recorder
	opts     Options
	log      *slog.Logger
	now      func() time.Time
	// expect tracks pod creates by name and deletes by UID.
	expect     *expectations.Expectations
	finalizers *finalizerExpectations

	mu      sync.Mutex
	backoff map[types.UID]backoffRecord
}

// New builds the controller and registers its informers with factory.
// recorder emits the Job's events (component "job-controller").
func New(api API, factory *informer.Factory, recorder events.Recorder, opts Options) *Controller {
	if opts.Workers <= 0 {
		opts.Workers = 5
	}
	if opts.FieldManager == "" {
		opts.FieldManager = "orch-job-controller"
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	c := &Controller{
		api:      api,
		jobs:     factory.For(jobsGVR),
		pods:     factory.For(podsGVR),
		recorder: recorder,
		// Kubernetes' job controller retries from 1 s up to 10 min.
		queue:      queue.New(queue.NewExponentialRateLimiter(time.Second, 10*time.Minute)),
		opts:       opts,
		log:        opts.Logger.With("controller", "job"),
		now:        opts.Now,
		expect:     expectations.New(expectations.DefaultTimeout),
		finalizers: newFinalizerExpectations(),
		backoff:    map[types.UID]backoffRecord{},
	}
	c.pods.AddIndex(informer.ControllerIndex, informer.ByController)
	c.podList = informer.NewLister[*corev1.Pod](c.pods)
	c.jobs.AddHandler(informer.HandlerFuncs{
		AddFunc:    c.enqueueJob,
		UpdateFunc: func(_, obj runtime.Object) { c.enqueueJob(obj) },
		DeleteFunc: c.jobDeleted,
	})
	c.pods.AddHandler(informer.HandlerFuncs{
		AddFunc:    c.podAdded,
		UpdateFunc: c.podUpdated,
		DeleteFunc: c.podDeleted,
	})
	return c
}

// Run reconciles jobs until ctx ends.
func (c *Controller) Run(ctx context.Context) error {
	if !informer.WaitForSync(ctx, c.jobs, c.pods) {
		return nil
	}
	c.log.Info("started", "workers", c.opts.Workers)
	queue.RunWorkers(ctx, c.queue, c.opts.Workers, c.log, c.reconcile)
	return nil
}

func (c *Controller) enqueueJob(obj runtime.Object) {
	if key, err := informer.KeyOf(obj); err == nil {
		c.queue.Add(key)
	}
}

func (c *Controller) jobDeleted(obj runtime.Object) {
	job, ok := obj.(*batchv1.Job)
	if !ok {
		return
	}
	key := informer.Key(job.Namespace, job.Name)
	c.expect.Forget(key)
	c.finalizers.forget(key)
	c.mu.Lock()
	delete(c.backoff, job.UID)
	c.mu.Unlock()
	// Its pods may still carry the tracking finalizer: release them.
	for _, pod := range c.podList.OwnedBy(job.Namespace, job.UID) {
		if hasFinalizer(pod) {
			c.queue.Add(podKeyPrefix + informer.Key(pod.Namespace, pod.Name))
		}
	}
}

// jobOf returns the key of the Job controlling pod, if any.
func jobOf(pod *corev1.Pod) (string, bool) {
	ref := metav1.GetControllerOf(pod)
	if ref == nil || ref.Kind != "Job" || ref.APIVersion != batchv1.SchemeGroupVersion.String() {
		return "", false
	}
	return informer.Key(pod.Namespace, ref.Name), true
}

func (c *Controller) podAdded(obj runtime.Object) {
	pod, ok := obj.(*corev1.Pod)
	if !ok {
		return
	}
	key, ok := jobOf(pod)
	if !ok {
		return
	}
	c.expect.ObserveCreate(key, pod.Name)
	if pod.DeletionTimestamp != nil {
		c.expect.ObserveDelete(key, string(pod.UID))
	}
	if !hasFinalizer(pod) {
		c.finalizers.observe(key, pod.UID)
	}
	c.enqueuePodOwner(key, pod)
}

func (c *Controller) podUpdated(oldObj, obj runtime.Object) {
	pod, ok := obj.(*corev1.Pod)
	if !ok {
		return
	}
	if old, ok := oldObj.(*corev1.Pod); ok {
		if oldKey, ok := jobOf(old); ok {
			if key, _ := jobOf(pod); key != oldKey {
				c.queue.Add(oldKey)
			}
		}
	}
	c.podAdded(pod)
}

func (c *Controller) podDeleted(obj runtime.Object) {
	pod, ok := obj.(*corev1.Pod)
	if !ok {
		return
	}
	key, ok := jobOf(pod)
	if !ok {
		return
	}
	c.expect.ObserveDelete(key, string(pod.UID))
	c.finalizers.observe(key, pod.UID)
	c.queue.Add(key)
}

// enqueuePodOwner queues the pod's Job, or the pod itself when its Job is
// gone and the pod still holds the tracking finalizer.
func (c *Controller) enqueuePodOwner(key string, pod *corev1.Pod) {
	if hasFinalizer(pod) {
		ns, name := informer.SplitKey(key)
		obj, ok := c.jobs.GetByName(ns, name)
		if job, isJob := obj.(*batchv1.Job); !ok || !isJob || !ownedBy(pod, job.UID) {
			c.queue.Add(podKeyPrefix + informer.Key(pod.Namespace, pod.Name))
			return
		}
	}
	c.queue.Add(key)
}

// reconcile converges the Job (or orphaned pod) named by key.
func (c *Controller) reconcile(ctx context.Context, key string) error {
	if podKey, ok := strings.CutPrefix(key, podKeyPrefix); ok {
		return c.releaseOrphan(ctx, podKey)
	}
	ns, name := informer.SplitKey(key)
	obj, err := c.api.Get(ctx, jobsGVR, ns, name)
	if apierrors.IsNotFound(err) {
		c.expect.Forget(key)
		c.finalizers.forget(key)
		return nil
	}
	if err != nil {
		return fmt.Errorf("get job %s: %w", key, err)
	}
	job, ok := obj.(*batchv1.Job)
	if !ok {
		return fmt.Errorf("get job %s: unexpected type %T", key, obj)
	}
	v := c.view(key, job)
	if job.DeletionTimestamp != nil {
		// The garbage collector deletes the pods; they must not be held.
		return c.releaseAll(ctx, key, v)
	}
	if finished(job) {
		if err := c.releaseAll(ctx, key, v); err != nil {
			return err
		}
		return c.expireTTL(ctx, job)
	}
	return c.sync(ctx, key, job, v)
}

// podView is what one reconcile knows of a Job's pods: the cached pods and
// the controller's own expectations, read before the pods (as upstream's
// syncJob does) so that the pods are at least as new as the expectations.
// Read after, an expectation the informer met in between would be gone
// while the pods were still older than it: a pod created a moment ago
// would be missing (and created again), a pod counted a moment ago would
// still show its finalizer (and be counted again).
type podView struct {
	pods []*corev1.Pod
	// satisfied: every pod create and delete of the controller is seen.
	satisfied bool
	// released: pods whose tracking finalizer was removed (counted).
	released map[types.UID]struct{}
}

func (c *Controller) view(key string, job *batchv1.Job) podView {
	v := podView{satisfied: c.expect.Satisfied(key, c.now()), released: c.finalizers.removed(key)}
	v.pods = c.podsOf(job)
	return v
}

// counted reports whether pod's finalizer was already removed by the
// controller although the view may still show it.
func (v podView) counted(pod *corev1.Pod) bool {
	_, ok := v.released[pod.UID]
	return ok
}

// podsOf lists the pods the job controls, from the cache.
func (c *Controller) podsOf(job *batchv1.Job) []*corev1.Pod {
	return c.podList.OwnedBy(job.Namespace, job.UID)
}

func ownedBy(pod *corev1.Pod, uid types.UID) bool {
	ref := metav1.GetControllerOf(pod)
	return ref != nil && ref.UID == uid
}

func hasFinalizer(pod *corev1.Pod) bool {
	for _, f := range pod.Finalizers {
		if f == trackingFinalizer {
			return true
		}
	}
	return false
}

// releaseOrphan removes the tracking finalizer from a pod whose Job is
// gone (or is being deleted), so that the pod can go.
func (c *Controller) releaseOrphan(ctx context.Context, podKey string) error {
	ns, name := informer.SplitKey(podKey)
	pod, ok := c.podList.Get(ns, name)
	if !ok || !hasFinalizer(pod) {
		return nil
	}
	if key, ok := jobOf(pod); ok {
		_, jobName := informer.SplitKey(key)
		obj, err := c.api.Get(ctx, jobsGVR, ns, jobName)
		switch {
		case apierrors.IsNotFound(err):
		case err != nil:
			return fmt.Errorf("get job %s: %w", key, err)
		default:
			if job, ok := obj.(*batchv1.Job); ok && job.UID == metav1.GetControllerOf(pod).UID && job.DeletionTimestamp == nil {
				// The Job exists: it accounts for its pod itself.
				c.queue.Add(key)
				return nil
			}
		}
	}
	return c.removeFinalizer(ctx, pod)
}

// releaseAll removes the tracking finalizer from every pod of a Job that no
// longer counts them (finished or being deleted).
func (c *Controller) releaseAll(ctx context.Context, key string, v podView) error {
	for _, pod := range v.pods {
		if !hasFinalizer(pod) || v.counted(pod) {
			continue
		}
		if err := c.release(ctx, key, pod); err != nil {
			return err
		}
	}
	return nil
}

// release removes the tracking finalizer of a pod of the job key. The
// removal is expected before it is made, as upstream does: recorded after,
// the informer could show the pod without its finalizer first and the
// expectation would then never be met.
func (c *Controller) release(ctx context.Context, key string, pod *corev1.Pod) error {
	c.finalizers.expect(key, pod.UID)
	if err := c.removeFinalizer(ctx, pod); err != nil {
		c.finalizers.observe(key, pod.UID)
		return err
	}
	return nil
}

// removeFinalizer removes the tracking finalizer from pod, re-reading it
// after a conflict.
func (c *Controller) removeFinalizer(ctx context.Context, pod *corev1.Pod) error {
	for attempt := 0; ; attempt++ {
		if !hasFinalizer(pod) {
			return nil
		}
		updated := pod.DeepCopy()
		updated.Finalizers = updated.Finalizers[:0]
		for _, f := range pod.Finalizers {
			if f != trackingFinalizer {
				updated.Finalizers = append(updated.Finalizers, f)
			}
		}
		var err error
		if attempt == 0 {
			// The first try writes the slimmed cached pod: with its full spec.
			if updated, err = informer.WithLiveSpec(ctx, c.api, updated); apierrors.IsNotFound(err) {
				return nil
			} else if err != nil {
				return fmt.Errorf("get pod %s/%s: %w", pod.Namespace, pod.Name, err)
			}
		}
		_, err = c.api.Update(ctx, podsGVR, updated, "", c.opts.FieldManager)
		if err == nil || apierrors.IsNotFound(err) {
			return nil
		}
		if !apierrors.IsConflict(err) || attempt >= 3 {
			return fmt.Errorf("remove finalizer %s from pod %s/%s: %w", trackingFinalizer, pod.Namespace, pod.Name, err)
		}
		obj, err := c.api.Get(ctx, podsGVR, pod.Namespace, pod.Name)
		if apierrors.IsNotFound(err) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("get pod %s/%s: %w", pod.Namespace, pod.Name, err)
		}
		fresh, ok := obj.(*corev1.Pod)
		if !ok || fresh.UID != pod.UID {
			return nil
		}
		pod = fresh
	}
}

// expireTTL deletes a finished Job whose ttlSecondsAfterFinished has
// passed, or requeues it for then.
func (c *Controller) expireTTL(ctx context.Context, job *batchv1.Job) error {
	if job.Spec.TTLSecondsAfterFinished == nil {
		return nil
	}
	finishedAt := finishTime(job)
	if finishedAt.IsZero() {
		return nil
	}
	expireAt := finishedAt.Add(time.Duration(*job.Spec.TTLSecondsAfterFinished) * time.Second)
	if wait := expireAt.Sub(c.now()); wait > 0 {
		return queue.RequeueAfter(wait)
	}
	// Background propagation: the garbage collector deletes the pods.
	// The uid precondition keeps a Job re-created under the same name.
	policy := metav1.DeletePropagationBackground
	_, err := c.api.Delete(ctx, jobsGVR, job.Namespace, job.Name, &metav1.DeleteOptions{
		PropagationPolicy: &policy,
		Preconditions:     &metav1.Preconditions{UID: &job.UID},
	})
	if err != nil && !apierrors.IsNotFound(err) {
		return fmt.Errorf("delete expired job %s/%s: %w", job.Namespace, job.Name, err)
	}
	c.log.Info("deleted finished job after its TTL", "job", informer.Key(job.Namespace, job.Name))
	return nil
}

// finished reports whether the Job has its Complete or Failed condition.
func finished(job *batchv1.Job) bool {
	for _, c := range job.Status.Conditions {
		if (c.Type == batchv1.JobComplete || c.Type == batchv1.JobFailed) && c.Status == corev1.ConditionTrue {
			return true
		}
	}
	return false
}

// finishTime is when the Job finished: its completionTime, else the time
// its Complete/Failed condition became true.
func finishTime(job *batchv1.Job) time.Time {
	if job.Status.CompletionTime != nil {
		return job.Status.CompletionTime.Time
	}
	for _, c := range job.Status.Conditions {
		if (c.Type == batchv1.JobComplete || c.Type == batchv1.JobFailed) && c.Status == corev1.ConditionTrue {
			return c.LastTransitionTime.Time
		}
	}
	return time.Time{}
}
