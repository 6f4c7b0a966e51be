// Package statefulset is the StatefulSet controller, as Kubernetes'
// pkg/controller/statefulset: pods with stable names (<set>-<ordinal>),
// hostnames and subdomain (spec.serviceName), labelled
// statefulset.kubernetes.io/pod-name, apps.kubernetes.io/pod-index and
// controller-revision-hash (the revision's name); a PVC per pod and claim
// template (<template>-<set>-<ordinal>) created before the pod and, by
// persistentVolumeClaimRetentionPolicy, owned by the set or the condemned
// pod so that the garbage collector deletes it.
//
// OrderedReady creates pods one at a time in ordinal order, each once its
// predecessors are Running and Ready, and removes them from the highest
// ordinal down, one at a time; Parallel does both at once. Templates are
// recorded as ControllerRevisions (package history): status.updateRevision
// is the template's, status.currentRevision the one the pods had before the
// update. RollingUpdate replaces pods from the highest ordinal down to
// spec.updateStrategy.rollingUpdate.partition, one at a time; OnDelete
// replaces them as they are deleted. A template changed back to an old one
// reuses its revision, renumbered as the newest (`kubectl rollout undo`).
//
// It writes only through the API it is given, never to the store.
package statefulset

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apiequality "k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"

	"github.com/orch-dev/orch/server/controllers/history"
	"github.com/orch-dev/orch/server/controllers/informer"
	"github.com/orch-dev/orch/server/controllers/queue"
	"github.com/orch-dev/orch/server/events"
)

// API is the part of orch's in-process API (apiserver.Local) the
// controller uses.
type API interface {
	Get(ctx context.Context, gvr schema.GroupVersionResource, ns, name string) (runtime.Object, error)
	Create(ctx context.Context, gvr schema.GroupVersionResource, obj runtime.Object, fieldManager string) (runtime.Object, error)
	Update(ctx context.Context, gvr schema.GroupVersionResource, obj runtime.Object, subresource, fieldManager string) (runtime.Object, error)
	Delete(ctx context.Context, gvr schema.GroupVersionResource, ns, name string, opts *metav1.DeleteOptions) (bool, error)
}

var (
	statefulSetsGVR = appsv1.SchemeGroupVersion.WithResource("statefulsets")
	podsGVR         = corev1.SchemeGroupVersion.WithResource("pods")
	claimsGVR       = corev1.SchemeGroupVersion.WithResource("persistentvolumeclaims")
	kind            = appsv1.SchemeGroupVersion.WithKind("StatefulSet")
)

const defaultRevisionHistory = 10

// Options configure the controller.
type Options struct {
	// Workers reconciling StatefulSets concurrently (default 2).
	Workers int
	// FieldManager recorded on the controller's writes.
	FieldManager string
	Logger       *slog.Logger
}

// Controller is the StatefulSet controller.
type Controller struct {
	api      API
	recorder events.Recorder
	history  *history.History
	infs     []*informer.Informer
	sets     informer.Lister[*appsv1.StatefulSet]
	pods     informer.Lister[*corev1.Pod]
	claims   informer.Lister[*corev1.PersistentVolumeClaim]
	queue    *queue.Queue
	opts     Options
	log      *slog.Logger
	now      func() time.Time
}

