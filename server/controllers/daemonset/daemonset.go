// Package daemonset is the DaemonSet controller: it keeps one pod of each
// DaemonSet on every eligible node, as Kubernetes' pkg/controller/daemon
// does.
//
// A node is eligible when it matches the template's nodeSelector and
// required node affinity and the pod, with the tolerations every daemon
// pod gets, tolerates its NoSchedule and NoExecute taints. Pods are created
// with a required node affinity on the node's name (matchFields
// metadata.name) and placed by the scheduler. Pods on nodes that are no
// longer eligible (or gone) are deleted, failed ones are replaced, and
// template changes roll out by RollingUpdate (maxUnavailable, or maxSurge)
// or, with OnDelete, as pods are deleted. Templates are recorded as
// ControllerRevisions (package history); pods carry the revision's hash in
// the controller-revision-hash label. The status is exact, so that
// `kubectl rollout status daemonset` works.
//
// It writes only through the API it is given, never to the store.
package daemonset

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

	"github.com/orch-dev/orch/server/controllers/expectations"
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
	daemonSetsGVR = appsv1.SchemeGroupVersion.WithResource("daemonsets")
	podsGVR       = corev1.SchemeGroupVersion.WithResource("pods")
	nodesGVR      = corev1.SchemeGroupVersion.WithResource("nodes")
	kind          = appsv1.SchemeGroupVersion.WithKind("DaemonSet")
)

// Labels Kubernetes puts on daemon pods.
const (
	revisionHashLabel         = appsv1.DefaultDaemonSetUniqueLabelKey // controller-revision-hash
	templateGenerationLabel   = "pod-template-generation"
	defaultRevisionHistory    = 10
	failedPodRetryDelay       = time.Second
	expectationsRecheckPeriod = 10 * time.Second
)

// Options configure the controller.
type Options struct {
	// Workers reconciling DaemonSets concurrently (default 2).
	Workers int
	// FieldManager recorded on the controller's writes.
	FieldManager string
	Logger       *slog.Logger
}

// Controller is the DaemonSet controller.
type Controller struct {
	api       API
	recorder  events.Recorder
	history   *history.History
	infs      []*informer.Informer
	sets      informer.Lister[*appsv1.DaemonSet]
	pods      informer.Lister[*corev1.Pod]
	nodes     informer.Lister[*corev1.Node]
	queue     *queue.Queue
	expect    *expectations.Expectations
	opts      Options
	log       *slog.Logger
	now       func() time.Time
	podSuffix func() string
}

