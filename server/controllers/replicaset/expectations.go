package replicaset

import (
	"sync"
	"time"
)

// expectationsTimeout bounds how long a ReplicaSet waits for its own
// writes to show in the pod cache (Kubernetes' ExpectationsTimeout).
const expectationsTimeout = 5 * time.Minute

// expectations remember, per ReplicaSet, how many of the pods it created
// the informer has not delivered yet, and which pods it deleted whose
// deletion it has not seen. Until they arrive the cache is behind the
// controller's own writes, and acting on it would create or delete twice.
// Creations are counted (any new pod the ReplicaSet controls satisfies
// one), deletions are tracked by pod key, as Kubernetes'
// UIDTrackingControllerExpectations.
type expectations struct {
	mu      sync.Mutex
	pending map[string]*pendingWrites
}

type pendingWrites struct {
	creates int
	deletes map[string]struct{}
	since   time.Time
}

func newExpectations() *expectations {
	return &expectations{pending: map[string]*pendingWrites{}}
}

// expectCreates records n creates about to be sent for key; it replaces
// what was expected before (called only once the earlier ones are met).
func (e *expectations) expectCreates(key string, n int, now time.Time) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.pending[key] = &pendingWrites{creates: n, deletes: map[string]struct{}{}, since: now}
}

// expectDeletes records the pods about to be deleted for key.
func (e *expectations) expectDeletes(key string, pods []string, now time.Time) {
	e.mu.Lock()
	defer e.mu.Unlock()
	p := &pendingWrites{deletes: make(map[string]struct{}, len(pods)), since: now}
	for _, pod := range pods {
		p.deletes[pod] = struct{}{}
	}
	e.pending[key] = p
}

// observeCreate records one create seen by the informer, or one that
// failed and will never be seen.
func (e *expectations) observeCreate(key string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if p := e.pending[key]; p != nil && p.creates > 0 {
		p.creates--
	}
}

// observeDelete records the deletion of pod (informer event, or a delete
// that failed).
func (e *expectations) observeDelete(key, pod string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if p := e.pending[key]; p != nil {
		delete(p.deletes, pod)
	}
}

// satisfied reports whether the cache has caught up with key's writes,
// or they are so old that they must have been lost.
func (e *expectations) satisfied(key string, now time.Time) bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	p := e.pending[key]
	if p == nil {
		return true
	}
	if p.creates <= 0 && len(p.deletes) == 0 || now.Sub(p.since) > expectationsTimeout {
		delete(e.pending, key)
		return true
	}
	return false
}

// forget drops key's expectations (its ReplicaSet is gone).
func (e *expectations) forget(key string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	delete(e.pending, key)
}
