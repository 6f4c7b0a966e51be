// Package garbagecollector is the garbage collector: it enforces
// metadata.ownerReferences across every served resource, as Kubernetes'
// pkg/controller/garbagecollector does.
//
//   - Background: once all of an object's owners are gone (an owner with
//     the same name but another uid is gone too), the object is deleted.
//   - Foreground: an owner being deleted with the foregroundDeletion
//     finalizer has its dependents deleted; it keeps the finalizer while
//     dependents with blockOwnerDeletion remain, then the collector
//     removes it and the API server deletes the owner.
//   - Orphan: an owner being deleted with the orphan finalizer has its
//     reference removed from every dependent, then the finalizer.
//
// The API server puts those finalizers on an object from its
// DeleteOptions.propagationPolicy. The collector watches every resource
// through metadata-only informers and keeps an ownership graph (owner uid
// → dependents) built from them; decisions that delete something are taken
// on live reads, never on the cache alone. Keys of its work queue are
// "delete/<uid>" (check an object's owners, or finish a foreground deletion)
// and "orphan/<uid>" (release an owner's dependents).
//
// It writes only through the API it is given.
package garbagecollector

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	apiequality "k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"

	"github.com/orch-dev/orch/server/controllers/informer"
	"github.com/orch-dev/orch/server/controllers/queue"
	"github.com/orch-dev/orch/server/registry"
)

// API is the part of orch's in-process API (apiserver.Local) the collector
// uses.
type API interface {
	Get(ctx context.Context, gvr schema.GroupVersionResource, ns, name string) (runtime.Object, error)
	Update(ctx context.Context, gvr schema.GroupVersionResource, obj runtime.Object, subresource, fieldManager string) (runtime.Object, error)
	Delete(ctx context.Context, gvr schema.GroupVersionResource, ns, name string, opts *metav1.DeleteOptions) (bool, error)
	Resources() []*registry.Resource
}

// Recorder records events about objects (events.Recorder).
type Recorder interface {
	Eventf(obj runtime.Object, eventType, reason, messageFmt string, args ...interface{})
}

// Options configure the collector.
type Options struct {
	// Workers processing keys concurrently (Kubernetes' --concurrent-gc-syncs
	// is 20; default 5 here, for small machines).
	Workers int
	// IgnoredResources are not watched; default: core and events.k8s.io
	// events, as in Kubernetes.
	IgnoredResources []schema.GroupResource
	// SyncTimeout bounds the wait for the informers' first lists; the
	// collector starts after it even if some never synced (default 30 s).
	SyncTimeout time.Duration
	// FieldManager recorded on the collector's writes.
	FieldManager string
	Logger       *slog.Logger
}

// DefaultIgnoredResources are the resources Kubernetes' collector ignores.
func DefaultIgnoredResources() []schema.GroupResource {
	return []schema.GroupResource{{Resource: "events"}, {Group: "events.k8s.io", Resource: "events"}}
}

const (
	deletePrefix = "delete/"
	orphanPrefix = "orphan/"
	// maxConflictRetries bounds immediate re-reads after write conflicts;
	// the queue's back-off retries beyond that.
	maxConflictRetries = 5
)

// Controller is the garbage collector.
type Controller struct {
	api       API
	recorder  Recorder
	graph     *graph
	informers []*informer.Informer
	// kinds maps the group/kind of owner references to their resource.
	kinds map[schema.GroupKind]*registry.Resource
	// exact maps a served apiVersion/kind to its resource.
	exact map[schema.GroupVersionKind]*registry.Resource
	queue *queue.Queue
	opts  Options
	log   *slog.Logger
}

