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

// pending reports whether the cache may still show uid's finalizer
// although it was removed (the pod is already counted).
func (e *finalizerExpectations) pending(key string, uid types.UID) bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	_, ok := e.jobs[key][uid]
	return ok
}

// forget drops a job's expectations (the job is gone).
func (e *finalizerExpectations) forget(key string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	delete(e.jobs, key)
}
