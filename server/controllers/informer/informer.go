// Package informer keeps a local, watch-driven cache of one resource for
// the controllers running inside orch server, and tells them about changes.
//
// An Informer lists a resource, then watches it from the list's revision,
// applying every event to its cache before it calls the registered
// handlers. When the watch ends (the store cuts off a watcher that falls
// behind, the channel closes) it lists again and turns the difference into
// add, update and delete notifications, so handlers never miss a deletion.
// Controllers use the handlers only to queue keys, and read the cache
// (Get, List) when they reconcile.
//
// A Factory hands out one Informer per resource so that each resource is
// watched once per process; it is a value owned by whoever runs the
// controllers, not a global.
//
// Objects in the cache are shared by every reader: never modify one, copy
// it (DeepCopyObject) first. The package does not write to the API.
package informer

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/watch"
)

// ListWatcher is the part of the API an Informer reads through; orch's
// in-process API (apiserver.Local) implements it.
type ListWatcher interface {
	// List returns the objects of gvr in ns ("" = all) and the revision
	// they were read at.
	List(ctx context.Context, gvr schema.GroupVersionResource, ns string, opts metav1.ListOptions) ([]runtime.Object, int64, error)
	// Watch streams the changes after rev; the channel closes when ctx ends
	// or the watch is cut off.
	Watch(ctx context.Context, gvr schema.GroupVersionResource, ns string, rev int64) (<-chan watch.Event, error)
}

// Handler is told about changes. Its methods run on the informer's
// goroutine, one event at a time and after the cache was updated: they must
// be quick (queue a key) and must not modify the objects.
type Handler interface {
	OnAdd(obj runtime.Object)
	OnUpdate(oldObj, newObj runtime.Object)
	// OnDelete gets the last state the informer knew. After a relist that
	// may be older than the state the object was deleted in.
	OnDelete(obj runtime.Object)
}

// HandlerFuncs adapts functions to Handler; nil functions are skipped.
type HandlerFuncs struct {
	AddFunc    func(obj runtime.Object)
	UpdateFunc func(oldObj, newObj runtime.Object)
	DeleteFunc func(obj runtime.Object)
}

// OnAdd implements Handler.
func (h HandlerFuncs) OnAdd(obj runtime.Object) {
	if h.AddFunc != nil {
		h.AddFunc(obj)
	}
}

// OnUpdate implements Handler.
func (h HandlerFuncs) OnUpdate(oldObj, newObj runtime.Object) {
	if h.UpdateFunc != nil {
		h.UpdateFunc(oldObj, newObj)
	}
}

// OnDelete implements Handler.
func (h HandlerFuncs) OnDelete(obj runtime.Object) {
	if h.DeleteFunc != nil {
		h.DeleteFunc(obj)
	}
}

// OnAny is a handler that calls f with the object of every add, update
// (the new object) and delete: what a controller that enqueues the
// object's key whatever happened needs.
func OnAny(f func(obj runtime.Object)) HandlerFuncs {
	return HandlerFuncs{AddFunc: f, UpdateFunc: func(_, obj runtime.Object) { f(obj) }, DeleteFunc: f}
}

// OnAddOrUpdate is OnAny without deletes.
func OnAddOrUpdate(f func(obj runtime.Object)) HandlerFuncs {
	return HandlerFuncs{AddFunc: f, UpdateFunc: func(_, obj runtime.Object) { f(obj) }}
}

// Options tune an Informer.
type Options struct {
	// Namespace limits the informer to one namespace; "" watches all.
	Namespace string
	// Transform, when set, replaces every object before it is cached and
	// handed to handlers, e.g. MetadataOnly to keep memory small.
	Transform func(runtime.Object) runtime.Object
	// Logger; nil means slog.Default().
	Logger *slog.Logger
	// MinRetry and MaxRetry bound the back-off between failed list/watch
	// attempts; zero means 100 ms and 30 s.
	MinRetry, MaxRetry time.Duration
}

