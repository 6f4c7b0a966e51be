// Package tainteviction is the taint eviction controller, as Kubernetes'
// pkg/controller/tainteviction (the "taint manager"): it deletes the pods
// on a node with NoExecute taints they do not tolerate.
//
// A pod that does not tolerate every NoExecute taint of its node is
// deleted at once. A pod that tolerates them all is deleted after the
// smallest tolerationSeconds among the tolerations used, counted from when
// the controller first saw it that way; without tolerationSeconds it stays.
// The deletion is graceful (the pod's own grace period): the pod first
// gets the DisruptionTarget condition (reason DeletionByTaintManager), and
// a TaintManagerEviction event "Marking for deletion Pod ns/name". A
// pending deletion is cancelled ("Cancelling deletion of Pod ns/name")
// when the taint goes away or the pod comes to tolerate it.
//
// The node lifecycle controller (the parent package) sets the
// not-ready/unreachable NoExecute taints; the DefaultTolerationSeconds
// admission step of the API server gives pods their 300 s tolerations of
// those. This controller writes only through the API it is given.
package tainteviction

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/clock"

	"github.com/orch-dev/orch/server/controllers/informer"
	"github.com/orch-dev/orch/server/controllers/nodelifecycle/internal/podindex"
	"github.com/orch-dev/orch/server/controllers/queue"
	"github.com/orch-dev/orch/server/events"

	"github.com/orch-dev/orch/server/scheduling"
)

// API is the part of orch's in-process API (apiserver.Local) the
// controller uses.
type API interface {
	Get(ctx context.Context, gvr schema.GroupVersionResource, ns, name string) (runtime.Object, error)
	Update(ctx context.Context, gvr schema.GroupVersionResource, obj runtime.Object, subresource, fieldManager string) (runtime.Object, error)
	Delete(ctx context.Context, gvr schema.GroupVersionResource, ns, name string, opts *metav1.DeleteOptions) (bool, error)
}

var (
	nodesGVR = corev1.SchemeGroupVersion.WithResource("nodes")
	podsGVR  = corev1.SchemeGroupVersion.WithResource("pods")
	podKind  = corev1.SchemeGroupVersion.WithKind("Pod")
)

// ComponentName is the event source of the controller.
const ComponentName = "taint-eviction-controller"

// Event and condition wording, as Kubernetes'.
const (
	reasonEviction           = "TaintManagerEviction"
	reasonDisruption         = "DeletionByTaintManager"
	messageDisruption        = "Taint manager: deleting due to NoExecute taint"
	maxStatusConflictRetries = 3
)

// Options configure the controller.
type Options struct {
	// Workers per queue (nodes, pods, evictions); default 2.
	Workers int
	// Clock is the time source (default the real clock); tests inject a
	// fake one.
	Clock clock.WithDelayedExecution
	// FieldManager recorded on the controller's writes.
	FieldManager string
	Logger       *slog.Logger
}

// Controller is the taint eviction controller.
type Controller struct {
	api      API
	recorder events.Recorder
	opts     Options
	log      *slog.Logger
	clock    clock.WithDelayedExecution

	nodes, pods *informer.Informer
	nodeLister  informer.Lister[*corev1.Node]
	podLister   informer.Lister[*corev1.Pod]
	podsByNode  *podindex.Index

	// nodeQueue holds node names whose NoExecute taints changed; podQueue
	// keys of pods bound or re-tolerated; evictQueue keys of pods whose
	// eviction is due.
	nodeQueue, podQueue, evictQueue *queue.Queue

	mu        sync.Mutex
	scheduled map[string]*eviction // by pod key
}

// eviction is a pod's scheduled deletion.
type eviction struct {
	uid types.UID
	// createdAt is when the pod was first found on a node whose taints
	// it must leave; tolerationSeconds count from there.
	createdAt time.Time
	fireAt    time.Time
	timer     clock.Timer // nil when due at once
}

