// Package replicaset is the ReplicaSet controller, which also serves
// ReplicationControllers, as Kubernetes' pkg/controller/replicaset and
// pkg/controller/replication do.
//
// For every ReplicaSet it keeps spec.replicas active pods matching the
// selector: it adopts orphan pods that match, releases the pods it owns
// that no longer match, creates missing pods in slow-start batches (1, 2,
// 4, ...) so that a failing create (a quota, a bad template) costs one
// request rather than hundreds, and deletes surplus pods in Kubernetes'
// preference order (unscheduled, pending and not-ready pods first; see
// podsToDelete). Expectations remember its own creates and deletes until
// the pod informer has seen them, so that a lagging cache never makes it
// create or delete twice. The status (replicas, fullyLabeledReplicas,
// readyReplicas, availableReplicas, observedGeneration and the
// ReplicaFailure condition) is computed as Kubernetes does, and the events
// (SuccessfulCreate, SuccessfulDelete, FailedCreate, FailedDelete) carry
// Kubernetes' messages.
//
// ReplicationControllers are handled by the same code through a small
// adapter that presents them as ReplicaSets (see kinds.go).
//
// It writes only through the API it is given, never to the store.
package replicaset

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/rand"

	"github.com/orch-dev/orch/server/controllers/expectations"
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

var podsGVR = corev1.SchemeGroupVersion.WithResource("pods")

const (
	// defaultBurstReplicas bounds the creates or deletes of one sync, as
	// Kubernetes' --concurrent-rs-syncs companion BurstReplicas (500).
	defaultBurstReplicas = 500
	// expectationsRecheck is when a ReplicaSet waiting for its own writes
	// to show in the cache looks again, in case an event was lost.
	expectationsRecheck = 10 * time.Second
)

// Options configure the controller.
type Options struct {
	// BurstReplicas bounds the pods created or deleted in one sync
	// (default 500).
	BurstReplicas int
	// FieldManager recorded on the controller's writes (default
	// "orch-replicaset-controller" or "orch-replication-controller").
	FieldManager string
	Logger       *slog.Logger
}

// Controller is the ReplicaSet (or ReplicationController) controller.
type Controller struct {
	api      API
	kind     *workloadKind
	recorder events.Recorder
	sets     *informer.Informer
	podInf   *informer.Informer
	pods     informer.Lister[*corev1.Pod]
	queue    *queue.Queue
	expect   *expectations.Expectations
	opts     Options
	log      *slog.Logger
	now      func() time.Time
	// podSuffix returns the random part of a new pod's name.
	podSuffix func() string
}

// New builds the ReplicaSet controller and registers its informers with
// factory. recorder should be the "replicaset-controller" component's.
func New(api API, factory *informer.Factory, recorder events.Recorder, opts Options) *Controller {
	return newController(api, factory, recorder, replicaSetKind(), opts)
}

// NewForReplicationControllers builds the same controller for core/v1
// ReplicationControllers. recorder should be the "replication-controller"
// component's.
func NewForReplicationControllers(api API, factory *informer.Factory, recorder events.Recorder, opts Options) *Controller {
	return newController(api, factory, recorder, replicationControllerKind(), opts)
}

