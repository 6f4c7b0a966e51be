// Package namespace is the namespace controller: it empties a namespace
// that is being deleted and then releases it, as Kubernetes'
// pkg/controller/namespace does.
//
// A namespace being deleted has a deletionTimestamp and, while the
// "kubernetes" token is in spec.finalizers, stays in phase Terminating.
// The controller deletes every object of every served namespaced resource
// in it, reports progress in the namespace's status conditions
// (NamespaceDeletionDiscoveryFailure, NamespaceDeletionGroupVersionParsingFailure,
// NamespaceDeletionContentFailure, NamespaceContentRemaining,
// NamespaceFinalizersRemaining, with Kubernetes' reasons and messages),
// waits for objects held by grace periods or finalizers, and finally
// removes its token through the namespaces/finalize subresource; the API
// server then deletes the namespace.
//
// It writes only through the API it is given, never to the store.
package namespace

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"

	"github.com/orch-dev/orch/server/controllers/informer"
	"github.com/orch-dev/orch/server/controllers/queue"
	"github.com/orch-dev/orch/server/registry"
)

// API is the part of orch's in-process API (apiserver.Local) the
// controller uses.
type API interface {
	Get(ctx context.Context, gvr schema.GroupVersionResource, ns, name string) (runtime.Object, error)
	List(ctx context.Context, gvr schema.GroupVersionResource, ns string, opts metav1.ListOptions) ([]runtime.Object, int64, error)
	Update(ctx context.Context, gvr schema.GroupVersionResource, obj runtime.Object, subresource, fieldManager string) (runtime.Object, error)
	Delete(ctx context.Context, gvr schema.GroupVersionResource, ns, name string, opts *metav1.DeleteOptions) (bool, error)
	Resources() []*registry.Resource
}

var (
	namespacesGVR = schema.GroupVersionResource{Version: "v1", Resource: "namespaces"}
	podsGR        = schema.GroupResource{Resource: "pods"}
)

// finalizerEstimateSeconds is how long Kubernetes assumes objects held by
// finalizers take to go.
const finalizerEstimateSeconds int64 = 15

// maxConflictRetries bounds the re-reads after write conflicts on the
// namespace within one reconcile; the queue retries beyond that.
const maxConflictRetries = 5

// Options configure the controller.
type Options struct {
	// Workers reconciling namespaces concurrently (default 2).
	Workers int
	// DeletionDelay postpones the first reconcile of a terminating
	// namespace, so that creates admitted just before the deletion land
	// before the namespace is emptied. Kubernetes waits 5 s (for HA API
	// servers); 0 means no delay.
	DeletionDelay time.Duration
	// FieldManager recorded on the controller's writes.
	FieldManager string
	Logger       *slog.Logger
}

// Controller is the namespace controller.
type Controller struct {
	api        API
	namespaces *informer.Informer
	queue      *queue.Queue
	opts       Options
	log        *slog.Logger
	now        func() time.Time
}

// New builds the controller and registers its informer with factory.
func New(api API, factory *informer.Factory, opts Options) *Controller {
	if opts.Workers <= 0 {
		opts.Workers = 2
	}
	if opts.FieldManager == "" {
		opts.FieldManager = "orch-namespace-controller"
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	c := &Controller{
		api:        api,
		namespaces: factory.For(namespacesGVR),
		// Kubernetes' namespace controller backs off from 5 ms to 60 s.
		queue: queue.New(queue.NewExponentialRateLimiter(5*time.Millisecond, 60*time.Second)),
		opts:  opts,
		log:   opts.Logger.With("controller", "namespace"),
		now:   time.Now,
	}
	c.namespaces.AddHandler(informer.OnAddOrUpdate(c.enqueue))
	return c
}

// enqueue queues a namespace that is being deleted.
func (c *Controller) enqueue(obj runtime.Object) {
	m, err := meta.Accessor(obj)
	if err != nil || m.GetDeletionTimestamp() == nil {
		return
	}
	c.queue.AddAfter(m.GetName(), c.opts.DeletionDelay)
}

// Run reconciles namespaces until ctx ends.
func (c *Controller) Run(ctx context.Context) error {
	if !informer.WaitForSync(ctx, c.namespaces) {
		return nil
	}
	c.log.Info("started", "workers", c.opts.Workers)
	queue.RunWorkers(ctx, c.queue, c.opts.Workers, c.log, c.reconcile)
	return nil
}

// reconcile converges the namespace called name: if it is being deleted,
// empty it and remove the "kubernetes" finalizer.
func (c *Controller) reconcile(ctx context.Context, name string) error {
	ns, err := c.getNamespace(ctx, name)
	if apierrors.IsNotFound(err) {
		return nil
	}
	if err != nil {
		return err
	}
	if ns.DeletionTimestamp == nil {
		return nil
	}

	ns, err = c.retryOnConflict(ctx, ns, c.markTerminating)
	if apierrors.IsNotFound(err) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("mark namespace %s terminating: %w", name, err)
	}
	if ns.DeletionTimestamp == nil || !slices.Contains(ns.Spec.Finalizers, corev1.FinalizerKubernetes) {
		// Finalized by us; the API server deletes it once no other
		// finalizer holds it.
		return nil
	}

	ns, estimate, err := c.deleteAllContent(ctx, ns)
	if err != nil {
		return err
	}
	if estimate > 0 {
		c.log.Debug("content remains", "namespace", name, "estimateSeconds", estimate)
		return queue.RequeueAfter(time.Duration(estimate/2+1) * time.Second)
	}

	if _, err := c.retryOnConflict(ctx, ns, c.finalize); err != nil && !apierrors.IsNotFound(err) {
		return fmt.Errorf("finalize namespace %s: %w", name, err)
	}
	c.log.Info("namespace emptied and finalized", "namespace", name)
	return nil
}

