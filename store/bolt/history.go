package bolt

import (
	"sort"

	"github.com/orch-dev/orch/store"
)

// history is the ring of recent events, oldest first, bounded by count and
// by the bytes of the values it holds. Events share their value slices
// with the store's answers; nobody may modify them.
type history struct {
	events    []store.Event
	bytes     int
	maxEvents int
	maxBytes  int
}

func eventBytes(ev *store.Event) int {
	n := len(ev.KV.Key) + len(ev.KV.Value) + 64
	if ev.PrevKV != nil && ev.Type == store.EventPut {
		// A delete's PrevKV shares its value with KV.
		n += len(ev.PrevKV.Value)
	}
	return n
}

// add appends ev and evicts the oldest events past the bounds. It returns
// the revision of the newest evicted event, 0 if none was.
func (h *history) add(ev store.Event) (dropped int64) {
	h.events = append(h.events, ev)
	h.bytes += eventBytes(&ev)
	n := 0
	for len(h.events)-n > 1 && (len(h.events)-n > h.maxEvents || h.bytes > h.maxBytes) {
		h.bytes -= eventBytes(&h.events[n])
		dropped = h.events[n].KV.ModRevision
		n++
	}
	h.trim(n)
	return dropped
}

// trim drops the n oldest events, copying the rest down now and then so
// the backing array does not grow without bound.
func (h *history) trim(n int) {
	if n == 0 {
		return
	}
	clear(h.events[:n])
	h.events = h.events[n:]
	if cap(h.events) > 2*h.maxEvents+64 && len(h.events) < cap(h.events)/2 {
		h.events = append(make([]store.Event, 0, len(h.events)+h.maxEvents/4+16), h.events...)
	}
}

// dropThrough evicts every event at or below rev.
func (h *history) dropThrough(rev int64) {
	n := h.index(rev)
	for i := 0; i < n; i++ {
		h.bytes -= eventBytes(&h.events[i])
	}
	h.trim(n)
}

// index is the position of the first event with a revision above after.
func (h *history) index(after int64) int {
	return sort.Search(len(h.events), func(i int) bool { return h.events[i].KV.ModRevision > after })
}

// since returns the events above after (a fresh slice of shared events).
func (h *history) since(after int64) []store.Event {
	i := h.index(after)
	if i == len(h.events) {
		return nil
	}
	return append([]store.Event(nil), h.events[i:]...)
}