// New builds the controller and registers its informers with factory.
func New(api API, factory *informer.Factory, recorder events.Recorder, opts Options) *Controller {
	if opts.Workers <= 0 {
		opts.Workers = 2
	}
	if opts.Clock == nil {
		opts.Clock = clock.RealClock{}
	}
	if opts.FieldManager == "" {
		opts.FieldManager = "orch-taint-eviction-controller"
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	c := &Controller{
		api:        api,
		recorder:   recorder,
		opts:       opts,
		log:        opts.Logger.With("controller", "taint-eviction"),
		clock:      opts.Clock,
		nodes:      factory.For(nodesGVR),
		pods:       factory.For(podsGVR),
		podsByNode: podindex.New(),
		nodeQueue:  queue.New(nil),
		podQueue:   queue.New(nil),
		evictQueue: queue.New(nil),
		scheduled:  map[string]*eviction{},
	}
	c.nodeLister = informer.NewLister[*corev1.Node](c.nodes)
	c.podLister = informer.NewLister[*corev1.Pod](c.pods)

	c.nodes.AddHandler(informer.HandlerFuncs{
		AddFunc:    func(obj runtime.Object) { c.nodeUpdated(nil, obj) },
		UpdateFunc: c.nodeUpdated,
	})
	c.pods.AddHandler(c.podsByNode.Handler())
	c.pods.AddHandler(informer.HandlerFuncs{
		AddFunc:    func(obj runtime.Object) { c.podUpdated(nil, obj) },
		UpdateFunc: c.podUpdated,
		DeleteFunc: c.podDeleted,
	})
	return c
}

// noExecuteTaints returns the node's NoExecute taints.
func noExecuteTaints(node *corev1.Node) []corev1.Taint {
	var out []corev1.Taint
	for _, t := range node.Spec.Taints {
		if t.Effect == corev1.TaintEffectNoExecute {
			out = append(out, t)
		}
	}
	return out
}

func (c *Controller) nodeUpdated(oldObj, obj runtime.Object) {
	node, ok := obj.(*corev1.Node)
	if !ok {
		return
	}
	taints := noExecuteTaints(node)
	if old, ok := oldObj.(*corev1.Node); ok {
		if slices.EqualFunc(noExecuteTaints(old), taints, func(a, b corev1.Taint) bool {
			return a.Key == b.Key && a.Value == b.Value
		}) {
			return
		}
	} else if len(taints) == 0 {
		return
	}
	c.nodeQueue.Add(node.Name)
}

func (c *Controller) podUpdated(oldObj, obj runtime.Object) {
	pod, ok := obj.(*corev1.Pod)
	if !ok || pod.Spec.NodeName == "" {
		return
	}
	if old, ok := oldObj.(*corev1.Pod); ok && old.Spec.NodeName == pod.Spec.NodeName &&
		slices.EqualFunc(old.Spec.Tolerations, pod.Spec.Tolerations, tolerationsEqual) {
		return
	}
	c.podQueue.Add(informer.Key(pod.Namespace, pod.Name))
}

func tolerationsEqual(a, b corev1.Toleration) bool {
	if a.Key != b.Key || a.Operator != b.Operator || a.Value != b.Value || a.Effect != b.Effect {
		return false
	}
	if a.TolerationSeconds == nil || b.TolerationSeconds == nil {
		return a.TolerationSeconds == b.TolerationSeconds
	}
	return *a.TolerationSeconds == *b.TolerationSeconds
}

func (c *Controller) podDeleted(obj runtime.Object) {
	if pod, ok := obj.(*corev1.Pod); ok {
		c.podQueue.Add(informer.Key(pod.Namespace, pod.Name))
	}
}

// Run evicts pods until ctx ends.
func (c *Controller) Run(ctx context.Context) error {
	if !informer.WaitForSync(ctx, c.nodes, c.pods) {
		return nil
	}
	c.log.Info("started", "workers", c.opts.Workers)
	var wg sync.WaitGroup
	wg.Go(func() { queue.RunWorkers(ctx, c.nodeQueue, c.opts.Workers, c.log, c.reconcileNode) })
	wg.Go(func() { queue.RunWorkers(ctx, c.podQueue, c.opts.Workers, c.log, c.reconcilePod) })
	wg.Go(func() { queue.RunWorkers(ctx, c.evictQueue, c.opts.Workers, c.log, c.reconcileEviction) })
	wg.Wait()
	c.mu.Lock()
	defer c.mu.Unlock()
	for key, e := range c.scheduled {
		if e.timer != nil {
			e.timer.Stop()
		}
		delete(c.scheduled, key)
	}
	return nil
}

// reconcileNode re-plans the evictions of every pod on the node.
func (c *Controller) reconcileNode(_ context.Context, name string) error {
	node, ok := c.nodeLister.Get("", name)
	if !ok {
		// Its pods go with it (pod garbage collection).
		return nil
	}
	taints := noExecuteTaints(node)
	for _, pod := range c.podsByNode.Pods(name, c.podLister) {
		c.plan(pod, taints)
	}
	return nil
}

// reconcilePod re-plans the eviction of one pod.
func (c *Controller) reconcilePod(_ context.Context, key string) error {
	ns, name := informer.SplitKey(key)
	pod, ok := c.podLister.Get(ns, name)
	if !ok {
		c.cancel(key, nil)
		return nil
	}
	if pod.Spec.NodeName == "" {
		return nil
	}
	var taints []corev1.Taint
	if node, ok := c.nodeLister.Get("", pod.Spec.NodeName); ok {
		taints = noExecuteTaints(node)
	}
	c.plan(pod, taints)
	return nil
}

// plan schedules, moves or cancels the pod's eviction for the taints of
// its node.
func (c *Controller) plan(pod *corev1.Pod, taints []corev1.Taint) {
	key := informer.Key(pod.Namespace, pod.Name)
	if pod.DeletionTimestamp != nil {
		// Going anyway: nothing to cancel out loud.
		c.cancel(key, nil)
		return
	}
	delay, evict := evictionDelay(pod, taints)
	if !evict {
		c.cancel(key, pod)
		return
	}
	c.schedule(key, pod.UID, delay)
}

// evictionDelay says whether a pod on a node with these NoExecute taints
// must go, and how long after it was first seen so (upstream
// processPodOnNode and getMinTolerationTime).
func evictionDelay(pod *corev1.Pod, taints []corev1.Taint) (time.Duration, bool) {
	if len(taints) == 0 || pod.DeletionTimestamp != nil {
		return 0, false
	}
	used, ok := matchingTolerations(taints, pod.Spec.Tolerations)
	if !ok {
		return 0, true
	}
	min := int64(-1)
	for _, t := range used {
		if t.TolerationSeconds == nil {
			continue
		}
		s := max(*t.TolerationSeconds, 0)
		if min < 0 || s < min {
			min = s
		}
	}
	if min < 0 {
		// Every taint tolerated forever.
		return 0, false
	}
	return time.Duration(min) * time.Second, true
}

// matchingTolerations returns, for each taint, the first toleration that
// tolerates it; ok is false if some taint is not tolerated.
func matchingTolerations(taints []corev1.Taint, tolerations []corev1.Toleration) ([]corev1.Toleration, bool) {
	used := make([]corev1.Toleration, 0, len(taints))
	for i := range taints {
		j := slices.IndexFunc(tolerations, func(t corev1.Toleration) bool { return scheduling.Tolerates(&t, &taints[i]) })
		if j < 0 {
			return nil, false
		}
		used = append(used, tolerations[j])
	}
	return used, true
}

// schedule makes the pod's eviction due delay after it was first planned
// (now, if it was not).
func (c *Controller) schedule(key string, uid types.UID, delay time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	now := c.clock.Now()
	e := c.scheduled[key]
	switch {
	case e != nil && e.uid == uid:
		fireAt := e.createdAt.Add(delay)
		if fireAt.Equal(e.fireAt) {
			return
		}
		if e.timer != nil {
			e.timer.Stop()
		}
		e = &eviction{uid: uid, createdAt: e.createdAt, fireAt: fireAt}
	default:
		if e != nil && e.timer != nil {
			e.timer.Stop()
		}
		e = &eviction{uid: uid, createdAt: now, fireAt: now.Add(delay)}
	}
	c.scheduled[key] = e
	if wait := e.fireAt.Sub(now); wait > 0 {
		c.log.Debug("pod eviction scheduled", "pod", key, "in", wait)
		e.timer = c.clock.AfterFunc(wait, func() { c.evictQueue.Add(key) })
		return
	}
	c.evictQueue.Add(key)
}

// cancel drops the pod's pending eviction; with pod, it says so in an
// event.
func (c *Controller) cancel(key string, pod *corev1.Pod) {
	c.mu.Lock()
	e := c.scheduled[key]
	if e != nil {
		if e.timer != nil {
			e.timer.Stop()
		}
		delete(c.scheduled, key)
	}
	c.mu.Unlock()
	if e != nil && pod != nil && pod.UID == e.uid {
		c.log.Info("pod eviction cancelled", "pod", key)
		c.recorder.Eventf(withKind(pod), corev1.EventTypeNormal, reasonEviction, "Cancelling deletion of Pod %s", key)
	}
}

// done drops e if it is still the pod's scheduled eviction.
func (c *Controller) done(key string, e *eviction) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.scheduled[key] == e {
		delete(c.scheduled, key)
	}
}