func (c *Controller) getNamespace(ctx context.Context, name string) (*corev1.Namespace, error) {
	obj, err := c.api.Get(ctx, namespacesGVR, "", name)
	if err != nil {
		return nil, err
	}
	ns, ok := obj.(*corev1.Namespace)
	if !ok {
		return nil, fmt.Errorf("get namespace %s: unexpected type %T", name, obj)
	}
	return ns, nil
}

// retryOnConflict runs fn, re-reading the namespace after conflicts; the
// namespace must keep its uid.
func (c *Controller) retryOnConflict(ctx context.Context, ns *corev1.Namespace, fn func(context.Context, *corev1.Namespace) (*corev1.Namespace, error)) (*corev1.Namespace, error) {
	for attempt := 0; ; attempt++ {
		result, err := fn(ctx, ns)
		if err == nil || !apierrors.IsConflict(err) || attempt >= maxConflictRetries {
			return result, err
		}
		latest, err := c.getNamespace(ctx, ns.Name)
		if err != nil {
			return nil, err
		}
		if latest.UID != ns.UID {
			return nil, errors.New("namespace uid has changed across retries")
		}
		ns = latest
	}
}

// markTerminating sets status.phase Terminating if it is not yet.
func (c *Controller) markTerminating(ctx context.Context, ns *corev1.Namespace) (*corev1.Namespace, error) {
	if ns.DeletionTimestamp == nil || ns.Status.Phase == corev1.NamespaceTerminating {
		return ns, nil
	}
	updated := ns.DeepCopy()
	updated.Status.Phase = corev1.NamespaceTerminating
	return c.updateNamespace(ctx, updated, "status")
}

// finalize removes the "kubernetes" token from spec.finalizers through the
// finalize subresource.
func (c *Controller) finalize(ctx context.Context, ns *corev1.Namespace) (*corev1.Namespace, error) {
	updated := ns.DeepCopy()
	updated.Spec.Finalizers = updated.Spec.Finalizers[:0]
	for _, f := range ns.Spec.Finalizers {
		if f != corev1.FinalizerKubernetes {
			updated.Spec.Finalizers = append(updated.Spec.Finalizers, f)
		}
	}
	return c.updateNamespace(ctx, updated, "finalize")
}

func (c *Controller) updateNamespace(ctx context.Context, ns *corev1.Namespace, subresource string) (*corev1.Namespace, error) {
	obj, err := c.api.Update(ctx, namespacesGVR, ns, subresource, c.opts.FieldManager)
	if err != nil {
		return nil, err
	}
	out, ok := obj.(*corev1.Namespace)
	if !ok {
		return nil, fmt.Errorf("update namespace %s: unexpected type %T", ns.Name, obj)
	}
	return out, nil
}

// resourceDeletion is what is left of one resource in the namespace.
type resourceDeletion struct {
	// estimateSeconds is how much longer to wait; 0 does not mean that
	// everything is gone.
	estimateSeconds int64
	remaining       int
	finalizers      map[string]int
}

