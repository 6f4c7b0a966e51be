// Package keyed holds the latest API object of each namespace/name of one
// kind, the way the node's networking components (the agent's view, the
// service proxy, the DNS server) keep what their watches deliver.
//
// It is a plain data structure: no locking (its owner serialises access)
// and no API access.
package keyed

import "k8s.io/apimachinery/pkg/types"

// Object is what a Map keys on; every API object pointer (*v1.Service,
// *discoveryv1.EndpointSlice, ...) is one.
type Object interface {
	GetNamespace() string
	GetName() string
}

// Map holds objects by namespace/name, and whether a full list has filled
// it yet (until then it may hold a partial picture). The zero value is
// empty and not listed.
type Map[T Object] struct {
	byName map[types.NamespacedName]T
	listed bool
}

func nameOf(o Object) types.NamespacedName {
	return types.NamespacedName{Namespace: o.GetNamespace(), Name: o.GetName()}
}

// Replace sets the complete content, e.g. from a list, and marks the map
// listed.
func (m *Map[T]) Replace(items []T) {
	m.byName = make(map[types.NamespacedName]T, len(items))
	for _, o := range items {
		m.byName[nameOf(o)] = o
	}
	m.listed = true
}

// Update records an added or changed object.
func (m *Map[T]) Update(o T) {
	if m.byName == nil {
		m.byName = map[types.NamespacedName]T{}
	}
	m.byName[nameOf(o)] = o
}

// Delete forgets the object with this namespace and name.
func (m *Map[T]) Delete(namespace, name string) {
	delete(m.byName, types.NamespacedName{Namespace: namespace, Name: name})
}

// Listed reports whether Replace has been called.
func (m *Map[T]) Listed() bool { return m.listed }

// Len is the number of objects.
func (m *Map[T]) Len() int { return len(m.byName) }

// Values returns the objects in no particular order, in a new slice with
// room for extra more.
func (m *Map[T]) Values(extra int) []T {
	out := make([]T, 0, len(m.byName)+extra)
	for _, o := range m.byName {
		out = append(out, o)
	}
	return out
}

// Get returns the object with this namespace and name.
func (m *Map[T]) Get(namespace, name string) (T, bool) {
	o, ok := m.byName[types.NamespacedName{Namespace: namespace, Name: name}]
	return o, ok
}