// reconcileEviction deletes a pod whose eviction is due, after checking
// against the current pod and node that it still must go.
func (c *Controller) reconcileEviction(ctx context.Context, key string) error {
	c.mu.Lock()
	e := c.scheduled[key]
	c.mu.Unlock()
	if e == nil || c.clock.Now().Before(e.fireAt) {
		// Cancelled, or moved (a new timer re-adds it).
		return nil
	}
	ns, name := informer.SplitKey(key)
	pod, ok := c.podLister.Get(ns, name)
	if !ok || pod.UID != e.uid || pod.DeletionTimestamp != nil {
		c.done(key, e)
		return nil
	}
	// The informers may have news the node and pod queues have not
	// handled yet: plan again from the cache and act only if still due.
	var taints []corev1.Taint
	if node, ok := c.nodeLister.Get("", pod.Spec.NodeName); ok {
		taints = noExecuteTaints(node)
	}
	delay, evict := evictionDelay(pod, taints)
	if !evict {
		c.cancel(key, pod)
		return nil
	}
	if c.clock.Now().Before(e.createdAt.Add(delay)) {
		c.schedule(key, pod.UID, delay)
		return nil
	}

	c.recorder.Eventf(withKind(pod), corev1.EventTypeNormal, reasonEviction, "Marking for deletion Pod %s", key)
	if err := c.deletePod(ctx, pod); err != nil {
		return fmt.Errorf("evict pod %s: %w", key, err)
	}
	c.log.Info("pod evicted for a NoExecute taint", "pod", key, "node", pod.Spec.NodeName)
	c.done(key, e)
	return nil
}

