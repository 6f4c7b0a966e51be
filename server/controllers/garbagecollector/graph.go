package garbagecollector

import (
	"slices"
	"sync"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
)

// objectRef identifies an observed object and where to read it.
type objectRef struct {
	gvr       schema.GroupVersionResource
	namespace string
	name      string
	uid       types.UID
}

// node is what the graph knows of one observed object.
type node struct {
	ref    objectRef
	owners []metav1.OwnerReference
	// deleting: deletionTimestamp is set.
	deleting bool
	// deletingDependents: deleting with the foregroundDeletion finalizer;
	// the object waits for its blocking dependents to go.
	deletingDependents bool
	// orphaning: deleting with the orphan finalizer; the object waits for
	// its dependents to be released.
	orphaning bool
}

func newNode(gvr schema.GroupVersionResource, obj runtime.Object) (*node, error) {
	m, err := meta.Accessor(obj)
	if err != nil {
		return nil, err
	}
	deleting := m.GetDeletionTimestamp() != nil
	finalizers := m.GetFinalizers()
	return &node{
		ref:                objectRef{gvr: gvr, namespace: m.GetNamespace(), name: m.GetName(), uid: m.GetUID()},
		owners:             m.GetOwnerReferences(),
		deleting:           deleting,
		deletingDependents: deleting && slices.Contains(finalizers, metav1.FinalizerDeleteDependents),
		orphaning:          deleting && slices.Contains(finalizers, metav1.FinalizerOrphanDependents),
	}, nil
}

// ownerRef returns n's reference to owner, if any.
func (n *node) ownerRef(owner types.UID) (metav1.OwnerReference, bool) {
	for _, o := range n.owners {
		if o.UID == owner {
			return o, true
		}
	}
	return metav1.OwnerReference{}, false
}

// graph is the ownership graph of every observed object: nodes by uid and
// the reverse edges (owner uid → dependent uids). An owner need not be
// observed (it may be gone, or not yet seen): its edges live as long as
// some dependent refers to it.
type graph struct {
	mu         sync.RWMutex
	nodes      map[types.UID]*node
	dependents map[types.UID]map[types.UID]struct{}
}

func newGraph() *graph {
	return &graph{nodes: map[types.UID]*node{}, dependents: map[types.UID]map[types.UID]struct{}{}}
}

// upsert records n and returns the node it replaced (nil if new).
func (g *graph) upsert(n *node) *node {
	g.mu.Lock()
	defer g.mu.Unlock()
	old := g.nodes[n.ref.uid]
	g.nodes[n.ref.uid] = n
	if old != nil {
		g.unlinkLocked(old)
	}
	for _, o := range n.owners {
		deps := g.dependents[o.UID]
		if deps == nil {
			deps = map[types.UID]struct{}{}
			g.dependents[o.UID] = deps
		}
		deps[n.ref.uid] = struct{}{}
	}
	return old
}

// remove forgets the node uid and returns it (nil if unknown).
func (g *graph) remove(uid types.UID) *node {
	g.mu.Lock()
	defer g.mu.Unlock()
	n := g.nodes[uid]
	if n == nil {
		return nil
	}
	delete(g.nodes, uid)
	g.unlinkLocked(n)
	return n
}

func (g *graph) unlinkLocked(n *node) {
	for _, o := range n.owners {
		if deps := g.dependents[o.UID]; deps != nil {
			delete(deps, n.ref.uid)
			if len(deps) == 0 {
				delete(g.dependents, o.UID)
			}
		}
	}
}

// get returns the node uid; nodes are never modified once in the graph.
func (g *graph) get(uid types.UID) *node {
	g.mu.RLock()
	defer g.mu.RUnlock()
	return g.nodes[uid]
}

// dependentsOf returns the observed dependents of owner.
func (g *graph) dependentsOf(owner types.UID) []*node {
	g.mu.RLock()
	defer g.mu.RUnlock()
	deps := g.dependents[owner]
	out := make([]*node, 0, len(deps))
	for uid := range deps {
		if n := g.nodes[uid]; n != nil {
			out = append(out, n)
		}
	}
	return out
}

// hasDependents reports whether some observed object refers to owner.
func (g *graph) hasDependents(owner types.UID) bool {
	g.mu.RLock()
	defer g.mu.RUnlock()
	return len(g.dependents[owner]) > 0
}
