package scheduler

import (
	"container/heap"
	"sync"
	"time"
)

// Where a pod waits in the scheduling queue.
type queueState int

const (
	stateActive        queueState = iota // ready, in the heap
	stateBackoff                         // waiting out its back-off, then active
	stateUnschedulable                   // waiting for a cluster change
	stateInFlight                        // handed to the scheduling loop
)

// queuedPod is one pending pod known to the queue.
type queuedPod struct {
	key      string
	priority int32
	seq      uint64 // FIFO order among equal priorities
	attempts int
	state    queueState
	index    int // heap index while active
	gen      uint64
	timer    *time.Timer
	// lastFailure starts the back-off.
	lastFailure time.Time
	// updated: the pod changed while it was in flight, so a failure of
	// that attempt must not park it as unschedulable.
	updated bool
	// hasPodAffinity: placed pods matter to it (required pod affinity).
	hasPodAffinity bool
}

// schedulingQueue orders pending pods as kube-scheduler's queue does: an
// active heap by priority then arrival, a back-off stage after each failed
// attempt (1 s doubling to 10 s), and an unschedulable pool that cluster
// changes (a node added, a pod gone) move back, or that is flushed after
// maxUnschedulable anyway.
//
// It owns no goroutine: back-offs are timers.
type schedulingQueue struct {
	now              func() time.Time
	initialBackoff   time.Duration
	maxBackoff       time.Duration
	maxUnschedulable time.Duration

	mu      sync.Mutex
	cond    *sync.Cond
	active  podHeap
	entries map[string]*queuedPod
	seq     uint64
	// cycle counts Pops; moveCycle is the cycle of the last move request
	// (affinityMoveCycle of the last one for pods with pod affinity): a pod
	// popped before it failed against an older cluster state.
	cycle, moveCycle, affinityMoveCycle uint64
	// parked counts the pods in stateUnschedulable, so that the frequent
	// move requests cost nothing when there are none.
	parked int
	closed bool
}

func newSchedulingQueue(now func() time.Time, initial, maxBackoff, maxUnschedulable time.Duration) *schedulingQueue {
	q := &schedulingQueue{
		now:              now,
		initialBackoff:   initial,
		maxBackoff:       maxBackoff,
		maxUnschedulable: maxUnschedulable,
		entries:          map[string]*queuedPod{},
	}
	q.cond = sync.NewCond(&q.mu)
	return q
}

// Add queues a pending pod. When the pod is already queued and changed (its
// spec or labels, not merely its status), a pod parked as unschedulable is
// retried after its back-off.
func (q *schedulingQueue) Add(key string, priority int32, hasPodAffinity, changed bool) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.closed {
		return
	}
	e := q.entries[key]
	if e == nil {
		q.seq++
		e = &queuedPod{key: key, priority: priority, seq: q.seq, hasPodAffinity: hasPodAffinity}
		q.entries[key] = e
		q.pushLocked(e)
		return
	}
	if !changed {
		return
	}
	e.priority, e.hasPodAffinity = priority, hasPodAffinity
	switch e.state {
	case stateInFlight:
		e.updated = true
	case stateUnschedulable:
		q.backoffOrActivateLocked(e)
	case stateActive:
		heap.Fix(&q.active, e.index)
	}
}

// Delete forgets a pod (deleted, bound, or no longer ours).
func (q *schedulingQueue) Delete(key string) {
	q.mu.Lock()
	defer q.mu.Unlock()
	e := q.entries[key]
	if e == nil {
		return
	}
	q.stopTimerLocked(e)
	if e.state == stateActive {
		heap.Remove(&q.active, e.index)
	}
	q.setStateLocked(e, stateInFlight)
	delete(q.entries, key)
}

// Pop blocks until a pod is active and hands it out, with the cycle it is
// scheduled in; ok is false once the queue is closed.
func (q *schedulingQueue) Pop() (key string, cycle uint64, ok bool) {
	q.mu.Lock()
	defer q.mu.Unlock()
	for len(q.active) == 0 && !q.closed {
		q.cond.Wait()
	}
	if q.closed {
		return "", 0, false
	}
	e := heap.Pop(&q.active).(*queuedPod)
	q.setStateLocked(e, stateInFlight)
	e.updated = false
	q.cycle++
	return e.key, q.cycle, true
}

// Done forgets a pod that was scheduled (or needs no scheduling).
func (q *schedulingQueue) Done(key string) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if e := q.entries[key]; e != nil && e.state == stateInFlight {
		delete(q.entries, key)
	}
}

// Unschedulable parks a pod no node fits. If the cluster changed since it
// was popped (or the pod did), it is retried after its back-off instead.
func (q *schedulingQueue) Unschedulable(key string, cycle uint64) {
	q.mu.Lock()
	defer q.mu.Unlock()
	e := q.entries[key]
	if e == nil || e.state != stateInFlight {
		return
	}
	e.attempts++
	e.lastFailure = q.now()
	if e.updated || q.moveCycle >= cycle || (e.hasPodAffinity && q.affinityMoveCycle >= cycle) {
		q.backoffOrActivateLocked(e)
		return
	}
	q.setStateLocked(e, stateUnschedulable)
	e.gen++
	q.startTimerLocked(e, q.maxUnschedulable)
}

