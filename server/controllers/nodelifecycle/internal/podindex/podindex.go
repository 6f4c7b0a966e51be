// Package podindex keeps the keys of the pods bound to each node, fed by a
// pod informer's handler, so that the node controllers find a node's pods
// without scanning every pod in the cluster (client-go's spec.nodeName
// indexer, which the upstream controllers use).
//
// It holds keys only; callers read the pods themselves from the informer.
package podindex

import (
	"sort"
	"sync"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/runtime"

	"github.com/orch-dev/orch/server/controllers/informer"
)

// Index maps node names to the keys ("namespace/name") of their pods. The
// zero value is not usable; build one with New.
type Index struct {
	mu     sync.RWMutex
	byNode map[string]map[string]struct{}
	nodeOf map[string]string // pod key -> node name
}

// New returns an empty index.
func New() *Index {
	return &Index{byNode: map[string]map[string]struct{}{}, nodeOf: map[string]string{}}
}

// Handler keeps the index in step with a pod informer; register it before
// the informer's own handlers that read the index.
func (x *Index) Handler() informer.Handler {
	return informer.HandlerFuncs{
		AddFunc:    x.set,
		UpdateFunc: func(_, obj runtime.Object) { x.set(obj) },
		DeleteFunc: x.remove,
	}
}

func (x *Index) set(obj runtime.Object) {
	pod, ok := obj.(*corev1.Pod)
	if !ok {
		return
	}
	key := informer.Key(pod.Namespace, pod.Name)
	x.mu.Lock()
	defer x.mu.Unlock()
	if old, ok := x.nodeOf[key]; ok && old != pod.Spec.NodeName {
		x.deleteLocked(key, old)
	}
	if pod.Spec.NodeName == "" {
		return
	}
	keys := x.byNode[pod.Spec.NodeName]
	if keys == nil {
		keys = map[string]struct{}{}
		x.byNode[pod.Spec.NodeName] = keys
	}
	keys[key] = struct{}{}
	x.nodeOf[key] = pod.Spec.NodeName
}

func (x *Index) remove(obj runtime.Object) {
	pod, ok := obj.(*corev1.Pod)
	if !ok {
		return
	}
	key := informer.Key(pod.Namespace, pod.Name)
	x.mu.Lock()
	defer x.mu.Unlock()
	if node, ok := x.nodeOf[key]; ok {
		x.deleteLocked(key, node)
	}
}

func (x *Index) deleteLocked(key, node string) {
	delete(x.nodeOf, key)
	if keys := x.byNode[node]; keys != nil {
		delete(keys, key)
		if len(keys) == 0 {
			delete(x.byNode, node)
		}
	}
}

// Keys returns the sorted keys of the pods bound to node.
func (x *Index) Keys(node string) []string {
	x.mu.RLock()
	defer x.mu.RUnlock()
	keys := make([]string, 0, len(x.byNode[node]))
	for k := range x.byNode[node] {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// Pods returns the pods bound to node as lister holds them now (pods the
// index knows but the lister no longer has are skipped). Do not modify them.
func (x *Index) Pods(node string, lister informer.Lister[*corev1.Pod]) []*corev1.Pod {
	var pods []*corev1.Pod
	for _, key := range x.Keys(node) {
		ns, name := informer.SplitKey(key)
		if pod, ok := lister.Get(ns, name); ok && pod.Spec.NodeName == node {
			pods = append(pods, pod)
		}
	}
	return pods
}
