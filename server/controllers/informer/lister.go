package informer

import (
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
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
	objs := l.inf.List(namespace, sel)
	out := make([]T, 0, len(objs))
	for _, obj := range objs {
		if t, ok := obj.(T); ok {
			out = append(out, t)
		}
	}
	return out
}
