// Package resourcequota is the ResourceQuota controller, as Kubernetes'
// pkg/controller/resourcequota: it keeps each quota's status.hard equal to
// spec.hard and status.used equal to what the objects of its namespace
// consume (as measured by server/admission/quota, the same code quota
// admission charges with).
//
// A quota is recalculated when it is created or its spec changes, when an
// object it may count is added or deleted or changes what it consumes, and
// every ResyncPeriod. The usage it computes is also handed to quota
// admission (Options.Usage), which counts writes admitted since on top of
// it. Objects are listed through the API; status is written through the
// status subresource, never to the store.
package resourcequota

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	apiequality "k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"

	"github.com/orch-dev/orch/server/admission/quota"
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
	Resources() []*registry.Resource
}

// UsageObserver is told the usage the controller computes, so that quota
// admission can count on it (admission.Quota implements it). Snapshot is
// taken before a namespace's objects are listed; Observe gets the usage and
// what was listed, and asks for a recalculation soon when writes it
// admitted may or may not be in the listing.
type UsageObserver interface {
	Snapshot() uint64
	Observe(q *corev1.ResourceQuota, snapshot uint64, listed func(gr schema.GroupResource, name string) bool) (recheck bool)
	Forget(namespace string, uid types.UID)
}

// QuotasGVR is the resource the controller keeps.
var QuotasGVR = schema.GroupVersionResource{Version: "v1", Resource: "resourcequotas"}

// Resources whose changes trigger recalculation: those with usage beyond
// object counts are watched as typed objects, the rest as metadata.
var (
	typedWatched = []schema.GroupVersionResource{
		{Version: "v1", Resource: "pods"},
		{Version: "v1", Resource: "services"},
		{Version: "v1", Resource: "persistentvolumeclaims"},
	}
	metadataWatched = []schema.GroupVersionResource{
		{Version: "v1", Resource: "configmaps"},
		{Version: "v1", Resource: "secrets"},
		{Version: "v1", Resource: "replicationcontrollers"},
	}
)

// Options configure the controller.
type Options struct {
	// Workers recalculating quotas concurrently (default 5, as
	// kube-controller-manager's --concurrent-resource-quota-syncs).
	Workers int
	// ResyncPeriod recalculates every quota (default 5 minutes), which
	// catches what no watched event reports (deleted pods whose grace
	// period ran out, count/* of unwatched resources).
	ResyncPeriod time.Duration
	// Usage, when set, is told every computed usage (quota admission).
	Usage UsageObserver
	// FieldManager recorded on status writes.
	FieldManager string
	// Now is the clock (default time.Now).
	Now    func() time.Time
	Logger *slog.Logger
}

// Controller is the ResourceQuota controller.
type Controller struct {
	api       API
	quotas    *informer.Informer
	quotaList informer.Lister[*corev1.ResourceQuota]
	watched   []*informer.Informer
	queue     *queue.Queue
	opts      Options
	log       *slog.Logger
}

// New builds the controller and registers its informers with factory.
func New(api API, factory *informer.Factory, opts Options) *Controller {
	if opts.Workers <= 0 {
		opts.Workers = 5
	}
	if opts.ResyncPeriod <= 0 {
		opts.ResyncPeriod = 5 * time.Minute
	}
	if opts.FieldManager == "" {
		opts.FieldManager = "orch-resourcequota-controller"
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	c := &Controller{
		api:    api,
		quotas: factory.For(QuotasGVR),
		queue:  queue.New(queue.DefaultRateLimiter()),
		opts:   opts,
		log:    opts.Logger.With("controller", "resourcequota"),
	}
	c.quotaList = informer.NewLister[*corev1.ResourceQuota](c.quotas)
	c.quotas.AddHandler(informer.HandlerFuncs{
		AddFunc: c.enqueueQuota,
		UpdateFunc: func(_, obj runtime.Object) {
			// Our own status writes come back as updates: only a spec that
			// status does not reflect yet needs work.
			if rq, ok := obj.(*corev1.ResourceQuota); ok && !apiequality.Semantic.DeepEqual(rq.Spec.Hard, rq.Status.Hard) {
				c.enqueueQuota(obj)
			}
		},
		DeleteFunc: func(obj runtime.Object) {
			if rq, ok := obj.(*corev1.ResourceQuota); ok && opts.Usage != nil {
				opts.Usage.Forget(rq.Namespace, rq.UID)
			}
			// Quotas count quotas.
			c.objectChanged(quotaGR, obj)
		},
	})
	// A new quota counts as a quota too.
	c.quotas.AddHandler(informer.HandlerFuncs{AddFunc: func(obj runtime.Object) { c.objectChanged(quotaGR, obj) }})
	for _, gvr := range typedWatched {
		c.watch(factory.For(gvr), gvr.GroupResource())
	}
	for _, gvr := range metadataWatched {
		c.watch(factory.Metadata(gvr), gvr.GroupResource())
	}
	return c
}

var quotaGR = QuotasGVR.GroupResource()

// watch recalculates the quotas of an object's namespace when the object
// comes, goes, or changes what it consumes.
func (c *Controller) watch(inf *informer.Informer, gr schema.GroupResource) {
	c.watched = append(c.watched, inf)
	inf.AddHandler(informer.HandlerFuncs{
		AddFunc:    func(obj runtime.Object) { c.objectChanged(gr, obj) },
		DeleteFunc: func(obj runtime.Object) { c.objectChanged(gr, obj) },
		UpdateFunc: func(old, obj runtime.Object) {
			now := c.opts.Now()
			if !quota.Equals(quota.Usage(gr, old, now), quota.Usage(gr, obj, now)) {
				c.objectChanged(gr, obj)
			}
		},
	})
}

// objectChanged queues the quotas of obj's namespace that track gr.
func (c *Controller) objectChanged(gr schema.GroupResource, obj runtime.Object) {
	m, err := meta.Accessor(obj)
	if err != nil || m.GetNamespace() == "" {
		return
	}
	for _, rq := range c.quotaList.List(m.GetNamespace(), labels.Everything()) {
		if len(quota.MatchingResources(gr, quota.ResourceNames(rq.Spec.Hard))) > 0 {
			c.queue.Add(informer.Key(rq.Namespace, rq.Name))
		}
	}
}

func (c *Controller) enqueueQuota(obj runtime.Object) {
	if key, err := informer.KeyOf(obj); err == nil {
		c.queue.Add(key)
	}
}

// Run recalculates quotas until ctx ends.
func (c *Controller) Run(ctx context.Context) error {
	if !informer.WaitForSync(ctx, append([]*informer.Informer{c.quotas}, c.watched...)...) {
		return nil
	}
	c.log.Info("started", "workers", c.opts.Workers, "resync", c.opts.ResyncPeriod)
	var wg sync.WaitGroup
	wg.Go(func() { c.resync(ctx) })
	queue.RunWorkers(ctx, c.queue, c.opts.Workers, c.log, c.reconcile)
	wg.Wait()
	return nil
}

// resync queues every quota each ResyncPeriod until ctx ends.
func (c *Controller) resync(ctx context.Context) {
	t := time.NewTicker(c.opts.ResyncPeriod)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			for _, key := range c.quotas.Keys() {
				c.queue.Add(key)
			}
		}
	}
}

