package bolt

import (
	"context"
	"strings"
	"sync"

	"github.com/orch-dev/orch/store"
)

// watcher delivers the events under one prefix. The committer appends to
// its queue without ever blocking; a goroutine per watcher moves the queue
// to the consumer's channel. A queue past the backlog limit cuts the
// watcher off (store.ErrWatchCut): a slow consumer never slows writers.
type watcher struct {
	prefix  string
	limit   int
	out     chan store.Event
	wake    chan struct{}
	done    chan struct{}
	stopped sync.Once

	mu    sync.Mutex
	queue []store.Event
	err   error
	ended bool
}

func (w *watcher) matches(key string) bool { return strings.HasPrefix(key, w.prefix) }

// enqueue adds ev; called with the DB lock held, never blocks.
func (w *watcher) enqueue(ev store.Event) {
	w.mu.Lock()
	if w.ended {
		w.mu.Unlock()
		return
	}
	if len(w.queue) >= w.limit {
		w.mu.Unlock()
		w.cut(store.ErrWatchCut)
		return
	}
	w.queue = append(w.queue, ev)
	w.mu.Unlock()
	select {
	case w.wake <- struct{}{}:
	default:
	}
}

// cut ends the watch with err (nil for a stop by the consumer).
func (w *watcher) cut(err error) {
	w.mu.Lock()
	if !w.ended {
		w.ended = true
		w.err = err
		w.queue = nil
	}
	w.mu.Unlock()
	w.stopped.Do(func() { close(w.done) })
}

func (w *watcher) Events() <-chan store.Event { return w.out }

func (w *watcher) Err() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.err
}

// pump moves queued events to the consumer until the watch ends.
func (w *watcher) pump(ctx context.Context, unregister func()) {
	defer close(w.out)
	defer unregister()
	for {
		w.mu.Lock()
		batch := w.queue
		w.queue = nil
		w.mu.Unlock()
		for _, ev := range batch {
			select {
			case w.out <- ev:
			case <-w.done:
				return
			case <-ctx.Done():
				w.cut(nil)
				return
			}
		}
		select {
		case <-w.wake:
		case <-w.done:
			return
		case <-ctx.Done():
			w.cut(nil)
			return
		}
	}
}

// Watch streams every change under prefix after afterRevision.
func (d *DB) Watch(ctx context.Context, prefix string, afterRevision int64) (store.Watcher, error) {
	if d.closed() {
		return nil, store.ErrClosed
	}
	w := &watcher{
		prefix: prefix,
		limit:  d.opts.WatchBacklog,
		out:    make(chan store.Event, 16),
		wake:   make(chan struct{}, 1),
		done:   make(chan struct{}),
	}
	d.mu.Lock()
	if afterRevision > d.rev {
		d.mu.Unlock()
		return nil, store.ErrFutureRevision
	}
	if afterRevision < d.compactRev {
		d.mu.Unlock()
		return nil, store.ErrCompacted
	}
	for _, ev := range d.history.since(afterRevision) {
		if w.matches(ev.KV.Key) {
			w.queue = append(w.queue, ev)
		}
	}
	w.limit += len(w.queue)
	if d.watchers == nil { // closed meanwhile
		d.mu.Unlock()
		return nil, store.ErrClosed
	}
	d.watchers[w] = struct{}{}
	d.mu.Unlock()

	unregister := func() {
		d.mu.Lock()
		delete(d.watchers, w)
		d.mu.Unlock()
	}
	go w.pump(ctx, unregister)
	return w, nil
}

// Stop ends the watch; safe to call more than once.
func (w *watcher) Stop() { w.cut(nil) }
