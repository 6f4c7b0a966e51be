package daemonset

import (
	"sync"
	"time"
)

// expectationsTimeout bounds how long a DaemonSet waits for its own writes
// to show in the pod cache (Kubernetes' ExpectationsTimeout).
const expectationsTimeout = 5 * time.Minute

// expectations remember, per DaemonSet, the pods it created or deleted
// whose event the informer has not delivered yet. Until they arrive the
// cache is behind the controller's own writes, and acting on it would
// create a second pod on a node or delete one twice. Pods are tracked by
// name, which the controller chooses before it creates them.
type expectations struct {
	mu      sync.Mutex
	pending map[string]*pendingWrites
}

type pendingWrites struct {
	creates, deletes map[string]struct{}
	since            time.Time
}

func newExpectations() *expectations {
	return &expectations{pending: map[string]*pendingWrites{}}
}

func (e *expectations) get(key string, now time.Time) *pendingWrites {
	p := e.pending[key]
	if p == nil {
		p = &pendingWrites{creates: map[string]struct{}{}, deletes: map[string]struct{}{}, since: now}
		e.pending[key] = p
	}
	return p
}

// expectCreate is called before pod is created; the create event clears it.
func (e *expectations) expectCreate(key, pod string, now time.Time) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.get(key, now).creates[pod] = struct{}{}
}

// expectDelete is called before pod is deleted; a deletion timestamp or
// the delete event clears it.
func (e *expectations) expectDelete(key, pod string, now time.Time) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.get(key, now).deletes[pod] = struct{}{}
}

// observeCreate and observeDelete record the informer's events; they also
// undo an expectation whose write failed.
func (e *expectations) observeCreate(key, pod string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if p := e.pending[key]; p != nil {
		delete(p.creates, pod)
	}
}

func (e *expectations) observeDelete(key, pod string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if p := e.pending[key]; p != nil {
		delete(p.deletes, pod)
	}
}

// satisfied reports whether the cache has caught up with key's writes (or
// waited long enough that they must be lost).
func (e *expectations) satisfied(key string, now time.Time) bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	p := e.pending[key]
	if p == nil {
		return true
	}
	if len(p.creates) == 0 && len(p.deletes) == 0 || now.Sub(p.since) > expectationsTimeout {
		delete(e.pending, key)
		return true
	}
	return false
}

// forget drops key's expectations (its DaemonSet is gone).
func (e *expectations) forget(key string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	delete(e.pending, key)
}