// New builds the controller and registers its informers with factory.
func New(api API, factory *informer.Factory, recorder events.Recorder, opts Options) *Controller {
	if opts.Workers <= 0 {
		opts.Workers = 2
	}
	if opts.FieldManager == "" {
		opts.FieldManager = "orch-daemonset-controller"
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	setInf := factory.For(daemonSetsGVR)
	podInf := factory.For(podsGVR)
	podInf.AddIndex(informer.ControllerIndex, informer.ByController)
	nodeInf := factory.For(nodesGVR)
	revInf := factory.For(history.GVR)
	c := &Controller{
		api:       api,
		recorder:  recorder,
		history:   history.NewHistory(api, revInf, opts.FieldManager, revisionHashLabel),
		infs:      []*informer.Informer{setInf, podInf, nodeInf, revInf},
		sets:      informer.NewLister[*appsv1.DaemonSet](setInf),
		pods:      informer.NewLister[*corev1.Pod](podInf),
		nodes:     informer.NewLister[*corev1.Node](nodeInf),
		queue:     queue.New(queue.DefaultRateLimiter()),
		expect:    expectations.New(expectations.DefaultTimeout),
		opts:      opts,
		log:       opts.Logger.With("controller", "daemonset"),
		now:       time.Now,
		podSuffix: randomSuffix,
	}
	setInf.AddHandler(informer.OnAny(c.enqueue))
	podInf.AddHandler(informer.HandlerFuncs{
		AddFunc:    c.podAdded,
		UpdateFunc: c.podUpdated,
		DeleteFunc: c.podDeleted,
	})
	nodeInf.AddHandler(informer.HandlerFuncs{
		AddFunc: func(runtime.Object) { c.enqueueAll() },
		UpdateFunc: func(oldObj, obj runtime.Object) {
			if nodeChanged(oldObj, obj) {
				c.enqueueAll()
			}
		},
		DeleteFunc: func(runtime.Object) { c.enqueueAll() },
	})
	revInf.AddHandler(informer.OnAny(c.enqueueOwner))
	return c
}

// Run reconciles DaemonSets until ctx ends.
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

func (c *Controller) enqueueAll() {
	for _, ds := range c.sets.List("", nil) {
		c.queue.Add(informer.Key(ds.Namespace, ds.Name))
	}
}

// ownerKey is the key of the DaemonSet controlling obj, if any.
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

// enqueueMatching queues the DaemonSets whose selector matches an orphan
// pod, so that they may adopt it.
func (c *Controller) enqueueMatching(pod *corev1.Pod) {
	for _, ds := range c.sets.List(pod.Namespace, nil) {
		sel, err := metav1.LabelSelectorAsSelector(ds.Spec.Selector)
		if err != nil || sel.Empty() || !sel.Matches(labels.Set(pod.Labels)) {
			continue
		}
		c.queue.Add(informer.Key(ds.Namespace, ds.Name))
	}
}

func (c *Controller) podAdded(obj runtime.Object) {
	pod, ok := obj.(*corev1.Pod)
	if !ok {
		return
	}
	key, owned := ownerKey(pod)
	if !owned {
		if pod.DeletionTimestamp == nil {
			c.enqueueMatching(pod)
		}
		return
	}
	c.expect.ObserveCreate(key, pod.Name)
	if pod.DeletionTimestamp != nil {
		c.expect.ObserveDelete(key, pod.Name)
	}
	c.queue.Add(key)
}

func (c *Controller) podUpdated(oldObj, obj runtime.Object) {
	pod, ok := obj.(*corev1.Pod)
	if !ok {
		return
	}
	if old, ok := oldObj.(*corev1.Pod); ok {
		// A change of controller: the old one must let go.
		if oldKey, owned := ownerKey(old); owned {
			if key, _ := ownerKey(pod); key != oldKey {
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
	if key, owned := ownerKey(pod); owned {
		c.expect.ObserveDelete(key, pod.Name)
		c.queue.Add(key)
	}
}

// nodeChanged reports whether a node update can change which DaemonSets
// belong on it; heartbeats and status churn cannot.
func nodeChanged(oldObj, obj runtime.Object) bool {
	old, ok1 := oldObj.(*corev1.Node)
	node, ok2 := obj.(*corev1.Node)
	if !ok1 || !ok2 {
		return true
	}
	return !labels.Equals(old.Labels, node.Labels) || !taintsEqual(old.Spec.Taints, node.Spec.Taints)
}

func taintsEqual(a, b []corev1.Taint) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i].Key != b[i].Key || a[i].Value != b[i].Value || a[i].Effect != b[i].Effect {
			return false
		}
	}
	return true
}

// reconcile converges the DaemonSet with key ns/name.
func (c *Controller) reconcile(ctx context.Context, key string) error {
	ns, name := informer.SplitKey(key)
	ds, ok := c.sets.Get(ns, name)
	if !ok {
		c.expect.Forget(key)
		return nil
	}
	if ds.DeletionTimestamp != nil {
		// The garbage collector removes its pods and revisions.
		return nil
	}
	sel, err := metav1.LabelSelectorAsSelector(ds.Spec.Selector)
	if err != nil || sel.Empty() {
		// An empty selector would select every pod: do nothing, as
		// Kubernetes does (validation forbids it anyway).
		return nil
	}

	// Expectations are read before the pods, as upstream's syncDaemonSet
	// does: read after, a create the informer showed in between would count
	// as seen while the pods read were older than it (a second pod).
	now := c.now()
	satisfied := c.expect.Satisfied(key, now)

	cur, old, err := c.constructHistory(ctx, ds, sel)
	if err != nil {
		return err
	}
	hash := cur.Labels[revisionHashLabel]

	candidates := c.pods.Controlled(ds.Namespace, ds.UID)
	pods, err := history.Claim(ctx, candidates, ds, kind, sel, nil, c.updatePod)
	if err != nil {
		return fmt.Errorf("claim pods of daemon set %s: %w", key, err)
	}
	nodes := c.nodes.List("", nil)
	byNode := podsByNode(pods)

	var requeue time.Duration
	if satisfied {
		changed, retry, err := c.manage(ctx, ds, nodes, byNode, hash)
		if err != nil {
			return err
		}
		requeue = retry
		if !changed && ds.Spec.UpdateStrategy.Type == appsv1.RollingUpdateDaemonSetStrategyType {
			retry, err := c.rollingUpdate(ctx, ds, nodes, byNode, hash)
			if err != nil {
				return err
			}
			requeue = minPositive(requeue, retry)
		}
	} else {
		// Events clear expectations; look again in case one was lost.
		requeue = expectationsRecheckPeriod
	}

	if err := c.cleanupHistory(ctx, ds, pods, cur, old); err != nil {
		return err
	}
	retry, err := c.updateStatus(ctx, ds, nodes, byNode, hash)
	if err != nil {
		return err
	}
	requeue = minPositive(requeue, retry)
	if requeue > 0 {
		return queue.RequeueAfter(requeue)
	}
	return nil
}

func minPositive(a, b time.Duration) time.Duration {
	switch {
	case a <= 0:
		return b
	case b <= 0:
		return a
	}
	return min(a, b)
}

// podsByNode groups pods by the node they run on or are meant for; pods
// meant for no node are listed under "".
func podsByNode(pods []*corev1.Pod) map[string][]*corev1.Pod {
	out := map[string][]*corev1.Pod{}
	for _, p := range pods {
		node, _ := targetNodeName(p)
		out[node] = append(out[node], p)
	}
	return out
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

// event records an event about ds.
func (c *Controller) event(ds *appsv1.DaemonSet, eventType, reason, format string, args ...any) {
	if c.recorder == nil {
		return
	}
	ref := ds.DeepCopy()
	ref.SetGroupVersionKind(kind)
	c.recorder.Eventf(ref, eventType, reason, format, args...)
}