// Informer caches one resource. Build it with New, register handlers with
// AddHandler, run it with Run.
type Informer struct {
	lw   ListWatcher
	gvr  schema.GroupVersionResource
	opts Options
	log  *slog.Logger

	// dispatch serializes cache changes with their notifications, and with
	// AddHandler's replay, so that every handler sees one ordered history.
	dispatch sync.Mutex
	handlers []Handler

	mu    sync.RWMutex
	items map[string]runtime.Object
	// byNamespace indexes keys by namespace for List(ns, ...).
	byNamespace map[string]map[string]struct{}
	// indexes are the ones added with AddIndex, by name.
	indexes map[string]*index

	synced   chan struct{}
	syncOnce sync.Once
}

// New returns an informer of gvr; it does nothing until Run.
func New(lw ListWatcher, gvr schema.GroupVersionResource, opts Options) *Informer {
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.MinRetry <= 0 {
		opts.MinRetry = 100 * time.Millisecond
	}
	if opts.MaxRetry <= 0 {
		opts.MaxRetry = 30 * time.Second
	}
	return &Informer{
		lw:          lw,
		gvr:         gvr,
		opts:        opts,
		log:         opts.Logger.With("informer", gvr.String()),
		items:       map[string]runtime.Object{},
		byNamespace: map[string]map[string]struct{}{},
		indexes:     map[string]*index{},
		synced:      make(chan struct{}),
	}
}

// GroupVersionResource is the resource this informer caches.
func (i *Informer) GroupVersionResource() schema.GroupVersionResource { return i.gvr }

// AddHandler registers h. Objects already cached are replayed to it as
// adds, so a handler added late sees the same state as an early one.
func (i *Informer) AddHandler(h Handler) {
	i.dispatch.Lock()
	defer i.dispatch.Unlock()
	i.handlers = append(i.handlers, h)
	i.mu.RLock()
	objs := make([]runtime.Object, 0, len(i.items))
	for _, obj := range i.items {
		objs = append(objs, obj)
	}
	i.mu.RUnlock()
	for _, obj := range objs {
		h.OnAdd(obj)
	}
}

// HasSynced reports whether the first list has been applied.
func (i *Informer) HasSynced() bool {
	select {
	case <-i.synced:
		return true
	default:
		return false
	}
}

// Synced is closed once the first list has been applied and its
// notifications delivered.
func (i *Informer) Synced() <-chan struct{} { return i.synced }

// WaitForSync blocks until every informer has synced (true) or ctx ends
// (false).
func WaitForSync(ctx context.Context, informers ...*Informer) bool {
	for _, inf := range informers {
		select {
		case <-inf.synced:
		case <-ctx.Done():
			return false
		}
	}
	return true
}

// Run lists and watches until ctx ends, relisting whenever the watch ends.
// Failed attempts are retried with exponential back-off, except that a
// watch refused because its revision has left the server's history (410,
// as after a long list under a write burst) is followed by one immediate
// relist, as client-go's reflector does; should that watch expire too,
// the back-off applies, so a history too short for the list never turns
// into a relist loop. It returns nil when ctx ends.
func (i *Informer) Run(ctx context.Context) error {
	delay := i.opts.MinRetry
	expiredBefore := false
	for {
		started := time.Now()
		err := i.listAndWatch(ctx)
		if ctx.Err() != nil {
			return nil
		}
		expired := isExpired(err)
		switch {
		case expired && !expiredBefore:
			i.log.Info("watch history expired; relisting", "err", err)
			expiredBefore = true
			continue
		case err != nil:
			i.log.Warn("list/watch failed; retrying", "err", err, "retryIn", delay)
		case time.Since(started) < time.Second:
			// A watch that ends at once, again and again, must not turn into
			// a busy relist loop.
		default:
			delay = i.opts.MinRetry
			expiredBefore = false
			continue
		}
		expiredBefore = expired
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(delay):
		}
		delay = min(delay*2, i.opts.MaxRetry)
	}
}

// isExpired reports whether err is the API's 410: the revision asked for
// is no longer in the watch history.
func isExpired(err error) bool {
	return err != nil && (apierrors.IsResourceExpired(err) || apierrors.IsGone(err))
}

