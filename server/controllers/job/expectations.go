package job

import (
	"sync"

	"k8s.io/apimachinery/pkg/types"
)

// The job's pod creates (by name) and deletes (by UID) are tracked in the
// shared expectations.Expectations, as the ReplicaSet and DaemonSet
// controllers track theirs. What only the Job controller has is tracked
// here: the pods whose tracking finalizer it removed (Kubernetes' job
// controller keeps these finalizerExpectations beside its
// ControllerExpectations, for the same reason).

// finalizerExpectations remembers, per job key, the pods whose tracking
// finalizer was removed while the pod cache may still show it, so that a
// reconcile on a stale cache does not count a finished pod twice. Unlike
// pod creates and deletes these have no timeout: each entry is dropped
// when the cache shows the pod without the finalizer or gone.
type finalizerExpectations struct {
	mu   sync.Mutex
	jobs map[string]map[types.UID]struct{}
}

func newFinalizerExpectations() *finalizerExpectations {
	return &finalizerExpectations{jobs: map[string]map[types.UID]struct{}{}}
}

// expect records that uid's finalizer is being removed.
func (e *finalizerExpectations) expect(key string, uid types.UID) {
	e.mu.Lock()
	defer e.mu.Unlock()
	uids := e.jobs[key]
	if uids == nil {
		uids = map[types.UID]struct{}{}
		e.jobs[key] = uids
	}
	uids[uid] = struct{}{}
}

// observe is called when the cache shows a pod without the tracking
// finalizer, or gone.
func (e *finalizerExpectations) observe(key string, uid types.UID) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if uids := e.jobs[key]; uids != nil {
		delete(uids, uid)
		if len(uids) == 0 {
			delete(e.jobs, key)
		}
	}
}

// removed returns (a copy of) the pods of a job whose finalizer removal
// the cache may not show yet: they are already counted. A reconcile takes
// it before it reads the pods from the cache, so that a pod shown with its
// finalizer is either in the set or newer than it, never older: taken
// after, the set could miss a pod the cache had just caught up on while
// the reconcile still holds the pod as it was before.
func (e *finalizerExpectations) removed(key string) map[types.UID]struct{} {
	e.mu.Lock()
	defer e.mu.Unlock()
	out := make(map[types.UID]struct{}, len(e.jobs[key]))
	for uid := range e.jobs[key] {
		out[uid] = struct{}{}
	}
	return out
}

// forget drops a job's expectations (the job is gone).
func (e *finalizerExpectations) forget(key string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	delete(e.jobs, key)
}
