package informer

import (
	"context"
	"log/slog"
	"sync"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
)

// Factory hands out shared informers: one typed and at most one
// metadata-only informer per resource and process. Controllers ask for
// informers while they are built; Run starts them (and any asked for
// later) and stops them when its context ends.
type Factory struct {
	lw  ListWatcher
	log *slog.Logger

	mu        sync.Mutex
	informers map[factoryKey]*Informer
	ctx       context.Context // set while Run runs
	stopped   bool
	wg        sync.WaitGroup
}

type factoryKey struct {
	gvr      schema.GroupVersionResource
	metadata bool
}

// NewFactory returns a factory of informers reading through lw.
func NewFactory(lw ListWatcher, log *slog.Logger) *Factory {
	if log == nil {
		log = slog.Default()
	}
	return &Factory{lw: lw, log: log, informers: map[factoryKey]*Informer{}}
}

// For returns the shared informer of gvr, caching typed objects. Pods are
// cached through SlimPod: write one back with a full update only after
// WithLiveSpec.
func (f *Factory) For(gvr schema.GroupVersionResource) *Informer {
	var transform func(runtime.Object) runtime.Object
	if gvr == podsGVR {
		transform = SlimPod
	}
	return f.get(factoryKey{gvr: gvr}, transform)
}

// Metadata returns the shared metadata-only informer of gvr: its objects
// are *metav1.PartialObjectMetadata carrying identity, ownership and
// deletion state only (see MetadataOnly), a fraction of the memory of typed
// objects. Used by controllers that act on every kind (garbage collector).
func (f *Factory) Metadata(gvr schema.GroupVersionResource) *Informer {
	return f.get(factoryKey{gvr: gvr, metadata: true}, MetadataOnly)
}

func (f *Factory) get(key factoryKey, transform func(runtime.Object) runtime.Object) *Informer {
	f.mu.Lock()
	defer f.mu.Unlock()
	if inf, ok := f.informers[key]; ok {
		return inf
	}
	inf := New(f.lw, key.gvr, Options{Transform: transform, Logger: f.log})
	f.informers[key] = inf
	if f.ctx != nil && !f.stopped {
		f.startLocked(inf)
	}
	return inf
}

func (f *Factory) startLocked(inf *Informer) {
	ctx := f.ctx
	f.wg.Go(func() { _ = inf.Run(ctx) })
}

// Run starts every informer asked for, and those asked for later, then
// blocks until ctx ends and they have all stopped. Call it once.
func (f *Factory) Run(ctx context.Context) error {
	f.mu.Lock()
	f.ctx = ctx
	for _, inf := range f.informers {
		f.startLocked(inf)
	}
	f.mu.Unlock()

	<-ctx.Done()
	f.mu.Lock()
	f.stopped = true
	f.mu.Unlock()
	f.wg.Wait()
	return nil
}

// MetadataOnly reduces an object to a PartialObjectMetadata holding its
// type, name, namespace, uid, resourceVersion, owner references, finalizers
// and deletion timestamp: what ownership and deletion logic needs. Labels,
// annotations, spec and status are dropped.
func MetadataOnly(obj runtime.Object) runtime.Object {
	if p, ok := obj.(*metav1.PartialObjectMetadata); ok {
		return p
	}
	m, err := meta.Accessor(obj)
	if err != nil {
		return obj
	}
	p := &metav1.PartialObjectMetadata{
		ObjectMeta: metav1.ObjectMeta{
			Name:                       m.GetName(),
			Namespace:                  m.GetNamespace(),
			UID:                        m.GetUID(),
			ResourceVersion:            m.GetResourceVersion(),
			OwnerReferences:            m.GetOwnerReferences(),
			Finalizers:                 m.GetFinalizers(),
			DeletionTimestamp:          m.GetDeletionTimestamp(),
			DeletionGracePeriodSeconds: m.GetDeletionGracePeriodSeconds(),
		},
	}
	p.SetGroupVersionKind(obj.GetObjectKind().GroupVersionKind())
	return p
}
