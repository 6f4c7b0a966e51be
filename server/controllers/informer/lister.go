package informer

import (
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
)

// Lister reads an Informer's cache as typed objects, e.g.
// Lister[*corev1.Pod]. Objects of another type (an informer with a
// Transform) are skipped. Do not modify the returned objects.
type Lister[T runtime.Object] struct{ inf *Informer }

// NewLister returns a typed view of inf.
func NewLister[T runtime.Object](inf *Informer) Lister[T] { return Lister[T]{inf: inf} }

// Get returns the object namespace/name.
func (l Lister[T]) Get(namespace, name string) (T, bool) {
	obj, ok := l.inf.GetByName(namespace, name)
	if !ok {
		var zero T
		return zero, false
	}
	t, ok := obj.(T)
	return t, ok
}

// List returns the objects in namespace ("" = all) matching sel (nil =
// everything).
func (l Lister[T]) List(namespace string, sel labels.Selector) []T {
	return typed[T](l.inf.List(namespace, sel))
}

// ByIndex returns the objects that the informer's index name files under
// value (see Informer.ByIndex).
func (l Lister[T]) ByIndex(name, value string) []T {
	return typed[T](l.inf.ByIndex(name, value))
}

// Controlled returns the objects whose controller has UID owner and the
// orphans in namespace: the candidates of a controller's claim, as
// upstream's FilterPodsByOwner with orphans included. The informer needs
// ControllerIndex (Informer.AddIndex(ControllerIndex, ByController)).
func (l Lister[T]) Controlled(namespace string, owner types.UID) []T {
	return append(l.ByIndex(ControllerIndex, OrphanIndexValue(namespace)), l.OwnedBy(namespace, owner)...)
}

// OwnedBy returns the objects in namespace whose controller has UID
// owner (the informer needs ControllerIndex, as for Controlled).
func (l Lister[T]) OwnedBy(namespace string, owner types.UID) []T {
	var out []T
	for _, obj := range l.ByIndex(ControllerIndex, string(owner)) {
		// Owner references never cross namespaces; a stray one that
		// names a UID of another namespace is not the owner's.
		if m, err := meta.Accessor(obj); err == nil && m.GetNamespace() == namespace {
			out = append(out, obj)
		}
	}
	return out
}

func typed[T runtime.Object](objs []runtime.Object) []T {
	out := make([]T, 0, len(objs))
	for _, obj := range objs {
		if t, ok := obj.(T); ok {
			out = append(out, t)
		}
	}
	return out
}