// deleteAllContent deletes every namespaced object in ns, records the
// outcome in its status conditions, and returns how many seconds the rest
// is estimated to take (0: all gone).
func (c *Controller) deleteAllContent(ctx context.Context, ns *corev1.Namespace) (*corev1.Namespace, int64, error) {
	var (
		errs        []error
		estimate    int64
		conditions  = conditionUpdater{now: c.now}
		remaining   = map[schema.GroupVersionResource]int{}
		byFinalizer = map[string]int{}
	)
	for _, res := range c.api.Resources() {
		// Aliases (Storage set) serve the same objects as another entry.
		if !res.Namespaced || res.Storage != nil {
			continue
		}
		gvr := res.GroupVersionResource()
		d, err := c.deleteResource(ctx, gvr, ns.Name, ns.DeletionTimestamp.Time)
		if err != nil {
			errs = append(errs, err)
			conditions.deleteContentErrors = append(conditions.deleteContentErrors, err)
		}
		estimate = max(estimate, d.estimateSeconds)
		if d.remaining > 0 {
			remaining[gvr] = d.remaining
			for f, n := range d.finalizers {
				byFinalizer[f] += n
			}
		}
	}
	conditions.contentTotals(remaining, byFinalizer)

	// Always write changed conditions: a failure reported earlier must be
	// cleared once it is resolved.
	updated := ns.DeepCopy()
	if conditions.apply(&updated.Status) {
		if out, err := c.updateNamespace(ctx, updated, "status"); err != nil {
			c.log.Warn("couldn't update status conditions", "namespace", ns.Name, "err", err)
		} else {
			ns = out
		}
	}
	return ns, estimate, errors.Join(errs...)
}

// deleteResource deletes the objects of one resource in ns and reports
// what remains.
func (c *Controller) deleteResource(ctx context.Context, gvr schema.GroupVersionResource, ns string, deletedAt time.Time) (resourceDeletion, error) {
	items, supported, err := c.list(ctx, gvr, ns)
	if err != nil || !supported {
		return resourceDeletion{}, err
	}
	var estimate int64
	if gvr.GroupResource() == podsGR {
		estimate = c.podEstimate(items, deletedAt)
	}

	// The namespace controller deletes generically: background propagation,
	// so that the garbage collector adds no orphan finalizer.
	background := metav1.DeletePropagationBackground
	for _, item := range items {
		m, err := meta.Accessor(item)
		if err != nil {
			continue
		}
		_, err = c.api.Delete(ctx, gvr, ns, m.GetName(), &metav1.DeleteOptions{PropagationPolicy: &background})
		if err != nil && !apierrors.IsNotFound(err) && !apierrors.IsMethodNotSupported(err) {
			return resourceDeletion{estimateSeconds: estimate}, fmt.Errorf("delete %s %s/%s: %w", gvr.GroupResource(), ns, m.GetName(), err)
		}
	}

	items, supported, err = c.list(ctx, gvr, ns)
	if err != nil {
		return resourceDeletion{estimateSeconds: estimate}, err
	}
	if !supported || len(items) == 0 {
		return resourceDeletion{}, nil
	}
	finalizers := map[string]int{}
	for _, item := range items {
		if m, err := meta.Accessor(item); err == nil {
			for _, f := range m.GetFinalizers() {
				finalizers[f]++
			}
		}
	}
	d := resourceDeletion{estimateSeconds: estimate, remaining: len(items), finalizers: finalizers}
	switch {
	case estimate != 0:
		return d, nil
	case len(finalizers) > 0:
		// Objects held by finalizers are normal; give the finalizers time.
		d.estimateSeconds = finalizerEstimateSeconds
		return d, nil
	}
	return d, fmt.Errorf("unexpected items still remain in namespace: %s for gvr: %v", ns, gvr)
}

// list lists gvr in ns; supported is false for resources that cannot be
// listed (they are skipped, as Kubernetes skips them).
func (c *Controller) list(ctx context.Context, gvr schema.GroupVersionResource, ns string) (items []runtime.Object, supported bool, err error) {
	items, _, err = c.api.List(ctx, gvr, ns, metav1.ListOptions{})
	switch {
	case err == nil:
		return items, true, nil
	case apierrors.IsNotFound(err) || apierrors.IsMethodNotSupported(err):
		return nil, false, nil
	}
	return nil, true, fmt.Errorf("list %s in namespace %s: %w", gvr.GroupResource(), ns, err)
}

// podEstimate is the longest termination grace period of the pods still
// running, or 0 once that much time has passed since the namespace was
// deleted.
func (c *Controller) podEstimate(items []runtime.Object, deletedAt time.Time) int64 {
	var estimate int64
	for _, item := range items {
		pod, ok := item.(*corev1.Pod)
		if !ok || pod.Status.Phase == corev1.PodSucceeded || pod.Status.Phase == corev1.PodFailed {
			continue
		}
		if g := pod.Spec.TerminationGracePeriodSeconds; g != nil && *g > estimate {
			estimate = *g
		}
	}
	if c.now().Sub(deletedAt) >= time.Duration(estimate)*time.Second {
		return 0
	}
	return estimate
}
