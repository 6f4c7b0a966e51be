package agent

import (
	"sync"
	"time"
)

// backOff is kubelet's per-key exponential back-off for container restarts
// and image pulls: the first failure is retried at once, later ones wait
// initial, 2×initial, ... up to max. A key left alone for 2×max (a
// container that ran fine for ten minutes) starts over.
type backOff struct {
	initial, max time.Duration

	mu      sync.Mutex
	entries map[string]*backOffEntry
}

type backOffEntry struct {
	delay time.Duration
	// last is when the failure that set delay happened.
	last time.Time
}

func newBackOff(initial, max time.Duration) *backOff {
	return &backOff{initial: initial, max: max, entries: map[string]*backOffEntry{}}
}

// inBackOffSince reports whether a retry of key must still wait, given that
// the last failure happened at failedAt, and how long is left.
func (b *backOff) inBackOffSince(key string, failedAt, now time.Time) (bool, time.Duration) {
	b.mu.Lock()
	defer b.mu.Unlock()
	e, ok := b.entries[key]
	if !ok || b.expired(e, now) {
		return false, 0
	}
	left := e.delay - now.Sub(failedAt)
	return left > 0, left
}

// inBackOff is inBackOffSince the key's last recorded failure.
func (b *backOff) inBackOff(key string, now time.Time) (bool, time.Duration) {
	b.mu.Lock()
	e, ok := b.entries[key]
	var last time.Time
	if ok {
		last = e.last
	}
	b.mu.Unlock()
	if !ok {
		return false, 0
	}
	return b.inBackOffSince(key, last, now)
}

// next records a failure of key at failedAt (the retry happens now) and
// returns the delay the following failure will have to wait.
func (b *backOff) next(key string, failedAt, now time.Time) time.Duration {
	b.mu.Lock()
	defer b.mu.Unlock()
	e, ok := b.entries[key]
	if !ok || b.expired(e, now) {
		e = &backOffEntry{delay: b.initial}
		b.entries[key] = e
	} else {
		e.delay *= 2
		if e.delay > b.max {
			e.delay = b.max
		}
	}
	e.last = failedAt
	return e.delay
}

// delay is the current back-off of key (0 when none).
func (b *backOff) delay(key string) time.Duration {
	b.mu.Lock()
	defer b.mu.Unlock()
	if e, ok := b.entries[key]; ok {
		return e.delay
	}
	return 0
}

func (b *backOff) expired(e *backOffEntry, now time.Time) bool {
	return now.Sub(e.last) > 2*b.max
}

// forget drops every key with the given prefix (a pod's keys when it goes).
func (b *backOff) forget(prefix string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	for k := range b.entries {
		if len(k) >= len(prefix) && k[:len(prefix)] == prefix {
			delete(b.entries, k)
		}
	}
}
