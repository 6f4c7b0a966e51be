package queue

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"
)

// ReconcileFunc converges the state named by key towards what is desired,
// reading current state (never trusting the event that queued the key). It
// returns nil when done, RequeueAfter(d) to be called again after d without
// counting a failure, or an error to be retried with back-off.
type ReconcileFunc func(ctx context.Context, key string) error

// requeueAfter is the error RequeueAfter returns.
type requeueAfter struct{ delay time.Duration }

func (r *requeueAfter) Error() string { return fmt.Sprintf("requeue after %v", r.delay) }

// RequeueAfter asks RunWorkers to reconcile the key again after delay; it
// is not a failure (the key's back-off is reset).
func RequeueAfter(delay time.Duration) error { return &requeueAfter{delay: delay} }

// RequeueDelay reports whether err (or an error it wraps) came from
// RequeueAfter, and with which delay.
func RequeueDelay(err error) (time.Duration, bool) {
	var ra *requeueAfter
	if errors.As(err, &ra) {
		return ra.delay, true
	}
	return 0, false
}

// RunWorkers hands q's keys to reconcile, at most n at a time, until ctx
// ends, then shuts q down, lets the reconciles drain it and returns once
// they all have. Failed keys are retried with q's back-off and logged.
//
// A worker goroutine lives only while it reconciles a key: an idle
// controller holds one parked goroutine (this one, in Get) rather than n.
// On an idle server with its node that was about 80 parked goroutines and
// their stacks.
func RunWorkers(ctx context.Context, q *Queue, n int, log *slog.Logger, reconcile ReconcileFunc) {
	if n < 1 {
		n = 1
	}
	if log == nil {
		log = slog.Default()
	}
	stop := context.AfterFunc(ctx, q.ShutDown)
	defer stop()
	slots := make(chan struct{}, n)
	var wg sync.WaitGroup
	for {
		// A free slot first, so that keys wait in q (where a key added
		// twice is queued once) rather than here.
		slots <- struct{}{}
		key, shutdown := q.Get()
		if shutdown {
			break
		}
		wg.Go(func() {
			defer func() { <-slots }()
			process(ctx, q, log, reconcile, key)
		})
	}
	wg.Wait()
}

// process reconciles one key taken from q.
func process(ctx context.Context, q *Queue, log *slog.Logger, reconcile ReconcileFunc, key string) {
	defer q.Done(key)
	if ctx.Err() != nil {
		// Draining after shutdown: nothing can be written any more.
		return
	}
	err := reconcile(ctx, key)
	delay, requeue := RequeueDelay(err)
	switch {
	case err == nil:
		q.Forget(key)
	case requeue:
		q.Forget(key)
		q.AddAfter(key, delay)
	case ctx.Err() != nil:
		// Shutting down; the error is the cancellation.
	default:
		log.Error("reconcile failed; retrying", "key", key, "retries", q.NumRequeues(key), "err", err)
		q.AddRateLimited(key)
	}
}