// Retry requeues a pod after an error (a failed binding or write), after
// its back-off.
func (q *schedulingQueue) Retry(key string) {
	q.mu.Lock()
	defer q.mu.Unlock()
	e := q.entries[key]
	if e == nil {
		// Done already forgot it (the binding failed after the cycle).
		if q.closed {
			return
		}
		q.seq++
		e = &queuedPod{key: key, seq: q.seq, state: stateInFlight}
		q.entries[key] = e
	}
	if e.state != stateInFlight {
		return
	}
	e.attempts++
	e.lastFailure = q.now()
	q.backoffOrActivateLocked(e)
}

// MoveAll retries the unschedulable pods after their back-offs: the
// cluster changed in a way that may let any of them fit (a node came or
// changed, a placed pod went).
func (q *schedulingQueue) MoveAll() {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.moveCycle = q.cycle
	q.moveLocked(false)
}

// MoveAffinity retries only the unschedulable pods with required pod
// affinity: a pod was placed, which may be the one they wait for, and
// which takes room from everyone else.
func (q *schedulingQueue) MoveAffinity() {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.affinityMoveCycle = q.cycle
	q.moveLocked(true)
}

func (q *schedulingQueue) moveLocked(affinityOnly bool) {
	if q.parked == 0 {
		return
	}
	for _, e := range q.entries {
		if e.state == stateUnschedulable && (!affinityOnly || e.hasPodAffinity) {
			q.backoffOrActivateLocked(e)
		}
	}
}

// Close wakes Pop and stops the timers.
func (q *schedulingQueue) Close() {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.closed = true
	for _, e := range q.entries {
		q.stopTimerLocked(e)
	}
	q.cond.Broadcast()
}

// Len is the number of pods the queue holds, in any state.
func (q *schedulingQueue) Len() int {
	q.mu.Lock()
	defer q.mu.Unlock()
	return len(q.entries)
}

func (q *schedulingQueue) backoffDuration(attempts int) time.Duration {
	d := q.initialBackoff
	for i := 1; i < attempts && d < q.maxBackoff; i++ {
		d *= 2
	}
	return min(d, q.maxBackoff)
}

func (q *schedulingQueue) backoffOrActivateLocked(e *queuedPod) {
	q.stopTimerLocked(e)
	if e.attempts == 0 {
		q.pushLocked(e)
		return
	}
	wait := e.lastFailure.Add(q.backoffDuration(e.attempts)).Sub(q.now())
	if wait <= 0 {
		q.pushLocked(e)
		return
	}
	q.setStateLocked(e, stateBackoff)
	e.gen++
	q.startTimerLocked(e, wait)
}

// startTimerLocked activates e after d unless its state changes meanwhile.
func (q *schedulingQueue) startTimerLocked(e *queuedPod, d time.Duration) {
	gen := e.gen
	e.timer = time.AfterFunc(d, func() {
		q.mu.Lock()
		defer q.mu.Unlock()
		if q.closed || q.entries[e.key] != e || e.gen != gen {
			return
		}
		if e.state == stateBackoff || e.state == stateUnschedulable {
			e.timer = nil
			q.pushLocked(e)
		}
	})
}

func (q *schedulingQueue) stopTimerLocked(e *queuedPod) {
	e.gen++
	if e.timer != nil {
		e.timer.Stop()
		e.timer = nil
	}
}

func (q *schedulingQueue) setStateLocked(e *queuedPod, st queueState) {
	if e.state == stateUnschedulable {
		q.parked--
	}
	if st == stateUnschedulable {
		q.parked++
	}
	e.state = st
}

func (q *schedulingQueue) pushLocked(e *queuedPod) {
	if e.state == stateActive && e.index >= 0 && e.index < len(q.active) && q.active[e.index] == e {
		return
	}
	q.setStateLocked(e, stateActive)
	heap.Push(&q.active, e)
	q.cond.Signal()
}

// podHeap orders active pods by priority (highest first), then arrival.
type podHeap []*queuedPod

func (h podHeap) Len() int { return len(h) }
func (h podHeap) Less(i, j int) bool {
	if h[i].priority != h[j].priority {
		return h[i].priority > h[j].priority
	}
	return h[i].seq < h[j].seq
}
func (h podHeap) Swap(i, j int) {
	h[i], h[j] = h[j], h[i]
	h[i].index = i
	h[j].index = j
}
func (h *podHeap) Push(x any) {
	e := x.(*queuedPod)
	e.index = len(*h)
	*h = append(*h, e)
}
func (h *podHeap) Pop() any {
	old := *h
	e := old[len(old)-1]
	old[len(old)-1] = nil
	e.index = -1
	*h = old[:len(old)-1]
	return e
}
