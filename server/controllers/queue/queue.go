// Package queue is the work queue of the controllers: string keys (usually
// "namespace/name", or a uid) waiting to be reconciled.
//
// It has the semantics of client-go's workqueue, which every controller
// author knows:
//   - a key is queued at most once however often it is added (dirty set);
//   - a key handed to a worker by Get is not handed to a second worker until
//     the first calls Done; an Add meanwhile is remembered and the key is
//     queued again at Done (processing set);
//   - AddAfter delays an add; AddRateLimited delays it by the key's
//     exponential back-off, which Forget resets;
//   - ShutDown stops accepting keys; Get still hands out the keys already
//     queued and then reports shutdown, so workers drain the queue.
//
// The package owns no goroutine: delayed adds are timers, and RunWorkers'
// goroutines are owned (and waited for) by its caller.
package queue

import (
	"sync"
	"time"
)

// Queue is a work queue of string keys. The zero value is not usable; build
// one with New.
type Queue struct {
	limiter RateLimiter

	mu   sync.Mutex
	cond *sync.Cond
	// queue is the FIFO of keys ready to be handed out; head indexes its
	// first element so that Get does not copy the slice.
	queue []string
	head  int
	// dirty holds keys that need processing (queued, or added again while
	// being processed).
	dirty map[string]struct{}
	// processing holds keys handed out by Get and not yet Done.
	processing map[string]struct{}
	// waiting holds the timers of delayed adds, one per key (the earliest).
	waiting      map[string]*delayed
	shuttingDown bool
	// drained is broadcast when processing becomes empty during shutdown.
	drained *sync.Cond
}

type delayed struct {
	timer *time.Timer
	at    time.Time
}

// New returns an empty queue whose AddRateLimited uses limiter (nil means
// DefaultRateLimiter()).
func New(limiter RateLimiter) *Queue {
	if limiter == nil {
		limiter = DefaultRateLimiter()
	}
	q := &Queue{
		limiter:    limiter,
		dirty:      map[string]struct{}{},
		processing: map[string]struct{}{},
		waiting:    map[string]*delayed{},
	}
	q.cond = sync.NewCond(&q.mu)
	q.drained = sync.NewCond(&q.mu)
	return q
}

// Add queues key unless it is already queued. A key being processed is
// queued again when its worker calls Done.
func (q *Queue) Add(key string) {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.addLocked(key)
}

func (q *Queue) addLocked(key string) {
	if q.shuttingDown {
		return
	}
	if _, ok := q.dirty[key]; ok {
		return
	}
	q.dirty[key] = struct{}{}
	if _, ok := q.processing[key]; ok {
		return
	}
	q.queue = append(q.queue, key)
	q.cond.Signal()
}

// AddAfter adds key after delay. Of several pending delayed adds of one key
// the earliest wins; delay <= 0 adds at once.
func (q *Queue) AddAfter(key string, delay time.Duration) {
	if delay <= 0 {
		q.Add(key)
		return
	}
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.shuttingDown {
		return
	}
	at := time.Now().Add(delay)
	if d, ok := q.waiting[key]; ok {
		if !at.Before(d.at) {
			return
		}
		d.at = at
		d.timer.Reset(delay)
		return
	}
	d := &delayed{at: at}
	d.timer = time.AfterFunc(delay, func() { q.fire(key, d) })
	q.waiting[key] = d
}

// fire moves a delayed key to the queue. d identifies the timer so that a
// stale callback (its timer was reset and fired again) is harmless.
func (q *Queue) fire(key string, d *delayed) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.waiting[key] != d {
		return
	}
	if time.Now().Before(d.at) {
		// The timer was reset to a later time after it had already fired
		// and queued this callback; the reset timer fires again.
		return
	}
	delete(q.waiting, key)
	q.addLocked(key)
}

// AddRateLimited adds key after its back-off and counts one more failure.
func (q *Queue) AddRateLimited(key string) {
	q.AddAfter(key, q.limiter.When(key))
}

// Forget resets key's back-off; call it when a key was processed
// successfully. It does not remove the key from the queue.
func (q *Queue) Forget(key string) { q.limiter.Forget(key) }

// NumRequeues reports how many failures key's back-off has counted.
func (q *Queue) NumRequeues(key string) int { return q.limiter.NumRequeues(key) }

// Get blocks until a key is ready and hands it to the caller, who must call
// Done(key) when finished. shutdown is true once the queue is shut down and
// empty; the caller should then return.
func (q *Queue) Get() (key string, shutdown bool) {
	q.mu.Lock()
	defer q.mu.Unlock()
	for q.head == len(q.queue) && !q.shuttingDown {
		q.cond.Wait()
	}
	if q.head == len(q.queue) {
		return "", true
	}
	key = q.queue[q.head]
	q.queue[q.head] = ""
	q.head++
	if q.head == len(q.queue) {
		q.queue, q.head = q.queue[:0], 0
	} else if q.head > 64 && q.head*2 > len(q.queue) {
		// Compact once the consumed prefix dominates, so that a queue that
		// never quite empties does not grow without bound.
		n := copy(q.queue, q.queue[q.head:])
		q.queue, q.head = q.queue[:n], 0
	}
	q.processing[key] = struct{}{}
	delete(q.dirty, key)
	return key, false
}

// Done marks key as processed. If it was added while being processed, it
// is queued again.
func (q *Queue) Done(key string) {
	q.mu.Lock()
	defer q.mu.Unlock()
	delete(q.processing, key)
	if _, ok := q.dirty[key]; ok {
		q.queue = append(q.queue, key)
		q.cond.Signal()
	}
	if len(q.processing) == 0 {
		q.drained.Broadcast()
	}
}

// Len is the number of keys ready to be handed out (not the delayed ones,
// nor those being processed).
func (q *Queue) Len() int {
	q.mu.Lock()
	defer q.mu.Unlock()
	return len(q.queue) - q.head
}

// ShutDown stops accepting keys (adds are ignored, delayed adds dropped)
// and wakes the workers; Get hands out the keys already queued, then
// reports shutdown.
func (q *Queue) ShutDown() {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.shutDownLocked()
}

func (q *Queue) shutDownLocked() {
	if q.shuttingDown {
		return
	}
	q.shuttingDown = true
	for key, d := range q.waiting {
		d.timer.Stop()
		delete(q.waiting, key)
	}
	q.cond.Broadcast()
}

// ShutDownWithDrain shuts the queue down and waits until every key handed
// out has been marked Done (workers must keep calling Get until it reports
// shutdown, or the keys already queued are never handed out).
func (q *Queue) ShutDownWithDrain() {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.shutDownLocked()
	for len(q.processing) > 0 || q.head < len(q.queue) {
		q.drained.Wait()
	}
}

// ShuttingDown reports whether ShutDown was called.
func (q *Queue) ShuttingDown() bool {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.shuttingDown
}
