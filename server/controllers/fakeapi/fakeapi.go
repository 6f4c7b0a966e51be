// Package fakeapi is an in-memory stand-in for orch's in-process API
// (apiserver.Local) for controller tests: typed objects, revisions,
// watches with history, and the deletion rules controllers depend on
// (finalizers, the garbage collector's orphan/foreground finalizers, pod
// grace periods, namespace spec finalizers and the finalize subresource).
//
// It is deliberately small and is not a second API server: no defaulting,
// no validation beyond what the controllers' logic needs. Only tests import
// it.
package fakeapi

import (
	"context"
	"fmt"
	"reflect"
	"sort"
	"strconv"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	apiequality "k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/watch"

	"github.com/orch-dev/orch/server/registry"
)

// Action records one write, for assertions.
type Action struct {
	Verb        string // create, update, delete
	Resource    string // e.g. "pods", "replicasets.apps"
	Namespace   string
	Name        string
	Subresource string
	// Propagation is the delete's propagation policy ("" if none).
	Propagation metav1.DeletionPropagation
}

func (a Action) String() string {
	s := a.Verb + " " + a.Resource
	if a.Subresource != "" {
		s += "/" + a.Subresource
	}
	s += " " + a.Namespace + "/" + a.Name
	if a.Propagation != "" {
		s += " (" + string(a.Propagation) + ")"
	}
	return s
}

// API is the fake. Its zero value is not usable; build one with New.
type API struct {
	// WatchBuffer is the channel size of new watches (default 100); a
	// watcher that falls that far behind is cut off, as the store does.
	WatchBuffer int
	// Now is the clock used for deletion timestamps (default time.Now).
	Now func() time.Time

	failMu sync.Mutex
	failFn func(verb string, gvr schema.GroupVersionResource, ns, name string) error

	mu        sync.Mutex
	rev       int64
	uids      int
	resources []*registry.Resource
	byGVR     map[schema.GroupVersionResource]*registry.Resource
	// objects by storage resource, then "ns/name".
	objects  map[*registry.Resource]map[string]runtime.Object
	history  []event
	watchers map[*watcher]struct{}
	actions  []Action
}

type event struct {
	res *registry.Resource // storage resource
	ns  string
	ev  watch.Event
}

type watcher struct {
	res *registry.Resource
	ns  string
	ch  chan watch.Event
}

// New returns an empty fake serving resources (Resources() if none given).
func New(resources ...*registry.Resource) *API {
	if len(resources) == 0 {
		resources = Resources()
	}
	a := &API{
		resources: resources,
		byGVR:     map[schema.GroupVersionResource]*registry.Resource{},
		objects:   map[*registry.Resource]map[string]runtime.Object{},
		watchers:  map[*watcher]struct{}{},
	}
	for _, r := range resources {
		a.byGVR[r.GroupVersionResource()] = r
	}
	return a
}

// Resources implements the controllers' API.
func (a *API) Resources() []*registry.Resource { return a.resources }

func (a *API) resource(gvr schema.GroupVersionResource) (*registry.Resource, error) {
	r := a.byGVR[gvr]
	if r == nil {
		return nil, apierrors.NewNotFound(gvr.GroupResource(), "")
	}
	return r, nil
}

func (a *API) now() time.Time {
	if a.Now != nil {
		return a.Now()
	}
	return time.Now()
}

// SetFail installs fn, consulted before every call (verb "get", "list",
// "watch", "create", "update", "delete"): a non-nil error is returned to the
// caller. nil removes it.
func (a *API) SetFail(fn func(verb string, gvr schema.GroupVersionResource, ns, name string) error) {
	a.failMu.Lock()
	defer a.failMu.Unlock()
	a.failFn = fn
}

func (a *API) fail(verb string, gvr schema.GroupVersionResource, ns, name string) error {
	a.failMu.Lock()
	fn := a.failFn
	a.failMu.Unlock()
	if fn == nil {
		return nil
	}
	return fn(verb, gvr, ns, name)
}

func key(ns, name string) string { return ns + "/" + name }

// out returns a copy of a stored object as res serves it.
func out(res *registry.Resource, obj runtime.Object) runtime.Object {
	c := obj.DeepCopyObject()
	c.GetObjectKind().SetGroupVersionKind(res.GroupVersionKind())
	return c
}

