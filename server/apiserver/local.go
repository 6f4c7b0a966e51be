package apiserver

import (
	"context"
	"fmt"
	corev1 "k8s.io/api/core/v1"
	"net/http"
	"net/url"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/watch"

	"github.com/orch-dev/orch/server/registry"
	"github.com/orch-dev/orch/store"
)

// Local is the API for in-process callers (controllers, the scheduler):
// typed objects in and out, through the same defaulting, validation,
// admission hooks and storage paths as HTTP clients, without the wire.
type Local struct{ s *Server }

// Local returns the in-process API of s.
func (s *Server) Local() *Local { return &Local{s: s} }

func (l *Local) resource(gvr schema.GroupVersionResource) (*registry.Resource, error) {
	res := l.s.table.Lookup(gvr.GroupVersion(), gvr.Resource)
	if res == nil {
		return nil, apierrors.NewNotFound(gvr.GroupResource(), "")
	}
	return res, nil
}

// Get reads one object.
func (l *Local) Get(ctx context.Context, gvr schema.GroupVersionResource, ns, name string) (runtime.Object, error) {
	res, err := l.resource(gvr)
	if err != nil {
		return nil, err
	}
	kv, err := l.s.store.Get(ctx, objectKey(res, ns, name))
	if err != nil {
		return nil, storeError(err, gvr.GroupResource(), name)
	}
	return l.s.decodeStored(res, kv)
}

// List reads all objects of a resource in ns ("" = all namespaces) that
// match the selectors, and the revision they were read at.
func (l *Local) List(ctx context.Context, gvr schema.GroupVersionResource, ns string, opts metav1.ListOptions) ([]runtime.Object, int64, error) {
	res, err := l.resource(gvr)
	if err != nil {
		return nil, 0, err
	}
	q := url.Values{}
	q.Set("labelSelector", opts.LabelSelector)
	q.Set("fieldSelector", opts.FieldSelector)
	r := fakeRequest(q)
	sel, err := parseSelection(r, res)
	if err != nil {
		return nil, 0, err
	}
	lr, err := l.s.listObjects(ctx, res, listQuery{prefix: listPrefix(res, ns)}, sel)
	if err != nil {
		return nil, 0, err
	}
	out := make([]runtime.Object, len(lr.kvs))
	for i, kv := range lr.kvs {
		if out[i] = lr.objs[i]; out[i] == nil {
			if out[i], err = l.s.decodeStored(res, kv); err != nil {
				return nil, 0, err
			}
		}
	}
	return out, lr.revision, nil
}

// Watch streams the changes of a resource in ns after revision rev. The
// channel closes when ctx ends or the watch is cut off (the caller relists).
func (l *Local) Watch(ctx context.Context, gvr schema.GroupVersionResource, ns string, rev int64) (<-chan watch.Event, error) {
	res, err := l.resource(gvr)
	if err != nil {
		return nil, err
	}
	w, err := l.s.store.Watch(ctx, listPrefix(res, ns), rev)
	if err != nil {
		return nil, storeError(err, gvr.GroupResource(), "")
	}
	out := make(chan watch.Event, 64)
	go func() {
		defer close(out)
		defer w.Stop()
		for ev := range w.Events() {
			obj, err := l.s.decodeStored(res, &ev.KV)
			if err != nil {
				l.s.log.Error("decode watch event", "key", ev.KV.Key, "err", err)
				continue
			}
			t := watch.Modified
			switch {
			case ev.Type == store.EventDelete:
				t = watch.Deleted
			case ev.PrevKV == nil:
				t = watch.Added
			}
			select {
			case out <- watch.Event{Type: t, Object: obj}:
			case <-ctx.Done():
				return
			}
		}
	}()
	return out, nil
}