func newController(api API, factory *informer.Factory, recorder events.Recorder, kind *workloadKind, opts Options) *Controller {
	if opts.BurstReplicas <= 0 {
		opts.BurstReplicas = defaultBurstReplicas
	}
	if opts.FieldManager == "" {
		opts.FieldManager = kind.fieldManager
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	setInf := factory.For(kind.gvr)
	podInf := factory.For(podsGVR)
	podInf.AddIndex(informer.ControllerIndex, informer.ByController)
	c := &Controller{
		api:       api,
		kind:      kind,
		recorder:  recorder,
		sets:      setInf,
		podInf:    podInf,
		pods:      informer.NewLister[*corev1.Pod](podInf),
		queue:     queue.New(queue.DefaultRateLimiter()),
		expect:    expectations.New(expectations.DefaultTimeout),
		opts:      opts,
		log:       opts.Logger.With("controller", kind.component),
		now:       time.Now,
		podSuffix: func() string { return rand.String(5) },
	}
	setInf.AddHandler(informer.HandlerFuncs{
		AddFunc:    c.enqueue,
		UpdateFunc: func(_, obj runtime.Object) { c.enqueue(obj) },
		DeleteFunc: c.setDeleted,
	})
	podInf.AddHandler(informer.HandlerFuncs{
		AddFunc:    c.podAdded,
		UpdateFunc: c.podUpdated,
		DeleteFunc: c.podDeleted,
	})
	return c
}

// Run reconciles with workers goroutines until ctx ends.
func (c *Controller) Run(ctx context.Context, workers int) error {
	if !informer.WaitForSync(ctx, c.sets, c.podInf) {
		return nil
	}
	c.log.Info("started", "workers", workers)
	queue.RunWorkers(ctx, c.queue, workers, c.log, c.reconcile)
	return nil
}

func (c *Controller) enqueue(obj runtime.Object) {
	if key, err := informer.KeyOf(obj); err == nil {
		c.queue.Add(key)
	}
}

func (c *Controller) setDeleted(obj runtime.Object) {
	if key, err := informer.KeyOf(obj); err == nil {
		c.expect.Forget(key)
		c.queue.Add(key)
	}
}

// get returns the cached object namespace/name as a ReplicaSet view.
func (c *Controller) get(namespace, name string) (runtime.Object, *appsv1.ReplicaSet, bool) {
	obj, ok := c.sets.GetByName(namespace, name)
	if !ok {
		return nil, nil, false
	}
	rs, ok := c.kind.toReplicaSet(obj)
	return obj, rs, ok
}

// controllerOf returns the key of the cached ReplicaSet that controls pod,
// if the reference names one that exists with the same uid.
func (c *Controller) controllerOf(pod *corev1.Pod) (string, bool) {
	ref := metav1.GetControllerOfNoCopy(pod)
	if ref == nil || ref.Kind != c.kind.gvk.Kind || ref.APIVersion != c.kind.gvk.GroupVersion().String() {
		return "", false
	}
	_, rs, ok := c.get(pod.Namespace, ref.Name)
	if !ok || rs.UID != ref.UID {
		return "", false
	}
	return informer.Key(pod.Namespace, ref.Name), true
}

// enqueueMatching queues every ReplicaSet whose selector matches an orphan
// pod, so that one of them adopts it.
func (c *Controller) enqueueMatching(pod *corev1.Pod) {
	for _, obj := range c.sets.List(pod.Namespace, nil) {
		rs, ok := c.kind.toReplicaSet(obj)
		if !ok {
			continue
		}
		sel, err := metav1.LabelSelectorAsSelector(rs.Spec.Selector)
		if err != nil || sel.Empty() || !sel.Matches(labels.Set(pod.Labels)) {
			continue
		}
		c.queue.Add(informer.Key(rs.Namespace, rs.Name))
	}
}

func (c *Controller) podAdded(obj runtime.Object) {
	pod, ok := obj.(*corev1.Pod)
	if !ok {
		return
	}
	if pod.DeletionTimestamp != nil {
		// Seen for the first time already terminating (after a relist):
		// it must not count as a creation.
		c.podDeleted(pod)
		return
	}
	if metav1.GetControllerOfNoCopy(pod) != nil {
		if key, ok := c.controllerOf(pod); ok {
			c.expect.ObserveCreate(key, "")
			c.queue.Add(key)
		}
		return
	}
	c.enqueueMatching(pod)
}

func (c *Controller) podUpdated(oldObj, obj runtime.Object) {
	pod, ok := obj.(*corev1.Pod)
	if !ok {
		return
	}
	old, _ := oldObj.(*corev1.Pod)
	if old != nil && old.ResourceVersion == pod.ResourceVersion {
		return
	}
	labelsChanged := old == nil || !labels.Equals(old.Labels, pod.Labels)
	if pod.DeletionTimestamp != nil {
		// A terminating pod no longer counts: treat it as deleted now,
		// and tell the old owner too if the labels moved it.
		c.podDeleted(pod)
		if labelsChanged && old != nil {
			c.podDeleted(old)
		}
		return
	}
	var oldKey string
	if old != nil {
		oldKey, _ = c.controllerOf(old)
	}
	key, owned := c.controllerOf(pod)
	if oldKey != "" && oldKey != key {
		c.queue.Add(oldKey)
	}
	if owned {
		c.queue.Add(key)
		if old != nil && podReady(old) != podReady(pod) {
			// It becomes available minReadySeconds after it became ready.
			if _, rs, ok := c.get(pod.Namespace, metav1.GetControllerOfNoCopy(pod).Name); ok && rs.Spec.MinReadySeconds > 0 {
				c.queue.AddAfter(key, time.Duration(rs.Spec.MinReadySeconds)*time.Second+time.Second)
			}
		}
		return
	}
	if metav1.GetControllerOfNoCopy(pod) == nil && (labelsChanged || oldKey != "") {
		c.enqueueMatching(pod)
	}
}

func (c *Controller) podDeleted(obj runtime.Object) {
	pod, ok := obj.(*corev1.Pod)
	if !ok {
		return
	}
	key, ok := c.controllerOf(pod)
	if !ok {
		return
	}
	c.expect.ObserveDelete(key, informer.Key(pod.Namespace, pod.Name))
	c.queue.Add(key)
}

// eventObject is what events about rs refer to.
func (c *Controller) eventObject(rs *appsv1.ReplicaSet) runtime.Object {
	ref := &metav1.PartialObjectMetadata{ObjectMeta: metav1.ObjectMeta{
		Name: rs.Name, Namespace: rs.Namespace, UID: rs.UID, ResourceVersion: rs.ResourceVersion,
	}}
	ref.SetGroupVersionKind(c.kind.gvk)
	return ref
}

func (c *Controller) event(rs *appsv1.ReplicaSet, eventType, reason, format string, args ...any) {
	if c.recorder == nil {
		return
	}
	c.recorder.Eventf(c.eventObject(rs), eventType, reason, format, args...)
}

// updatePod writes pod (adoption and release).
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

// accessorName is the name of obj, for messages.
func accessorName(obj runtime.Object) string {
	if m, err := meta.Accessor(obj); err == nil {
		return m.GetName()
	}
	return ""
}