func (i *Informer) listAndWatch(ctx context.Context) error {
	objs, rev, err := i.lw.List(ctx, i.gvr, i.opts.Namespace, metav1.ListOptions{})
	if err != nil {
		return fmt.Errorf("list %s: %w", i.gvr, err)
	}
	// Watch before applying the list: with tens of thousands of objects
	// the handlers take a while, and the list's revision must not leave
	// the history meanwhile. The events wait in the watch.
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	events, werr := i.lw.Watch(wctx, i.gvr, i.opts.Namespace, rev)
	// The list is applied even when the watch failed: it is the truth at
	// rev, and the informer syncs.
	if err := i.replace(objs); err != nil {
		return err
	}
	i.syncOnce.Do(func() { close(i.synced) })
	if werr != nil {
		return fmt.Errorf("watch %s from revision %d: %w", i.gvr, rev, werr)
	}

	for ev := range events {
		switch ev.Type {
		case watch.Added, watch.Modified:
			if err := i.upsert(ev.Object); err != nil {
				i.log.Error("skip watch event", "type", ev.Type, "err", err)
			}
		case watch.Deleted:
			if err := i.remove(ev.Object); err != nil {
				i.log.Error("skip watch event", "type", ev.Type, "err", err)
			}
		case watch.Error:
			return fmt.Errorf("watch %s: %w", i.gvr, errorFromEvent(ev))
		}
	}
	// The watch ended (cut off or closed): the caller relists.
	return nil
}

// errorFromEvent is the API error an Error event carries.
func errorFromEvent(ev watch.Event) error {
	if st, ok := ev.Object.(*metav1.Status); ok {
		return &apierrors.StatusError{ErrStatus: *st}
	}
	return fmt.Errorf("%v", ev.Object)
}

func (i *Informer) transform(obj runtime.Object) runtime.Object {
	if i.opts.Transform != nil {
		return i.opts.Transform(obj)
	}
	return obj
}

// replace makes the cache equal to objs (a fresh list) and notifies the
// differences: adds, updates of changed objects, deletes of vanished ones.
func (i *Informer) replace(objs []runtime.Object) error {
	fresh := make(map[string]runtime.Object, len(objs))
	for _, obj := range objs {
		obj = i.transform(obj)
		key, err := KeyOf(obj)
		if err != nil {
			return fmt.Errorf("list %s: %w", i.gvr, err)
		}
		fresh[key] = obj
	}

	i.dispatch.Lock()
	defer i.dispatch.Unlock()
	type change struct{ old, cur runtime.Object }
	var changes []change
	i.mu.Lock()
	for key, old := range i.items {
		if _, ok := fresh[key]; !ok {
			i.deleteLocked(key)
			changes = append(changes, change{old: old})
		}
	}
	for key, obj := range fresh {
		old, ok := i.items[key]
		if ok && resourceVersion(old) == resourceVersion(obj) && uid(old) == uid(obj) {
			continue
		}
		i.storeLocked(key, obj)
		changes = append(changes, change{old: old, cur: obj})
	}
	i.mu.Unlock()

	for _, c := range changes {
		switch {
		case c.cur == nil:
			i.notifyDelete(c.old)
		case c.old == nil:
			i.notifyAdd(c.cur)
		case uid(c.old) != uid(c.cur):
			// Deleted and recreated while we were not watching.
			i.notifyDelete(c.old)
			i.notifyAdd(c.cur)
		default:
			i.notifyUpdate(c.old, c.cur)
		}
	}
	return nil
}

func (i *Informer) upsert(obj runtime.Object) error {
	obj = i.transform(obj)
	key, err := KeyOf(obj)
	if err != nil {
		return err
	}
	i.dispatch.Lock()
	defer i.dispatch.Unlock()
	i.mu.Lock()
	old, ok := i.items[key]
	i.storeLocked(key, obj)
	i.mu.Unlock()
	switch {
	case !ok:
		i.notifyAdd(obj)
	case uid(old) != uid(obj):
		i.notifyDelete(old)
		i.notifyAdd(obj)
	default:
		i.notifyUpdate(old, obj)
	}
	return nil
}