// Create creates obj; its namespace is taken from its metadata.
func (l *Local) Create(ctx context.Context, gvr schema.GroupVersionResource, obj runtime.Object, fieldManager string) (runtime.Object, error) {
	res, err := l.resource(gvr)
	if err != nil {
		return nil, err
	}
	m, err := meta.Accessor(obj)
	if err != nil {
		return nil, err
	}
	obj = obj.DeepCopyObject()
	obj.GetObjectKind().SetGroupVersionKind(res.GroupVersionKind())
	return l.s.createObject(ctx, res, m.GetNamespace(), obj, writeOptions{validation: validationStrict, fieldManager: fieldManager})
}

// Update writes obj (subresource "" or "status", "finalize"...) with its
// resourceVersion as precondition when set.
func (l *Local) Update(ctx context.Context, gvr schema.GroupVersionResource, obj runtime.Object, subresource, fieldManager string) (runtime.Object, error) {
	res, err := l.resource(gvr)
	if err != nil {
		return nil, err
	}
	if subresource != "" && subresource != "status" && !res.HasSubresource(subresource) {
		return nil, fmt.Errorf("%s has no subresource %q", gvr, subresource)
	}
	m, err := meta.Accessor(obj)
	if err != nil {
		return nil, err
	}
	desired := obj.DeepCopyObject()
	desired.GetObjectKind().SetGroupVersionKind(res.GroupVersionKind())
	result, err := l.s.guaranteedUpdate(ctx, res, m.GetNamespace(), m.GetName(), false,
		writeOptions{validation: validationStrict, fieldManager: fieldManager, subresource: subresource},
		func(current runtime.Object) (runtime.Object, error) {
			if err := checkUIDPrecondition(res, m.GetNamespace(), m.GetName(), desired, current); err != nil {
				return nil, err
			}
			return desired.DeepCopyObject(), nil
		})
	if err != nil {
		return nil, err
	}
	return result.obj, nil
}

// CreateSubresource posts obj to a subresource of an object: pods/binding
// (a *corev1.Binding) is what in-process callers need.
func (l *Local) CreateSubresource(ctx context.Context, gvr schema.GroupVersionResource, ns, name, subresource string, obj runtime.Object, fieldManager string) (runtime.Object, error) {
	res, err := l.resource(gvr)
	if err != nil {
		return nil, err
	}
	binding, ok := obj.(*corev1.Binding)
	if gvr != corev1.SchemeGroupVersion.WithResource("pods") || subresource != "binding" || !ok {
		return nil, fmt.Errorf("in-process create of %s/%s with %T is not supported", gvr, subresource, obj)
	}
	opts := writeOptions{validation: validationStrict, fieldManager: fieldManager, subresource: subresource}
	if err := l.s.bindPod(ctx, res, ns, name, binding, opts); err != nil {
		return nil, err
	}
	return &metav1.Status{Status: metav1.StatusSuccess, Code: http.StatusCreated}, nil
}

// Delete deletes one object; deleted is false while it waits for its grace
// period or finalizers.
func (l *Local) Delete(ctx context.Context, gvr schema.GroupVersionResource, ns, name string, opts *metav1.DeleteOptions) (deleted bool, err error) {
	res, err := l.resource(gvr)
	if err != nil {
		return false, err
	}
	if opts == nil {
		opts = &metav1.DeleteOptions{}
	}
	_, deleted, err = l.s.deleteObject(ctx, res, ns, name, opts)
	return deleted, err
}

// Resources lists the resources whose objects are stored (for the garbage
// collector, the namespace and quota controllers, which act on every kind);
// create-only reviews are left out: there is nothing of theirs to list.
func (l *Local) Resources() []*registry.Resource {
	all := l.s.table.Resources()
	stored := make([]*registry.Resource, 0, len(all))
	for _, res := range all {
		if res.Ephemeral == nil {
			stored = append(stored, res)
		}
	}
	return stored
}

// fakeRequest carries query parameters to the shared list code.
func fakeRequest(q url.Values) *http.Request {
	return &http.Request{Method: http.MethodGet, URL: &url.URL{RawQuery: q.Encode()}, Header: http.Header{}}
}
