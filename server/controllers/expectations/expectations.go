// Package expectations remembers, per controller key, the pod writes a
// controller made whose informer events have not arrived yet (Kubernetes'
// ControllerExpectations and UIDTrackingControllerExpectations). Until
// they arrive the cache is behind the controller's own writes, and acting
// on it would create or delete twice.
//
// Creations are either counted (ExpectCreates: any new pod the controller
// owns satisfies one, as for a ReplicaSet whose pods get generated names)
// or tracked by name (ExpectCreate: the controller chose the name, as a
// DaemonSet does); deletions are tracked by name or key. Expectations older
// than the timeout are given up: a lost event must not wedge a controller.
package expectations

import (
	"sync"
	"time"
)

// DefaultTimeout is Kubernetes' ExpectationsTimeout.
const DefaultTimeout = 5 * time.Minute

// Expectations is safe for concurrent use. Build it with New.
type Expectations struct {
	timeout time.Duration

	mu      sync.Mutex
	pending map[string]*writes
}

type writes struct {
	creates     int                 // counted creates not seen yet
	createNames map[string]struct{} // named creates not seen yet
	deletes     map[string]struct{}
	since       time.Time
}

// New returns empty expectations given up after timeout.
func New(timeout time.Duration) *Expectations {
	return &Expectations{timeout: timeout, pending: map[string]*writes{}}
}

func (e *Expectations) get(key string, now time.Time) *writes {
	w := e.pending[key]
	if w == nil {
		w = &writes{createNames: map[string]struct{}{}, deletes: map[string]struct{}{}, since: now}
		e.pending[key] = w
	}
	return w
}

// ExpectCreates records n creates about to be sent for key; it replaces
// what was expected before (call it only once the earlier ones are met).
func (e *Expectations) ExpectCreates(key string, n int, now time.Time) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.pending[key] = &writes{creates: n, createNames: map[string]struct{}{}, deletes: map[string]struct{}{}, since: now}
}

// ExpectDeletes records the pods about to be deleted for key; it replaces
// what was expected before.
func (e *Expectations) ExpectDeletes(key string, pods []string, now time.Time) {
	e.mu.Lock()
	defer e.mu.Unlock()
	w := &writes{createNames: map[string]struct{}{}, deletes: make(map[string]struct{}, len(pods)), since: now}
	for _, pod := range pods {
		w.deletes[pod] = struct{}{}
	}
	e.pending[key] = w
}

// ExpectCreate adds the create of pod, by name, to key's expectations.
func (e *Expectations) ExpectCreate(key, pod string, now time.Time) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.get(key, now).createNames[pod] = struct{}{}
}

// ExpectDelete adds the delete of pod to key's expectations.
func (e *Expectations) ExpectDelete(key, pod string, now time.Time) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.get(key, now).deletes[pod] = struct{}{}
}

// ObserveCreate records a create seen by the informer, or one that failed
// and will never be seen: pod's named expectation if there is one, else
// one counted create.
func (e *Expectations) ObserveCreate(key, pod string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	w := e.pending[key]
	if w == nil {
		return
	}
	if _, ok := w.createNames[pod]; ok {
		delete(w.createNames, pod)
	} else if w.creates > 0 {
		w.creates--
	}
}

// ObserveDelete records the deletion of pod (informer event, or a delete
// that failed).
func (e *Expectations) ObserveDelete(key, pod string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if w := e.pending[key]; w != nil {
		delete(w.deletes, pod)
	}
}

// Satisfied reports whether the cache has caught up with key's writes, or
// they are so old that they must have been lost; either way the
// expectations are dropped.
func (e *Expectations) Satisfied(key string, now time.Time) bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	w := e.pending[key]
	if w == nil {
		return true
	}
	if w.creates <= 0 && len(w.createNames) == 0 && len(w.deletes) == 0 || now.Sub(w.since) > e.timeout {
		delete(e.pending, key)
		return true
	}
	return false
}

// Forget drops key's expectations (its owner is gone).
func (e *Expectations) Forget(key string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	delete(e.pending, key)
}
