package store

import (
	"context"
	"errors"
)

// Errors returned by every Store implementation. Callers compare with
// errors.Is; the API server maps them to metav1.Status exactly once, at its
// edge (ErrNotFound → 404, ErrExists → 409 AlreadyExists, ErrConflict → 409
// Conflict, ErrCompacted → 410 Gone).
var (
	ErrNotFound  = errors.New("store: key not found")
	ErrExists    = errors.New("store: key already exists")
	ErrConflict  = errors.New("store: modification revision does not match")
	ErrCompacted = errors.New("store: requested revision has been compacted")
	// ErrFutureRevision: a read or watch asked for a revision the store has
	// not reached yet.
	ErrFutureRevision = errors.New("store: requested revision is newer than the current revision")
	// ErrWatchCut: a watcher fell too far behind and was cut off so that it
	// never blocks writers; the consumer relists.
	ErrWatchCut = errors.New("store: watcher fell behind and was cut off")
	ErrClosed   = errors.New("store: closed")
	// ErrInvalidContinue: a continue token that this store did not issue or
	// that belongs to another prefix.
	ErrInvalidContinue = errors.New("store: invalid continue token")
)

// KeyValue is one key at one revision.
type KeyValue struct {
	Key            string
	Value          []byte
	CreateRevision int64
	// ModRevision is the revision of the last write (for a deletion event,
	// the revision of the delete).
	ModRevision int64
}

// EventType says what happened to a key.
type EventType int

const (
	EventPut EventType = iota + 1
	EventDelete
)

func (t EventType) String() string {
	switch t {
	case EventPut:
		return "PUT"
	case EventDelete:
		return "DELETE"
	}
	return "UNKNOWN"
}

// Event is one change. For EventPut, KV is the new value and PrevKV the old
// one (nil on create). For EventDelete, KV.Value is the last value, and
// KV.ModRevision is the revision of the delete.
type Event struct {
	Type   EventType
	KV     KeyValue
	PrevKV *KeyValue
}

// ListOptions select a page of a prefix.
type ListOptions struct {
	// Revision reads the state as of that revision; 0 means the current one.
	// A revision older than the last compaction gives ErrCompacted.
	Revision int64
	// Limit caps the number of returned keys; 0 means no limit.
	Limit int64
	// Continue is a token from a previous ListResult; it pins the revision
	// of the first page.
	Continue string
	// Start, when set, is the first key (inclusive) to return; it must be
	// under the prefix. It lets a caller that filters keys resume a listing
	// after the last key it returned (with Revision pinned).
	Start string
	// SkipCount leaves ListResult.RemainingCount at 0 when Limit cuts a
	// page, sparing a walk over the rest of the prefix: a caller that reads
	// every page anyway does not need the count.
	SkipCount bool
	// Buffer, when set, lends List memory for the page's KeyValues and
	// values, reused page after page: a caller that reads a large
	// collection in pages then allocates almost nothing. Passing a buffer
	// again ends the use of the page read with it before.
	Buffer *ListBuffer
}

// ListBuffer is memory lent to List (see ListOptions.Buffer). The zero
// value is ready to use; List grows it to what a page needs.
type ListBuffer struct {
	KVs    []KeyValue
	Values []byte
}

// ListResult is one page.
type ListResult struct {
	KVs []KeyValue
	// Revision the page was read at (also the resourceVersion of a list).
	Revision int64
	// Continue is non-empty when more keys remain.
	Continue string
	// RemainingCount is the number of keys after this page, when known
	// (not with ListOptions.SkipCount).
	RemainingCount int64
}

// WriteOptions tune one write.
type WriteOptions struct {
	// Volatile keeps the new value in memory only: it is served, listed and
	// watched like any other, but not written to disk. A restart returns the
	// key to its last durable value (or absence). Used for loss-tolerant,
	// frequently rewritten values such as node leases and node heartbeat
	// timestamps, so that an idle cluster does not wear out an SD card.
	Volatile bool
}

// Watcher streams the events after a revision, in revision order.
type Watcher interface {
	// Events is closed when the watch ends (context cancelled, store closed,
	// or the watcher cut off); Err then says why.
	Events() <-chan Event
	// Err is nil while the watch runs and after a cancellation by the
	// caller; ErrWatchCut or ErrClosed otherwise.
	Err() error
	// Stop ends the watch and releases its resources; safe to call twice.
	Stop()
}

// Store is the datastore the API server consumes. Keys are opaque strings
// ordered bytewise; values are opaque bytes. Every mutating call gets the
// next global revision, which is the Kubernetes resourceVersion of the
// object it wrote. Writes are durable (fsynced) when they return, unless
// WriteOptions.Volatile says otherwise.
type Store interface {
	Get(ctx context.Context, key string) (*KeyValue, error)
	List(ctx context.Context, prefix string, opts ListOptions) (*ListResult, error)
	// Count returns the number of keys under prefix now.
	Count(ctx context.Context, prefix string) (int64, error)

	// Create fails with ErrExists when the key exists.
	Create(ctx context.Context, key string, value []byte, opts WriteOptions) (*KeyValue, error)
	// Update writes only if the key's ModRevision equals modRevision
	// (ErrConflict otherwise, ErrNotFound when absent).
	Update(ctx context.Context, key string, value []byte, modRevision int64, opts WriteOptions) (*KeyValue, error)
	// Delete removes the key if its ModRevision equals modRevision, or
	// unconditionally when modRevision is 0. It returns the deleted value
	// with ModRevision set to the revision of the delete.
	Delete(ctx context.Context, key string, modRevision int64) (*KeyValue, error)

	// Watch delivers every change under prefix with a revision greater than
	// afterRevision, in order and without gaps. afterRevision older than the
	// watch history gives ErrCompacted.
	Watch(ctx context.Context, prefix string, afterRevision int64) (Watcher, error)

	// Compact drops history at and below revision.
	Compact(ctx context.Context, revision int64) error
	// Revision is the current (last written) revision.
	Revision() int64
	// CompactRevision is the last compacted revision.
	CompactRevision() int64
	Close() error
}