// New builds the controller and registers its informers with factory.
func New(api API, factory *informer.Factory, recorder events.Recorder, opts Options) *Controller {
	if opts.Workers <= 0 {
		opts.Workers = 2
	}
	if opts.FieldManager == "" {
		opts.FieldManager = "orch-statefulset-controller"
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	setInf := factory.For(statefulSetsGVR)
	podInf := factory.For(podsGVR)
	podInf.AddIndex(informer.ControllerIndex, informer.ByController)
	revInf := factory.For(history.GVR)
	claimInf := factory.For(claimsGVR)
	c := &Controller{
		api:      api,
		recorder: recorder,
		history:  history.NewHistory(api, revInf, opts.FieldManager),
		infs:     []*informer.Informer{setInf, podInf, revInf, claimInf},
		sets:     informer.NewLister[*appsv1.StatefulSet](setInf),
		pods:     informer.NewLister[*corev1.Pod](podInf),
		claims:   informer.NewLister[*corev1.PersistentVolumeClaim](claimInf),
		queue:    queue.New(queue.DefaultRateLimiter()),
		opts:     opts,
		log:      opts.Logger.With("controller", "statefulset"),
		now:      time.Now,
	}
	setInf.AddHandler(informer.OnAny(c.enqueue))
	podInf.AddHandler(informer.HandlerFuncs{
		AddFunc: c.podChanged,
		UpdateFunc: func(oldObj, obj runtime.Object) {
			c.podChanged(oldObj)
			c.podChanged(obj)
		},
		DeleteFunc: c.podChanged,
	})
	revInf.AddHandler(informer.OnAny(c.enqueueOwner))
	return c
}

// Run reconciles StatefulSets until ctx ends.
func (c *Controller) Run(ctx context.Context) error {
	if !informer.WaitForSync(ctx, c.infs...) {
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

func ownerKey(obj metav1.Object) (string, bool) {
	ref := metav1.GetControllerOfNoCopy(obj)
	if ref == nil || ref.Kind != kind.Kind || ref.APIVersion != kind.GroupVersion().String() {
		return "", false
	}
	return informer.Key(obj.GetNamespace(), ref.Name), true
}

func (c *Controller) enqueueOwner(obj runtime.Object) {
	m, err := meta.Accessor(obj)
	if err != nil {
		return
	}
	if key, ok := ownerKey(m); ok {
		c.queue.Add(key)
	}
}

// podChanged queues the pod's StatefulSet, or for an orphan the sets that
// could adopt it.
func (c *Controller) podChanged(obj runtime.Object) {
	pod, ok := obj.(*corev1.Pod)
	if !ok {
		return
	}
	if key, owned := ownerKey(pod); owned {
		c.queue.Add(key)
		return
	}
	if metav1.GetControllerOfNoCopy(pod) != nil || pod.DeletionTimestamp != nil {
		return
	}
	for _, set := range c.sets.List(pod.Namespace, nil) {
		sel, err := metav1.LabelSelectorAsSelector(set.Spec.Selector)
		if err == nil && !sel.Empty() && sel.Matches(labels.Set(pod.Labels)) && isMemberOf(set, pod) {
			c.queue.Add(informer.Key(set.Namespace, set.Name))
		}
	}
}

// reconcile converges the StatefulSet with key ns/name.
func (c *Controller) reconcile(ctx context.Context, key string) error {
	ns, name := informer.SplitKey(key)
	set, ok := c.sets.Get(ns, name)
	if !ok {
		return nil
	}
	sel, err := metav1.LabelSelectorAsSelector(set.Spec.Selector)
	if err != nil || sel.Empty() {
		// An empty selector would select every pod (validation forbids it).
		return nil
	}
	revisions, err := c.history.Claim(ctx, set, kind, sel)
	if err != nil {
		return fmt.Errorf("claim revisions of stateful set %s: %w", key, err)
	}
	pods, err := history.Claim(ctx, c.pods.Controlled(ns, set.UID), set, kind, sel,
		func(p *corev1.Pod) bool { return isMemberOf(set, p) }, c.updatePod)
	if err != nil {
		return fmt.Errorf("claim pods of stateful set %s: %w", key, err)
	}

	current, update, collisionCount, err := c.revisions(ctx, set, revisions)
	if err != nil {
		return err
	}
	s := &syncState{c: c, set: set, current: current, update: update, now: c.now()}
	if s.currentTemplate, err = history.TemplateOf(current); err != nil {
		return err
	}
	if s.updateTemplate, err = history.TemplateOf(update); err != nil {
		return err
	}
	syncErr := s.sync(ctx, pods)

	st := s.status
	st.ObservedGeneration = set.Generation
	st.CurrentRevision = current.Name
	st.UpdateRevision = update.Name
	st.CollisionCount = &collisionCount
	st.Conditions = set.Status.Conditions
	completeRollingUpdate(set, &st)
	if err := c.updateStatus(ctx, set, st); err != nil {
		return err
	}
	if syncErr != nil {
		return syncErr
	}
	if err := c.truncateHistory(ctx, set, pods, revisions, current, update); err != nil {
		return err
	}
	if s.requeue > 0 {
		return queue.RequeueAfter(s.requeue)
	}
	return nil
}

// revisions returns the set's current and update revisions, creating the
// update revision or renumbering an equal old one (rollback) as needed.
func (c *Controller) revisions(ctx context.Context, set *appsv1.StatefulSet, revisions []*appsv1.ControllerRevision) (current, update *appsv1.ControllerRevision, collisionCount int32, err error) {
	history.Sort(revisions)
	if set.Status.CollisionCount != nil {
		collisionCount = *set.Status.CollisionCount
	}
	data, err := history.TemplatePatch(&set.Spec.Template)
	if err != nil {
		return nil, nil, 0, fmt.Errorf("stateful set %s/%s: %w", set.Namespace, set.Name, err)
	}
	update = history.New(set, kind, set.Spec.Template.Labels, data, history.Next(revisions), &collisionCount)
	equal := history.FindEqual(revisions, update)
	switch {
	case len(equal) > 0 && history.Equal(revisions[len(revisions)-1], equal[len(equal)-1]):
		// The template has not changed since the latest revision.
		update = revisions[len(revisions)-1]
	case len(equal) > 0:
		// Back to an older template: it becomes the newest revision.
		update, err = c.history.UpdateRevision(ctx, equal[len(equal)-1], update.Revision)
	default:
		update, err = c.history.Create(ctx, set, update, &collisionCount)
	}
	if err != nil {
		return nil, nil, collisionCount, err
	}
	for _, r := range revisions {
		if r.Name == set.Status.CurrentRevision {
			current = r
			break
		}
	}
	if current == nil {
		current = update
	}
	return current, update, collisionCount, nil
}

// completeRollingUpdate makes the update revision current once every
// replica runs it and is ready.
func completeRollingUpdate(set *appsv1.StatefulSet, st *appsv1.StatefulSetStatus) {
	if set.Spec.UpdateStrategy.Type == appsv1.RollingUpdateStatefulSetStrategyType &&
		st.UpdatedReplicas == st.Replicas && st.ReadyReplicas == st.Replicas {
		st.CurrentReplicas = st.UpdatedReplicas
		st.CurrentRevision = st.UpdateRevision
	}
}

func (c *Controller) updateStatus(ctx context.Context, set *appsv1.StatefulSet, st appsv1.StatefulSetStatus) error {
	if apiequality.Semantic.DeepEqual(st, set.Status) {
		return nil
	}
	updated := set.DeepCopy()
	updated.Status = st
	if _, err := c.api.Update(ctx, statefulSetsGVR, updated, "status", c.opts.FieldManager); err != nil && !apierrors.IsNotFound(err) {
		return fmt.Errorf("update status of stateful set %s/%s: %w", set.Namespace, set.Name, err)
	}
	return nil
}

// truncateHistory deletes the oldest revisions that no pod uses and that
// are neither current nor update beyond revisionHistoryLimit.
func (c *Controller) truncateHistory(ctx context.Context, set *appsv1.StatefulSet, pods []*corev1.Pod, revisions []*appsv1.ControllerRevision, current, update *appsv1.ControllerRevision) error {
	live := map[string]bool{current.Name: true, update.Name: true}
	for _, p := range pods {
		live[podRevision(p)] = true
	}
	limit := int32(defaultRevisionHistory)
	if set.Spec.RevisionHistoryLimit != nil {
		limit = *set.Spec.RevisionHistoryLimit
	}
	return c.history.Truncate(ctx, revisions, func(r *appsv1.ControllerRevision) bool { return live[r.Name] }, limit)
}

func (c *Controller) updatePod(ctx context.Context, pod *corev1.Pod) (*corev1.Pod, error) {
	// pod comes from the slimmed shared cache: write it with its full spec.
	pod, err := informer.WithLiveSpec(ctx, c.api, pod)
	if err != nil {
		return nil, err
	}
	obj, err := c.api.Update(ctx, podsGVR, pod, "", c.opts.FieldManager)
	if err != nil {
		return nil, err
	}
	out, ok := obj.(*corev1.Pod)
	if !ok {
		return nil, fmt.Errorf("update pod %s/%s: unexpected type %T", pod.Namespace, pod.Name, obj)
	}
	return out, nil
}

func (c *Controller) event(set *appsv1.StatefulSet, eventType, reason, format string, args ...any) {
	if c.recorder == nil {
		return
	}
	ref := set.DeepCopy()
	ref.SetGroupVersionKind(kind)
	c.recorder.Eventf(ref, eventType, reason, format, args...)
}
