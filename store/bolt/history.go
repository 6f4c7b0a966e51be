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
	// latest is, for each key whose newest event is a put still in the
	// ring, that put: the key's current value. A write takes its previous
	// value from here instead of a fresh copy out of the file, so an
	// event's PrevKV shares its bytes with the event before it: under a
	// stream of updates (pod and node status, leases) the ring holds each
	// value once instead of twice, and the write skips a read of the file.
	latest map[string]entry
}

// eventBytes is what an event counts against the byte bound. A put's
// PrevKV is counted even when it shares the previous event's value
// (latest), so the bound stays an upper bound of what the ring holds.
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
	if h.latest == nil {
		h.latest = map[string]entry{}
	}
	if ev.Type == store.EventPut {
		h.latest[ev.KV.Key] = entry{value: ev.KV.Value, createRev: ev.KV.CreateRevision, modRev: ev.KV.ModRevision}
	} else {
		delete(h.latest, ev.KV.Key)
	}
	n := 0
	for len(h.events)-n > 1 && (len(h.events)-n > h.maxEvents || h.bytes > h.maxBytes) {
		h.bytes -= eventBytes(&h.events[n])
		dropped = h.events[n].KV.ModRevision
		n++
	}
	h.trim(n)
	return dropped
}

// current returns key's current entry if its newest event is a put still
// in the ring. The value is shared; nobody may modify it.
func (h *history) current(key string) (entry, bool) {
	e, ok := h.latest[key]
	return e, ok
}

// trim drops the n oldest events, copying the rest down now and then so
// the backing array does not grow without bound.
func (h *history) trim(n int) {
	if n == 0 {
		return
	}
	for i := range h.events[:n] {
		kv := &h.events[i].KV
		if e, ok := h.latest[kv.Key]; ok && e.modRev == kv.ModRevision {
			delete(h.latest, kv.Key)
		}
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