// deletePod adds the DisruptionTarget condition and deletes the pod with
// its own grace period.
func (c *Controller) deletePod(ctx context.Context, pod *corev1.Pod) error {
	if err := c.markDisruptionTarget(ctx, pod); err != nil && !apierrors.IsNotFound(err) {
		return fmt.Errorf("set DisruptionTarget condition: %w", err)
	}
	uid := pod.UID
	_, err := c.api.Delete(ctx, podsGVR, pod.Namespace, pod.Name, &metav1.DeleteOptions{Preconditions: &metav1.Preconditions{UID: &uid}})
	if apierrors.IsNotFound(err) {
		return nil
	}
	return err
}

// markDisruptionTarget tells the pod's owners why it goes (the
// DisruptionTarget condition, GA since Kubernetes 1.31).
func (c *Controller) markDisruptionTarget(ctx context.Context, pod *corev1.Pod) error {
	for attempt := 0; ; attempt++ {
		i := slices.IndexFunc(pod.Status.Conditions, func(cond corev1.PodCondition) bool { return cond.Type == corev1.DisruptionTarget })
		want := corev1.PodCondition{
			Type:               corev1.DisruptionTarget,
			Status:             corev1.ConditionTrue,
			Reason:             reasonDisruption,
			Message:            messageDisruption,
			LastTransitionTime: metav1.NewTime(c.clock.Now()),
		}
		updated := pod.DeepCopy()
		switch {
		case i < 0:
			updated.Status.Conditions = append(updated.Status.Conditions, want)
		case pod.Status.Conditions[i].Status == want.Status && pod.Status.Conditions[i].Reason == want.Reason:
			return nil
		default:
			updated.Status.Conditions[i] = want
		}
		_, err := c.api.Update(ctx, podsGVR, updated, "status", c.opts.FieldManager)
		if err == nil || !apierrors.IsConflict(err) || attempt >= maxStatusConflictRetries {
			return err
		}
		obj, err := c.api.Get(ctx, podsGVR, pod.Namespace, pod.Name)
		if err != nil {
			return err
		}
		latest, ok := obj.(*corev1.Pod)
		if !ok {
			return fmt.Errorf("get pod %s/%s: unexpected type %T", pod.Namespace, pod.Name, obj)
		}
		if latest.UID != pod.UID {
			return apierrors.NewNotFound(podsGVR.GroupResource(), pod.Name)
		}
		pod = latest
	}
}

// withKind returns pod with its kind set, as events need it.
func withKind(pod *corev1.Pod) runtime.Object {
	if pod.Kind != "" {
		return pod
	}
	c := pod.DeepCopy()
	c.SetGroupVersionKind(podKind)
	return c
}