// reconcile recalculates the quota namespace/name and writes its status
// when it changed.
func (c *Controller) reconcile(ctx context.Context, key string) error {
	ns, name := informer.SplitKey(key)
	// Read the quota itself, not the cache: a stale status would make an
	// unchanged-looking usage skip a needed write, and a stale
	// resourceVersion conflict.
	obj, err := c.api.Get(ctx, QuotasGVR, ns, name)
	if apierrors.IsNotFound(err) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("get resourcequota %s: %w", key, err)
	}
	rq, ok := obj.(*corev1.ResourceQuota)
	if !ok {
		return fmt.Errorf("get resourcequota %s: unexpected type %T", key, obj)
	}
	var snapshot uint64
	if c.opts.Usage != nil {
		snapshot = c.opts.Usage.Snapshot()
	}
	used, listed, err := c.calculate(ctx, rq)
	if err != nil {
		return err
	}
	updated := rq.DeepCopy()
	updated.Status.Hard = rq.Spec.Hard.DeepCopy()
	updated.Status.Used = used
	var again error
	if c.opts.Usage != nil && c.opts.Usage.Observe(updated, snapshot, listed.has) {
		// Admitted updates were being stored while we listed: count again
		// once they are done.
		again = queue.RequeueAfter(inFlightRecheck)
	}
	if quota.Equals(rq.Status.Hard, updated.Status.Hard) && quota.Equals(rq.Status.Used, used) {
		return again
	}
	if _, err := c.api.Update(ctx, QuotasGVR, updated, "status", c.opts.FieldManager); err != nil {
		if apierrors.IsNotFound(err) {
			return nil
		}
		// A conflict means a newer quota is on its way through the
		// informer; the retry works on it.
		return fmt.Errorf("update status of resourcequota %s: %w", key, err)
	}
	c.log.Debug("quota status updated", "quota", key, "used", quota.PrettyPrint(used))
	return again
}

// inFlightRecheck is how soon a quota is recalculated after its usage was
// observed while admitted updates were being stored (they take
// milliseconds).
const inFlightRecheck = 50 * time.Millisecond

// listing is the names of the objects a calculation listed, by resource.
type listing map[schema.GroupResource]map[string]struct{}

func (l listing) has(gr schema.GroupResource, name string) bool {
	_, ok := l[gr][name]
	return ok
}

// calculate returns the usage of every resource in rq's spec.hard by the
// objects of its namespace that rq's scopes select, and what it listed.
func (c *Controller) calculate(ctx context.Context, rq *corev1.ResourceQuota) (corev1.ResourceList, listing, error) {
	hardNames := quota.ResourceNames(rq.Spec.Hard)
	used := corev1.ResourceList{}
	for _, name := range hardNames {
		used[name] = resource.Quantity{Format: resource.DecimalSI}
	}
	now := c.opts.Now()
	listed := listing{}
	for _, res := range c.api.Resources() {
		// Aliases serve the objects of another entry: count those once.
		if !res.Namespaced || res.Storage != nil {
			continue
		}
		gvr := res.GroupVersionResource()
		gr := gvr.GroupResource()
		matched := quota.MatchingResources(gr, hardNames)
		if len(matched) == 0 {
			continue
		}
		items, _, err := c.api.List(ctx, gvr, rq.Namespace, metav1.ListOptions{})
		switch {
		case apierrors.IsNotFound(err) || apierrors.IsMethodNotSupported(err):
			continue
		case err != nil:
			return nil, nil, fmt.Errorf("list %s in namespace %s: %w", gr, rq.Namespace, err)
		}
		names := make(map[string]struct{}, len(items))
		listed[gr] = names
		for _, item := range items {
			if m, err := meta.Accessor(item); err == nil {
				names[m.GetName()] = struct{}{}
			}
			if quota.MatchesScopes(rq, gr, item) {
				used = quota.Add(used, quota.Mask(quota.Usage(gr, item, now), matched))
			}
		}
	}
	return used, listed, nil
}
