// Package nftwatchtest provides a fake table watcher for the tests of the
// nftables tables' owners.
package nftwatchtest

import (
	"sync"

	"github.com/orch-dev/orch/netproxy/nftwatch"
)

// Watcher is a hand-driven stand-in for *nftwatch.Watcher: Report calls
// the subscribers of a table as the real one would on a kernel event.
type Watcher struct {
	mu   sync.Mutex
	subs map[nftwatch.Table]map[int]func(nftwatch.Reason)
	next int
}

// Watch records notify until cancel is called and reports Lost at once,
// as the real one does.
func (w *Watcher) Watch(t nftwatch.Table, notify func(nftwatch.Reason)) (cancel func()) {
	defer notify(nftwatch.Lost)
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.subs == nil {
		w.subs = map[nftwatch.Table]map[int]func(nftwatch.Reason){}
	}
	if w.subs[t] == nil {
		w.subs[t] = map[int]func(nftwatch.Reason){}
	}
	id := w.next
	w.next++
	w.subs[t][id] = notify
	return func() {
		w.mu.Lock()
		defer w.mu.Unlock()
		delete(w.subs[t], id)
	}
}

// Report tells t's subscribers r and returns how many there were (a
// subject subscribes when it starts running).
func (w *Watcher) Report(t nftwatch.Table, r nftwatch.Reason) int {
	w.mu.Lock()
	var fs []func(nftwatch.Reason)
	for _, f := range w.subs[t] {
		fs = append(fs, f)
	}
	w.mu.Unlock()
	for _, f := range fs {
		f(r)
	}
	return len(fs)
}