// New builds the collector and registers a metadata informer per served
// resource with factory.
func New(api API, factory *informer.Factory, recorder Recorder, opts Options) *Controller {
	if opts.Workers <= 0 {
		opts.Workers = 5
	}
	if opts.IgnoredResources == nil {
		opts.IgnoredResources = DefaultIgnoredResources()
	}
	if opts.SyncTimeout <= 0 {
		opts.SyncTimeout = 30 * time.Second
	}
	if opts.FieldManager == "" {
		opts.FieldManager = "orch-garbage-collector"
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	c := &Controller{
		api:      api,
		recorder: recorder,
		graph:    newGraph(),
		kinds:    map[schema.GroupKind]*registry.Resource{},
		exact:    map[schema.GroupVersionKind]*registry.Resource{},
		// Kubernetes' collector backs off from 5 ms to 1000 s; 5 min is
		// plenty for an in-process API.
		queue: queue.New(queue.NewExponentialRateLimiter(5*time.Millisecond, 5*time.Minute)),
		opts:  opts,
		log:   opts.Logger.With("controller", "garbagecollector"),
	}
	for _, res := range api.Resources() {
		gvk := res.GroupVersionKind()
		c.exact[gvk] = res
		// Prefer the stored version for owner references of other versions.
		if _, ok := c.kinds[gvk.GroupKind()]; !ok || res.Storage == nil {
			c.kinds[gvk.GroupKind()] = res
		}
		// Aliases serve objects another entry already watches.
		if res.Storage != nil || slices.Contains(opts.IgnoredResources, res.GroupVersionResource().GroupResource()) {
			continue
		}
		gvr := res.GroupVersionResource()
		inf := factory.Metadata(gvr)
		inf.AddHandler(informer.HandlerFuncs{
			AddFunc:    func(obj runtime.Object) { c.observe(gvr, obj) },
			UpdateFunc: func(_, obj runtime.Object) { c.observe(gvr, obj) },
			DeleteFunc: func(obj runtime.Object) { c.forget(obj) },
		})
		c.informers = append(c.informers, inf)
	}
	return c
}

// Run processes the queue until ctx ends. It first waits for the
// informers, so that the graph knows every dependent before anything is
// orphaned or deleted.
func (c *Controller) Run(ctx context.Context) error {
	wctx, cancel := context.WithTimeout(ctx, c.opts.SyncTimeout)
	synced := informer.WaitForSync(wctx, c.informers...)
	cancel()
	if ctx.Err() != nil {
		return nil
	}
	if !synced {
		var missing []string
		for _, inf := range c.informers {
			if !inf.HasSynced() {
				missing = append(missing, inf.GroupVersionResource().String())
			}
		}
		// Kubernetes' collector proceeds too: a resource that cannot be
		// listed must not stop collection of all the others.
		c.log.Warn("starting with informers not synced", "resources", missing)
	}
	c.log.Info("started", "workers", c.opts.Workers, "resources", len(c.informers))
	queue.RunWorkers(ctx, c.queue, c.opts.Workers, c.log, c.reconcile)
	return nil
}

// observe updates the graph with an added or changed object and queues the
// work the change calls for.
func (c *Controller) observe(gvr schema.GroupVersionResource, obj runtime.Object) {
	n, err := newNode(gvr, obj)
	if err != nil || n.ref.uid == "" {
		return
	}
	old := c.graph.upsert(n)

	// New or changed owner references: check whether the owners exist.
	if len(n.owners) > 0 && (old == nil || !apiequality.Semantic.DeepEqual(old.owners, n.owners)) {
		c.queue.Add(deletePrefix + string(n.ref.uid))
	}
	// An owner waiting for its dependents may be waiting for this one no
	// more (reference removed, or blockOwnerDeletion dropped).
	if old != nil {
		for _, o := range old.owners {
			if cur, ok := n.ownerRef(o.UID); !ok || blocks(o) != blocks(cur) {
				c.enqueueIfDeletingDependents(o.UID)
			}
		}
	}
	// Foreground deletion starts: delete the dependents, then finish.
	if n.deletingDependents && (old == nil || !old.deletingDependents) {
		for _, dep := range c.graph.dependentsOf(n.ref.uid) {
			c.queue.Add(deletePrefix + string(dep.ref.uid))
		}
		c.queue.Add(deletePrefix + string(n.ref.uid))
	}
	if n.orphaning && (old == nil || !old.orphaning) {
		c.queue.Add(orphanPrefix + string(n.ref.uid))
	}
}

// forget removes a deleted object from the graph: its dependents may have
// lost their last owner, and its owners may be waiting for it.
func (c *Controller) forget(obj runtime.Object) {
	m, err := meta.Accessor(obj)
	if err != nil {
		return
	}
	n := c.graph.remove(m.GetUID())
	if n == nil {
		return
	}
	for _, dep := range c.graph.dependentsOf(n.ref.uid) {
		c.queue.Add(deletePrefix + string(dep.ref.uid))
	}
	for _, o := range n.owners {
		c.enqueueIfDeletingDependents(o.UID)
	}
}

func (c *Controller) enqueueIfDeletingDependents(uid types.UID) {
	if owner := c.graph.get(uid); owner != nil && owner.deletingDependents {
		c.queue.Add(deletePrefix + string(uid))
	}
}

func blocks(ref metav1.OwnerReference) bool {
	return ref.BlockOwnerDeletion != nil && *ref.BlockOwnerDeletion
}

func (c *Controller) reconcile(ctx context.Context, key string) error {
	switch {
	case strings.HasPrefix(key, deletePrefix):
		return c.attemptToDelete(ctx, types.UID(strings.TrimPrefix(key, deletePrefix)))
	case strings.HasPrefix(key, orphanPrefix):
		return c.attemptToOrphan(ctx, types.UID(strings.TrimPrefix(key, orphanPrefix)))
	}
	return nil
}

// getLatest reads the object n stands for; nil (and no error) when it is
// gone or was replaced by another object of the same name.
func (c *Controller) getLatest(ctx context.Context, n *node) (runtime.Object, metav1.Object, error) {
	obj, err := c.api.Get(ctx, n.ref.gvr, n.ref.namespace, n.ref.name)
	if apierrors.IsNotFound(err) {
		return nil, nil, nil
	}
	if err != nil {
		return nil, nil, fmt.Errorf("get %s %s: %w", n.ref.gvr.GroupResource(), objectName(n.ref.namespace, n.ref.name), err)
	}
	m, err := meta.Accessor(obj)
	if err != nil {
		return nil, nil, err
	}
	if m.GetUID() != n.ref.uid {
		return nil, nil, nil
	}
	return obj, m, nil
}

// attemptToDelete deletes the object uid if all its owners are gone or
// deleting their dependents in the foreground, drops references to such
// owners while another owner remains, and finishes the foreground deletion
// of an object whose blocking dependents are gone.
func (c *Controller) attemptToDelete(ctx context.Context, uid types.UID) error {
	n := c.graph.get(uid)
	if n == nil {
		return nil
	}
	obj, m, err := c.getLatest(ctx, n)
	if err != nil || obj == nil {
		return err
	}
	if m.GetDeletionTimestamp() != nil {
		if slices.Contains(m.GetFinalizers(), metav1.FinalizerDeleteDependents) {
			return c.processDeletingDependents(ctx, n)
		}
		// Being deleted is a one-way trip: its dependents are looked at
		// once it is gone.
		return nil
	}
	owners := m.GetOwnerReferences()
	if len(owners) == 0 {
		return nil
	}

	var solid, dangling, waiting []metav1.OwnerReference
	for _, ref := range owners {
		state, err := c.ownerState(ctx, n, ref)
		switch {
		case errors.Is(err, errInvalidOwnerScope):
			// Will not resolve on retry; Kubernetes leaves such objects
			// alone too.
			c.log.Debug("cluster-scoped object refers to a namespaced owner", "object", n.ref.name, "owner", ref.Name)
			if c.recorder != nil {
				c.recorder.Eventf(obj, corev1.EventTypeWarning, "OwnerRefInvalidNamespace",
					"ownerRef [%s/%s, namespace: , name: %s, uid: %s] does not exist in namespace %q", ref.APIVersion, ref.Kind, ref.Name, ref.UID, n.ref.namespace)
			}
			return nil
		case err != nil:
			return err
		}
		switch state {
		case ownerAbsent:
			dangling = append(dangling, ref)
		case ownerDeletingDependents:
			waiting = append(waiting, ref)
		default:
			solid = append(solid, ref)
		}
	}

	switch {
	case len(solid) > 0:
		if len(dangling) == 0 && len(waiting) == 0 {
			return nil
		}
		// Another owner keeps the object; only forget the ones that are
		// gone or going.
		drop := map[types.UID]bool{}
		for _, ref := range append(dangling, waiting...) {
			drop[ref.UID] = true
		}
		return c.updateOwnerReferences(ctx, n, func(refs []metav1.OwnerReference) []metav1.OwnerReference {
			return slices.DeleteFunc(refs, func(r metav1.OwnerReference) bool { return drop[r.UID] })
		})
	case len(waiting) > 0 && c.graph.hasDependents(uid):
		// An owner waits for this object, which has dependents of its own:
		// delete it in the foreground too so the wait covers them. If one
		// of them is itself deleting its dependents, there may be a cycle;
		// stop blocking the owners to break it, as Kubernetes does.
		for _, dep := range c.graph.dependentsOf(uid) {
			if dep.deletingDependents {
				waitingUIDs := map[types.UID]bool{}
				for _, ref := range waiting {
					waitingUIDs[ref.UID] = true
				}
				err := c.updateOwnerReferences(ctx, n, func(refs []metav1.OwnerReference) []metav1.OwnerReference {
					for i := range refs {
						if waitingUIDs[refs[i].UID] && blocks(refs[i]) {
							refs[i].BlockOwnerDeletion = new(false)
						}
					}
					return refs
				})
				if err != nil {
					return err
				}
				break
			}
		}
		return c.deleteObject(ctx, n, metav1.DeletePropagationForeground)
	default:
		policy := metav1.DeletePropagationBackground
		switch finalizers := m.GetFinalizers(); {
		case slices.Contains(finalizers, metav1.FinalizerOrphanDependents):
			policy = metav1.DeletePropagationOrphan
		case slices.Contains(finalizers, metav1.FinalizerDeleteDependents):
			policy = metav1.DeletePropagationForeground
		}
		return c.deleteObject(ctx, n, policy)
	}
}

type ownerStatus int

const (
	ownerPresent ownerStatus = iota
	ownerAbsent
	ownerDeletingDependents
)

var errInvalidOwnerScope = errors.New("cluster-scoped object refers to a namespaced owner")

// ownerState tells whether the owner ref of dependent exists, is absent, or
// is deleting its dependents in the foreground.
func (c *Controller) ownerState(ctx context.Context, dependent *node, ref metav1.OwnerReference) (ownerStatus, error) {
	// An owner in the graph and not being deleted exists: if it was deleted
	// since, its delete event queues this dependent again.
	if owner := c.graph.get(ref.UID); owner != nil && !owner.deleting {
		return ownerPresent, nil
	}
	res, err := c.resourceFor(ref)
	if err != nil {
		return ownerPresent, err
	}
	ns := ""
	if res.Namespaced {
		if dependent.ref.namespace == "" {
			return ownerPresent, errInvalidOwnerScope
		}
		ns = dependent.ref.namespace
	}
	obj, err := c.api.Get(ctx, res.GroupVersionResource(), ns, ref.Name)
	if apierrors.IsNotFound(err) {
		return ownerAbsent, nil
	}
	if err != nil {
		return ownerPresent, fmt.Errorf("get owner %s %s: %w", ref.Kind, objectName(ns, ref.Name), err)
	}
	m, err := meta.Accessor(obj)
	if err != nil {
		return ownerPresent, err
	}
	if m.GetUID() != ref.UID {
		// Same name, another object: the owner is gone.
		return ownerAbsent, nil
	}
	if m.GetDeletionTimestamp() != nil && slices.Contains(m.GetFinalizers(), metav1.FinalizerDeleteDependents) {
		return ownerDeletingDependents, nil
	}
	return ownerPresent, nil
}

// resourceFor maps an owner reference to the resource serving its kind,
// preferring its exact version.
func (c *Controller) resourceFor(ref metav1.OwnerReference) (*registry.Resource, error) {
	gv, err := schema.ParseGroupVersion(ref.APIVersion)
	if err != nil {
		return nil, fmt.Errorf("owner reference %s/%s: %w", ref.Kind, ref.Name, err)
	}
	if res := c.exact[gv.WithKind(ref.Kind)]; res != nil {
		return res, nil
	}
	if res := c.kinds[schema.GroupKind{Group: gv.Group, Kind: ref.Kind}]; res != nil {
		return res, nil
	}
	return nil, fmt.Errorf("owner reference %s/%s: no served resource for kind %s in %q", ref.Kind, ref.Name, ref.Kind, ref.APIVersion)
}

// processDeletingDependents finishes the foreground deletion of n once no
// dependent blocks it, and pushes the deletion of those that still do.
func (c *Controller) processDeletingDependents(ctx context.Context, n *node) error {
	var blocking []*node
	for _, dep := range c.graph.dependentsOf(n.ref.uid) {
		if ref, ok := dep.ownerRef(n.ref.uid); ok && blocks(ref) {
			blocking = append(blocking, dep)
		}
	}
	if len(blocking) == 0 {
		return c.removeFinalizer(ctx, n, metav1.FinalizerDeleteDependents)
	}
	for _, dep := range blocking {
		if !dep.deletingDependents {
			c.queue.Add(deletePrefix + string(dep.ref.uid))
		}
	}
	// The removal of each blocking dependent queues n again.
	return nil
}

// attemptToOrphan removes the owner uid's references from its dependents,
// then its orphan finalizer.
func (c *Controller) attemptToOrphan(ctx context.Context, uid types.UID) error {
	n := c.graph.get(uid)
	if n == nil {
		return nil
	}
	obj, m, err := c.getLatest(ctx, n)
	if err != nil || obj == nil {
		return err
	}
	if m.GetDeletionTimestamp() == nil || !slices.Contains(m.GetFinalizers(), metav1.FinalizerOrphanDependents) {
		return nil
	}
	var errs []error
	for _, dep := range c.graph.dependentsOf(uid) {
		err := c.updateOwnerReferences(ctx, dep, func(refs []metav1.OwnerReference) []metav1.OwnerReference {
			return slices.DeleteFunc(refs, func(r metav1.OwnerReference) bool { return r.UID == uid })
		})
		if err != nil {
			errs = append(errs, err)
		}
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("orphan dependents of %s %s: %w", n.ref.gvr.GroupResource(), objectName(n.ref.namespace, n.ref.name), err)
	}
	return c.removeFinalizer(ctx, n, metav1.FinalizerOrphanDependents)
}

// deleteObject deletes n if it is still the object the decision was taken
// on (uid precondition).
func (c *Controller) deleteObject(ctx context.Context, n *node, policy metav1.DeletionPropagation) error {
	uid := n.ref.uid
	_, err := c.api.Delete(ctx, n.ref.gvr, n.ref.namespace, n.ref.name, &metav1.DeleteOptions{
		Preconditions:     &metav1.Preconditions{UID: &uid},
		PropagationPolicy: &policy,
	})
	switch {
	case err == nil:
		c.log.Debug("deleted", "resource", n.ref.gvr.GroupResource().String(), "object", objectName(n.ref.namespace, n.ref.name), "propagation", policy)
		return nil
	case apierrors.IsNotFound(err):
		return nil
	case apierrors.IsConflict(err):
		// Replaced by another object of the same name: not ours to delete.
		return nil
	}
	return fmt.Errorf("delete %s %s: %w", n.ref.gvr.GroupResource(), objectName(n.ref.namespace, n.ref.name), err)
}

// updateOwnerReferences rewrites n's owner references with edit, re-reading
// after conflicts. Nothing is written when edit changes nothing.
func (c *Controller) updateOwnerReferences(ctx context.Context, n *node, edit func([]metav1.OwnerReference) []metav1.OwnerReference) error {
	return c.updateMeta(ctx, n, "update owner references of", func(m metav1.Object) bool {
		refs := m.GetOwnerReferences()
		before := slices.Clone(refs)
		for i := range before {
			if before[i].BlockOwnerDeletion != nil {
				before[i].BlockOwnerDeletion = new(*before[i].BlockOwnerDeletion)
			}
		}
		after := edit(refs)
		if apiequality.Semantic.DeepEqual(before, after) {
			return false
		}
		if len(after) == 0 {
			after = nil
		}
		m.SetOwnerReferences(after)
		return true
	})
}

// removeFinalizer removes finalizer from n.
func (c *Controller) removeFinalizer(ctx context.Context, n *node, finalizer string) error {
	return c.updateMeta(ctx, n, "remove finalizer "+finalizer+" from", func(m metav1.Object) bool {
		fs := m.GetFinalizers()
		if !slices.Contains(fs, finalizer) {
			return false
		}
		m.SetFinalizers(slices.DeleteFunc(slices.Clone(fs), func(f string) bool { return f == finalizer }))
		return true
	})
}

// updateMeta applies edit to the latest n and writes it when edit reports a
// change, re-reading after conflicts.
func (c *Controller) updateMeta(ctx context.Context, n *node, what string, edit func(metav1.Object) bool) error {
	for attempt := 0; ; attempt++ {
		obj, m, err := c.getLatest(ctx, n)
		if err != nil || obj == nil {
			return err
		}
		if !edit(m) {
			return nil
		}
		_, err = c.api.Update(ctx, n.ref.gvr, obj, "", c.opts.FieldManager)
		switch {
		case err == nil || apierrors.IsNotFound(err):
			return nil
		case apierrors.IsConflict(err) && attempt < maxConflictRetries:
			continue
		}
		return fmt.Errorf("%s %s %s: %w", what, n.ref.gvr.GroupResource(), objectName(n.ref.namespace, n.ref.name), err)
	}
}

func objectName(ns, name string) string {
	if ns == "" {
		return name
	}
	return ns + "/" + name
}