func (i *Informer) remove(obj runtime.Object) error {
	obj = i.transform(obj)
	key, err := KeyOf(obj)
	if err != nil {
		return err
	}
	i.dispatch.Lock()
	defer i.dispatch.Unlock()
	i.mu.Lock()
	_, ok := i.items[key]
	if ok {
		i.deleteLocked(key)
	}
	i.mu.Unlock()
	if ok {
		i.notifyDelete(obj)
	}
	return nil
}

func (i *Informer) storeLocked(key string, obj runtime.Object) {
	old := i.items[key]
	i.items[key] = obj
	for _, idx := range i.indexes {
		idx.update(key, old, obj)
	}
	ns, _ := SplitKey(key)
	keys := i.byNamespace[ns]
	if keys == nil {
		keys = map[string]struct{}{}
		i.byNamespace[ns] = keys
	}
	keys[key] = struct{}{}
}

func (i *Informer) deleteLocked(key string) {
	if old, ok := i.items[key]; ok {
		for _, idx := range i.indexes {
			idx.update(key, old, nil)
		}
	}
	delete(i.items, key)
	ns, _ := SplitKey(key)
	if keys := i.byNamespace[ns]; keys != nil {
		delete(keys, key)
		if len(keys) == 0 {
			delete(i.byNamespace, ns)
		}
	}
}

// The notify helpers run with i.dispatch held.

func (i *Informer) notifyAdd(obj runtime.Object) {
	for _, h := range i.handlers {
		h.OnAdd(obj)
	}
}

func (i *Informer) notifyUpdate(old, obj runtime.Object) {
	for _, h := range i.handlers {
		h.OnUpdate(old, obj)
	}
}

func (i *Informer) notifyDelete(obj runtime.Object) {
	for _, h := range i.handlers {
		h.OnDelete(obj)
	}
}

// Get returns the cached object with key ("namespace/name", or "name" for
// cluster-scoped objects). Do not modify it.
func (i *Informer) Get(key string) (runtime.Object, bool) {
	i.mu.RLock()
	defer i.mu.RUnlock()
	obj, ok := i.items[key]
	return obj, ok
}

// GetByName is Get(Key(namespace, name)).
func (i *Informer) GetByName(namespace, name string) (runtime.Object, bool) {
	return i.Get(Key(namespace, name))
}

// List returns the cached objects in namespace ("" = all namespaces, or the
// cluster-scoped objects) whose labels match sel (nil = everything), in no
// particular order. Do not modify them.
func (i *Informer) List(namespace string, sel labels.Selector) []runtime.Object {
	i.mu.RLock()
	defer i.mu.RUnlock()
	var out []runtime.Object
	add := func(obj runtime.Object) {
		if sel == nil || sel.Empty() {
			out = append(out, obj)
			return
		}
		if m, err := meta.Accessor(obj); err == nil && sel.Matches(labels.Set(m.GetLabels())) {
			out = append(out, obj)
		}
	}
	if namespace == "" {
		for _, obj := range i.items {
			add(obj)
		}
		return out
	}
	for key := range i.byNamespace[namespace] {
		add(i.items[key])
	}
	return out
}

// Keys returns the keys of every cached object.
func (i *Informer) Keys() []string {
	i.mu.RLock()
	defer i.mu.RUnlock()
	keys := make([]string, 0, len(i.items))
	for k := range i.items {
		keys = append(keys, k)
	}
	return keys
}

// Len is the number of cached objects.
func (i *Informer) Len() int {
	i.mu.RLock()
	defer i.mu.RUnlock()
	return len(i.items)
}

func resourceVersion(obj runtime.Object) string {
	if m, err := meta.Accessor(obj); err == nil {
		return m.GetResourceVersion()
	}
	return ""
}

func uid(obj runtime.Object) string {
	if m, err := meta.Accessor(obj); err == nil {
		return string(m.GetUID())
	}
	return ""
}
