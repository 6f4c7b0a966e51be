package informer

import (
	"slices"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
)

// IndexFunc returns the values under which an index files obj (none to
// leave it out), as client-go's cache.IndexFunc.
type IndexFunc func(obj runtime.Object) []string

// index maps each value of an IndexFunc to the objects filed under it, by
// key (the objects themselves, so that reading an index costs no lookup
// of each key in the cache). It is guarded by the informer's mu.
type index struct {
	fn     IndexFunc
	values map[string]map[string]runtime.Object
}

// update refiles key from old's values to cur's (either may be nil).
func (x *index) update(key string, old, cur runtime.Object) {
	var before, after []string
	if old != nil {
		before = x.fn(old)
	}
	if cur != nil {
		after = x.fn(cur)
	}
	if !slices.Equal(before, after) {
		for _, v := range before {
			if objs := x.values[v]; objs != nil {
				delete(objs, key)
				if len(objs) == 0 {
					delete(x.values, v)
				}
			}
		}
	}
	for _, v := range after {
		objs := x.values[v]
		if objs == nil {
			objs = map[string]runtime.Object{}
			x.values[v] = objs
		}
		objs[key] = cur
	}
}

// AddIndex adds the index name, computed by fn, and files the objects
// already cached. Adding a name again keeps the first index, so every
// controller sharing an informer may add the one it needs (as client-go's
// AddPodControllerUIDIndexer does). fn must depend only on the object.
func (i *Informer) AddIndex(name string, fn IndexFunc) {
	i.mu.Lock()
	defer i.mu.Unlock()
	if _, ok := i.indexes[name]; ok {
		return
	}
	idx := &index{fn: fn, values: map[string]map[string]runtime.Object{}}
	for key, obj := range i.items {
		idx.update(key, nil, obj)
	}
	i.indexes[name] = idx
}

// ByIndex returns the cached objects that index name files under value, in
// no particular order; nil for an index never added. Do not modify them.
func (i *Informer) ByIndex(name, value string) []runtime.Object {
	i.mu.RLock()
	defer i.mu.RUnlock()
	idx := i.indexes[name]
	if idx == nil {
		return nil
	}
	objs := idx.values[value]
	out := make([]runtime.Object, 0, len(objs))
	for _, obj := range objs {
		out = append(out, obj)
	}
	return out
}

// ControllerIndex is the name of the index ByController builds: objects
// by the UID of their controller, orphans by OrphanIndexValue of their
// namespace (client-go's PodControllerUIDIndex).
const ControllerIndex = "controllerUID"

// OrphanIndexValue is the ControllerIndex value of the objects in
// namespace that have no controller.
func OrphanIndexValue(namespace string) string { return "_ORPHAN/" + namespace }

// ByController is ControllerIndex's IndexFunc. It lets a controller
// read the objects it owns and the orphans it may adopt without walking
// every object of the namespace on each sync: with 30 Deployments of 1,000
// pods in one namespace, that walk was most of the ReplicaSet
// controller's CPU.
func ByController(obj runtime.Object) []string {
	m, ok := obj.(metav1.Object)
	if !ok {
		return nil
	}
	if ref := metav1.GetControllerOfNoCopy(m); ref != nil {
		return []string{string(ref.UID)}
	}
	return []string{OrphanIndexValue(m.GetNamespace())}
}
