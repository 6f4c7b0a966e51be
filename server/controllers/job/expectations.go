package job

import (
	"sync"
	"time"

	"k8s.io/apimachinery/pkg/types"
)

// expectationTimeout bounds how long a job waits for the informer to show
// its own writes; past it the cache is trusted again (a lost watch event
// must not wedge the job).
const expectationTimeout = 5 * time.Minute

// expectations track the controller's writes to pods that the pod cache
// has not shown yet, per job key, so that a reconcile on a stale cache
// neither creates pods twice nor counts a finished pod twice (Kubernetes'
// ControllerExpectations and the job controller's finalizer expectations).
type expectations struct {
	now func() time.Time

	mu   sync.Mutex
	jobs map[string]*jobExpectations
}

type jobExpectations struct {
	// creates holds the names of pods created but not yet seen.
	creates map[string]struct{}
	// deletes holds the uids of pods deleted but not yet seen terminating.
	deletes map[types.UID]struct{}
	// finalizers holds the uids of pods whose tracking finalizer was
	// removed but which the cache still shows with it.
	finalizers map[types.UID]struct{}
	// since is when the oldest pending create/delete was recorded.
	since time.Time
}

func newExpectations(now func() time.Time) *expectations {
	return &expectations{now: now, jobs: map[string]*jobExpectations{}}
}

func (e *expectations) get(key string) *jobExpectations {
	je := e.jobs[key]
	if je == nil {
		je = &jobExpectations{
			creates:    map[string]struct{}{},
			deletes:    map[types.UID]struct{}{},
			finalizers: map[types.UID]struct{}{},
		}
		e.jobs[key] = je
	}
	return je
}

func (e *expectations) expectCreate(key, name string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	je := e.get(key)
	if len(je.creates) == 0 && len(je.deletes) == 0 {
		je.since = e.now()
	}
	je.creates[name] = struct{}{}
}

func (e *expectations) expectDelete(key string, uid types.UID) {
	e.mu.Lock()
	defer e.mu.Unlock()
	je := e.get(key)
	if len(je.creates) == 0 && len(je.deletes) == 0 {
		je.since = e.now()
	}
	je.deletes[uid] = struct{}{}
}

func (e *expectations) expectFinalizerRemoved(key string, uid types.UID) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.get(key).finalizers[uid] = struct{}{}
}

// observeCreate is called when the cache shows a pod (or a create failed).
func (e *expectations) observeCreate(key, name string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if je := e.jobs[key]; je != nil {
		delete(je.creates, name)
	}
}

// observeDelete is called when the cache shows a pod terminating or gone
// (or a delete failed).
func (e *expectations) observeDelete(key string, uid types.UID) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if je := e.jobs[key]; je != nil {
		delete(je.deletes, uid)
	}
}

// observeFinalizerRemoved is called when the cache shows a pod without
// the tracking finalizer, or gone.
func (e *expectations) observeFinalizerRemoved(key string, uid types.UID) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if je := e.jobs[key]; je != nil {
		delete(je.finalizers, uid)
	}
}

// satisfied reports whether the cache shows every pod create and delete
// of the job (or they are too old to wait for).
func (e *expectations) satisfied(key string) bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	je := e.jobs[key]
	if je == nil || (len(je.creates) == 0 && len(je.deletes) == 0) {
		return true
	}
	return e.now().Sub(je.since) > expectationTimeout
}

// finalizerPending reports whether the cache may still show uid's
// finalizer although it was removed (the pod is already counted).
func (e *expectations) finalizerPending(key string, uid types.UID) bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	je := e.jobs[key]
	if je == nil {
		return false
	}
	_, ok := je.finalizers[uid]
	return ok
}

// forget drops a job's expectations (the job is gone).
func (e *expectations) forget(key string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	delete(e.jobs, key)
}