// Get implements the controllers' API.
func (a *API) Get(_ context.Context, gvr schema.GroupVersionResource, ns, name string) (runtime.Object, error) {
	if err := a.fail("get", gvr, ns, name); err != nil {
		return nil, err
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	res, err := a.resource(gvr)
	if err != nil {
		return nil, err
	}
	obj, ok := a.objects[res.StorageResource()][key(ns, name)]
	if !ok {
		return nil, apierrors.NewNotFound(gvr.GroupResource(), name)
	}
	return out(res, obj), nil
}

// List implements the controllers' API (label selectors, and field
// selectors on metadata.name and metadata.namespace).
func (a *API) List(_ context.Context, gvr schema.GroupVersionResource, ns string, opts metav1.ListOptions) ([]runtime.Object, int64, error) {
	if err := a.fail("list", gvr, ns, ""); err != nil {
		return nil, 0, err
	}
	lsel, err := labels.Parse(opts.LabelSelector)
	if err != nil {
		return nil, 0, apierrors.NewBadRequest(err.Error())
	}
	fsel, err := fields.ParseSelector(opts.FieldSelector)
	if err != nil {
		return nil, 0, apierrors.NewBadRequest(err.Error())
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	res, err := a.resource(gvr)
	if err != nil {
		return nil, 0, err
	}
	var keys []string
	for k := range a.objects[res.StorageResource()] {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var objs []runtime.Object
	for _, k := range keys {
		obj := a.objects[res.StorageResource()][k]
		m, _ := meta.Accessor(obj)
		if ns != "" && m.GetNamespace() != ns {
			continue
		}
		if !lsel.Matches(labels.Set(m.GetLabels())) {
			continue
		}
		if !fsel.Matches(fields.Set{"metadata.name": m.GetName(), "metadata.namespace": m.GetNamespace()}) {
			continue
		}
		objs = append(objs, out(res, obj))
	}
	return objs, a.rev, nil
}

// Watch implements the controllers' API: the events after rev (from the
// fake's full history), then live ones.
func (a *API) Watch(ctx context.Context, gvr schema.GroupVersionResource, ns string, rev int64) (<-chan watch.Event, error) {
	if err := a.fail("watch", gvr, ns, ""); err != nil {
		return nil, err
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	res, err := a.resource(gvr)
	if err != nil {
		return nil, err
	}
	size := a.WatchBuffer
	if size <= 0 {
		size = 100
	}
	w := &watcher{res: res, ns: ns, ch: make(chan watch.Event, size)}
	a.watchers[w] = struct{}{}
	for _, e := range a.history {
		if m, _ := meta.Accessor(e.ev.Object); m != nil && revisionOf(m) > rev {
			a.sendLocked(w, e)
		}
	}
	go func() {
		<-ctx.Done()
		a.mu.Lock()
		defer a.mu.Unlock()
		a.closeLocked(w)
	}()
	return w.ch, nil
}

func revisionOf(m metav1.Object) int64 {
	n, _ := strconv.ParseInt(m.GetResourceVersion(), 10, 64)
	return n
}

func (a *API) sendLocked(w *watcher, e event) {
	if _, open := a.watchers[w]; !open {
		return
	}
	if w.res.StorageResource() != e.res || (w.ns != "" && w.ns != e.ns) {
		return
	}
	ev := watch.Event{Type: e.ev.Type, Object: out(w.res, e.ev.Object)}
	select {
	case w.ch <- ev:
	default:
		// Too far behind: cut it off, as the store does; it relists.
		a.closeLocked(w)
	}
}

func (a *API) closeLocked(w *watcher) {
	if _, open := a.watchers[w]; open {
		delete(a.watchers, w)
		close(w.ch)
	}
}

// CutWatches closes every open watch, as the store does to slow watchers.
func (a *API) CutWatches() {
	a.mu.Lock()
	defer a.mu.Unlock()
	for w := range a.watchers {
		a.closeLocked(w)
	}
}

// Watchers is the number of open watches.
func (a *API) Watchers() int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return len(a.watchers)
}

func (a *API) emitLocked(res *registry.Resource, t watch.EventType, obj runtime.Object) {
	m, _ := meta.Accessor(obj)
	e := event{res: res.StorageResource(), ns: m.GetNamespace(), ev: watch.Event{Type: t, Object: obj.DeepCopyObject()}}
	a.history = append(a.history, e)
	for w := range a.watchers {
		a.sendLocked(w, e)
	}
}

func (a *API) record(act Action) {
	a.actions = append(a.actions, act)
}

func resourceName(gvr schema.GroupVersionResource) string {
	return gvr.GroupResource().String()
}

// Create implements the controllers' API.
func (a *API) Create(_ context.Context, gvr schema.GroupVersionResource, obj runtime.Object, _ string) (runtime.Object, error) {
	m, err := meta.Accessor(obj)
	if err != nil {
		return nil, err
	}
	if err := a.fail("create", gvr, m.GetNamespace(), m.GetName()); err != nil {
		return nil, err
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	res, err := a.resource(gvr)
	if err != nil {
		return nil, err
	}
	ns := m.GetNamespace()
	if !res.Namespaced {
		ns = ""
	}
	store := a.objects[res.StorageResource()]
	if store == nil {
		store = map[string]runtime.Object{}
		a.objects[res.StorageResource()] = store
	}
	k := key(ns, m.GetName())
	if _, exists := store[k]; exists {
		return nil, apierrors.NewAlreadyExists(gvr.GroupResource(), m.GetName())
	}
	obj = obj.DeepCopyObject()
	m, _ = meta.Accessor(obj)
	m.SetNamespace(ns)
	if m.GetUID() == "" {
		a.uids++
		m.SetUID(types.UID(fmt.Sprintf("uid-%d", a.uids)))
	}
	m.SetCreationTimestamp(metav1.NewTime(a.now()))
	m.SetDeletionTimestamp(nil)
	a.rev++
	m.SetResourceVersion(strconv.FormatInt(a.rev, 10))
	store[k] = obj
	a.record(Action{Verb: "create", Resource: resourceName(gvr), Namespace: ns, Name: m.GetName()})
	a.emitLocked(res, watch.Added, obj)
	return out(res, obj), nil
}

// Update implements the controllers' API: subresource "" keeps the status,
// "status" keeps all but the status, others use the resource's
// PrepareForSubresource. An object being deleted goes away when its last
// finalizer is removed.
func (a *API) Update(_ context.Context, gvr schema.GroupVersionResource, obj runtime.Object, subresource, _ string) (runtime.Object, error) {
	m, err := meta.Accessor(obj)
	if err != nil {
		return nil, err
	}
	if err := a.fail("update", gvr, m.GetNamespace(), m.GetName()); err != nil {
		return nil, err
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	res, err := a.resource(gvr)
	if err != nil {
		return nil, err
	}
	if subresource != "" && !res.HasSubresource(subresource) {
		return nil, fmt.Errorf("%s has no subresource %q", gvr, subresource)
	}
	k := key(m.GetNamespace(), m.GetName())
	store := a.objects[res.StorageResource()]
	cur, ok := store[k]
	if !ok {
		return nil, apierrors.NewNotFound(gvr.GroupResource(), m.GetName())
	}
	cm, _ := meta.Accessor(cur)
	if rv := m.GetResourceVersion(); rv != "" && rv != cm.GetResourceVersion() {
		return nil, apierrors.NewConflict(gvr.GroupResource(), m.GetName(),
			fmt.Errorf("the object has been modified; please apply your changes to the latest version and try again"))
	}
	obj = obj.DeepCopyObject()
	switch {
	case subresource == "status":
		res.PrepareForStatusUpdate(obj, cur)
	case subresource != "":
		prepare := res.PrepareForSubresource[subresource]
		if prepare == nil {
			return nil, fmt.Errorf("%s/%s: no update strategy", gvr, subresource)
		}
		prepare(obj, cur)
	case res.PrepareForUpdate != nil:
		res.PrepareForUpdate(obj, cur)
	}
	m, _ = meta.Accessor(obj)
	// What clients cannot change.
	m.SetUID(cm.GetUID())
	m.SetCreationTimestamp(cm.GetCreationTimestamp())
	m.SetDeletionTimestamp(cm.GetDeletionTimestamp())
	m.SetDeletionGracePeriodSeconds(cm.GetDeletionGracePeriodSeconds())
	m.SetResourceVersion(cm.GetResourceVersion())
	a.record(Action{Verb: "update", Resource: resourceName(gvr), Namespace: m.GetNamespace(), Name: m.GetName(), Subresource: subresource})

	if deletionComplete(obj) {
		a.rev++
		m.SetResourceVersion(strconv.FormatInt(a.rev, 10))
		delete(store, k)
		a.emitLocked(res, watch.Deleted, obj)
		return out(res, obj), nil
	}
	if apiequality.Semantic.DeepEqual(obj, cur) {
		return out(res, obj), nil
	}
	a.rev++
	m.SetResourceVersion(strconv.FormatInt(a.rev, 10))
	store[k] = obj
	a.emitLocked(res, watch.Modified, obj)
	return out(res, obj), nil
}

// deletionComplete: being deleted, grace period over, nothing holds it.
func deletionComplete(obj runtime.Object) bool {
	m, _ := meta.Accessor(obj)
	if m.GetDeletionTimestamp() == nil || len(m.GetFinalizers()) > 0 {
		return false
	}
	if g := m.GetDeletionGracePeriodSeconds(); g != nil && *g > 0 {
		return false
	}
	if ns, ok := obj.(*corev1.Namespace); ok && len(ns.Spec.Finalizers) > 0 {
		return false
	}
	return true
}

// Delete implements the controllers' API with Kubernetes' rules:
// preconditions, pods' grace period (pods on a node), namespaces' spec
// finalizers, the propagation policy's finalizers, then removal.
func (a *API) Delete(_ context.Context, gvr schema.GroupVersionResource, ns, name string, opts *metav1.DeleteOptions) (bool, error) {
	if err := a.fail("delete", gvr, ns, name); err != nil {
		return false, err
	}
	if opts == nil {
		opts = &metav1.DeleteOptions{}
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	res, err := a.resource(gvr)
	if err != nil {
		return false, err
	}
	k := key(ns, name)
	store := a.objects[res.StorageResource()]
	cur, ok := store[k]
	if !ok {
		return false, apierrors.NewNotFound(gvr.GroupResource(), name)
	}
	act := Action{Verb: "delete", Resource: resourceName(gvr), Namespace: ns, Name: name}
	if opts.PropagationPolicy != nil {
		act.Propagation = *opts.PropagationPolicy
	}
	a.record(act)
	obj := cur.DeepCopyObject()
	m, _ := meta.Accessor(obj)
	if p := opts.Preconditions; p != nil {
		if p.UID != nil && *p.UID != m.GetUID() {
			return false, apierrors.NewConflict(gvr.GroupResource(), name, fmt.Errorf("Precondition failed: UID in precondition: %v, UID in object meta: %v", *p.UID, m.GetUID()))
		}
		if p.ResourceVersion != nil && *p.ResourceVersion != m.GetResourceVersion() {
			return false, apierrors.NewConflict(gvr.GroupResource(), name, fmt.Errorf("Precondition failed: ResourceVersion in precondition: %v, ResourceVersion in object meta: %v", *p.ResourceVersion, m.GetResourceVersion()))
		}
	}
	now := metav1.NewTime(a.now())
	pending := false
	switch o := obj.(type) {
	case *corev1.Pod:
		pending = podGrace(o, opts.GracePeriodSeconds, now)
	case *corev1.Namespace:
		if len(o.Spec.Finalizers) > 0 {
			pending = true
			o.Status.Phase = corev1.NamespaceTerminating
		}
	}
	setGCFinalizers(m, opts)
	if len(m.GetFinalizers()) > 0 {
		pending = true
	}
	if pending {
		if m.GetDeletionTimestamp() == nil {
			m.SetDeletionTimestamp(&now)
			zero := int64(0)
			m.SetDeletionGracePeriodSeconds(&zero)
		}
		if apiequality.Semantic.DeepEqual(obj, cur) {
			return false, nil
		}
		a.rev++
		m.SetResourceVersion(strconv.FormatInt(a.rev, 10))
		store[k] = obj
		a.emitLocked(res, watch.Modified, obj)
		return false, nil
	}
	a.rev++
	m.SetResourceVersion(strconv.FormatInt(a.rev, 10))
	delete(store, k)
	a.emitLocked(res, watch.Deleted, obj)
	return true, nil
}

// podGrace marks a pod on a node terminating for its grace period; it
// reports whether the pod must stay (the node's agent deletes it finally).
func podGrace(pod *corev1.Pod, requested *int64, now metav1.Time) bool {
	grace := int64(corev1.DefaultTerminationGracePeriodSeconds)
	if pod.Spec.TerminationGracePeriodSeconds != nil {
		grace = *pod.Spec.TerminationGracePeriodSeconds
	}
	if requested != nil {
		grace = *requested
	}
	if pod.Spec.NodeName == "" || pod.Status.Phase == corev1.PodSucceeded || pod.Status.Phase == corev1.PodFailed || grace <= 0 {
		if pod.DeletionTimestamp != nil {
			zero := int64(0)
			pod.DeletionGracePeriodSeconds = &zero
		}
		return false
	}
	if pod.DeletionTimestamp == nil {
		deadline := metav1.NewTime(now.Add(time.Duration(grace) * time.Second))
		pod.DeletionTimestamp = &deadline
		pod.DeletionGracePeriodSeconds = &grace
	}
	return true
}

// setGCFinalizers adds the orphan or foreground finalizer the propagation
// policy asks for, as the API server does.
func setGCFinalizers(m metav1.Object, opts *metav1.DeleteOptions) {
	var policy metav1.DeletionPropagation
	switch {
	case opts.PropagationPolicy != nil:
		policy = *opts.PropagationPolicy
	case opts.OrphanDependents != nil && *opts.OrphanDependents:
		policy = metav1.DeletePropagationOrphan
	case opts.OrphanDependents != nil:
		policy = metav1.DeletePropagationBackground
	default:
		return
	}
	var fs []string
	for _, f := range m.GetFinalizers() {
		if f != metav1.FinalizerOrphanDependents && f != metav1.FinalizerDeleteDependents {
			fs = append(fs, f)
		}
	}
	switch policy {
	case metav1.DeletePropagationOrphan:
		fs = append(fs, metav1.FinalizerOrphanDependents)
	case metav1.DeletePropagationForeground:
		fs = append(fs, metav1.FinalizerDeleteDependents)
	}
	m.SetFinalizers(fs)
}

// Actions returns the writes so far.
func (a *API) Actions() []Action {
	a.mu.Lock()
	defer a.mu.Unlock()
	return append([]Action(nil), a.actions...)
}

// Revision is the fake's current revision.
func (a *API) Revision() int64 {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.rev
}

// Exists reports whether the object is stored (possibly being deleted).
func (a *API) Exists(gvr schema.GroupVersionResource, ns, name string) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	res := a.byGVR[gvr]
	if res == nil {
		return false
	}
	_, ok := a.objects[res.StorageResource()][key(ns, name)]
	return ok
}

// MustCreate creates obj or panics; for test set-up.
func (a *API) MustCreate(gvr schema.GroupVersionResource, obj runtime.Object) runtime.Object {
	out, err := a.Create(context.Background(), gvr, obj, "test")
	if err != nil {
		panic(fmt.Sprintf("create %s: %v", gvr, err))
	}
	return out
}

// KeepStatus copies old's status into obj (main-resource updates).
func KeepStatus(obj, old runtime.Object) {
	dst := reflect.ValueOf(obj).Elem().FieldByName("Status")
	if dst.IsValid() {
		dst.Set(reflect.ValueOf(old.DeepCopyObject()).Elem().FieldByName("Status"))
	}
}

// KeepAllButStatus makes obj a copy of old with obj's status (status
// subresource updates).
func KeepAllButStatus(obj, old runtime.Object) {
	v := reflect.ValueOf(obj).Elem()
	status := v.FieldByName("Status")
	saved := reflect.New(status.Type()).Elem()
	saved.Set(status)
	v.Set(reflect.ValueOf(old.DeepCopyObject()).Elem())
	v.FieldByName("Status").Set(saved)
}
