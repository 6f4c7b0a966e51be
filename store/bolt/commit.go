package bolt

import (
	"bytes"
	"context"
	"fmt"

	bbolt "go.etcd.io/bbolt"

	"github.com/orch-dev/orch/store"
)

type opKind int

const (
	opCreate opKind = iota
	opUpdate
	opDelete
)

// op is one write waiting for the committer.
type op struct {
	kind     opKind
	key      string
	value    []byte
	modRev   int64 // precondition; 0 on delete means unconditional
	volatile bool
	done     chan result
}

type result struct {
	kv  *store.KeyValue
	err error
}

// Create writes key if it does not exist.
func (d *DB) Create(ctx context.Context, key string, value []byte, opts store.WriteOptions) (*store.KeyValue, error) {
	return d.submit(ctx, &op{kind: opCreate, key: key, value: bytes.Clone(value), volatile: opts.Volatile})
}

// Update writes key if its mod revision is modRevision.
func (d *DB) Update(ctx context.Context, key string, value []byte, modRevision int64, opts store.WriteOptions) (*store.KeyValue, error) {
	return d.submit(ctx, &op{kind: opUpdate, key: key, value: bytes.Clone(value), modRev: modRevision, volatile: opts.Volatile})
}

// Delete removes key if its mod revision is modRevision (or always for 0).
func (d *DB) Delete(ctx context.Context, key string, modRevision int64) (*store.KeyValue, error) {
	return d.submit(ctx, &op{kind: opDelete, key: key, modRev: modRevision})
}

// submit queues o and waits for its result. A caller whose context ends
// after the operation was queued still gets no answer, but the write may
// have happened: as with etcd, the outcome is then unknown to it.
func (d *DB) submit(ctx context.Context, o *op) (*store.KeyValue, error) {
	if o.key == "" {
		return nil, fmt.Errorf("store: empty key")
	}
	if d.closed() {
		return nil, store.ErrClosed
	}
	o.done = make(chan result, 1)
	select {
	case d.ops <- o:
	case <-d.stop:
		return nil, store.ErrClosed
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	select {
	case r := <-o.done:
		return r.kv, r.err
	case <-d.stopped:
		select {
		case r := <-o.done:
			return r.kv, r.err
		default:
			return nil, store.ErrClosed
		}
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// commitLoop is the single writer. Each round takes every waiting
// operation (up to MaxBatch) and commits them together.
func (d *DB) commitLoop() {
	defer close(d.stopped)
	batch := make([]*op, 0, d.opts.MaxBatch)
	for {
		select {
		case <-d.stop:
			d.failPending()
			return
		case o := <-d.ops:
			batch = append(batch[:0], o)
		}
	drain:
		for len(batch) < d.opts.MaxBatch {
			select {
			case o := <-d.ops:
				batch = append(batch, o)
			default:
				break drain
			}
		}
		d.commit(batch)
	}
}

func (d *DB) failPending() {
	for {
		select {
		case o := <-d.ops:
			o.done <- result{err: store.ErrClosed}
		default:
			return
		}
	}
}

// staged is the effect of one operation of a batch, published after the
// batch is durable.
type staged struct {
	o     *op
	event store.Event
	err   error
	// overlay change: put (volatile write) or drop the overlay entry.
	overlayPut  *entry
	overlayDrop bool
}

// commit applies a batch: preconditions in order, one bbolt transaction,
// then publication and answers.
func (d *DB) commit(batch []*op) {
	// Only the committer changes d.rev, d.ceiling and d.overlay, so it may
	// read them without the lock; it takes the lock to change them.
	rev := d.rev
	var tx *bbolt.Tx
	fail := func(err error) {
		if tx != nil {
			_ = tx.Rollback()
		}
		for _, o := range batch {
			o.done <- result{err: err}
		}
	}
	begin := func() error {
		if tx != nil {
			return nil
		}
		var err error
		tx, err = d.db.Begin(true)
		return err
	}

	// pending holds the batch's own effects on keys so later operations of
	// the same batch see them: nil entry = deleted.
	pending := map[string]*entry{}

	steps := make([]staged, len(batch))
	for i, o := range batch {
		st := &steps[i]
		st.o = o
		cur, err := d.lookup(o.key, pending, &tx, begin)
		if err != nil {
			fail(fmt.Errorf("store: read %q: %w", o.key, err))
			return
		}
		switch o.kind {
		case opCreate:
			if cur != nil {
				st.err = store.ErrExists
				continue
			}
		case opUpdate:
			if cur == nil {
				st.err = store.ErrNotFound
				continue
			}
			if cur.modRev != o.modRev {
				st.err = store.ErrConflict
				continue
			}
		case opDelete:
			if cur == nil {
				st.err = store.ErrNotFound
				continue
			}
			if o.modRev != 0 && cur.modRev != o.modRev {
				st.err = store.ErrConflict
				continue
			}
		}
		rev++
		var prev *store.KeyValue
		if cur != nil {
			kv := cur.kv(o.key)
			prev = &kv
		}
		if o.kind == opDelete {
			st.event = store.Event{Type: store.EventDelete, PrevKV: prev,
				KV: store.KeyValue{Key: o.key, Value: cur.value, CreateRevision: cur.createRev, ModRevision: rev}}
			pending[o.key] = nil
			st.overlayDrop = true
			if err := begin(); err != nil {
				fail(err)
				return
			}
			if err := tx.Bucket(bucketKV).Delete([]byte(o.key)); err != nil {
				fail(fmt.Errorf("store: delete %q: %w", o.key, err))
				return
			}
			continue
		}
		createRev := rev
		if cur != nil {
			createRev = cur.createRev
		}
		e := &entry{value: o.value, createRev: createRev, modRev: rev}
		st.event = store.Event{Type: store.EventPut, KV: e.kv(o.key), PrevKV: prev}
		pending[o.key] = e
		if o.volatile {
			st.overlayPut = e
			continue
		}
		st.overlayDrop = true
		if err := begin(); err != nil {
			fail(err)
			return
		}
		if err := tx.Bucket(bucketKV).Put([]byte(o.key), encodeValue(e.createRev, e.modRev, e.value)); err != nil {
			fail(fmt.Errorf("store: write %q: %w", o.key, err))
			return
		}
	}

	ceiling := d.ceiling
	if rev > ceiling {
		ceiling = rev + d.opts.ReserveBlock
		if err := begin(); err != nil {
			fail(err)
			return
		}
		if err := tx.Bucket(bucketMeta).Put(keyCeiling, encodeRev(ceiling)); err != nil {
			fail(fmt.Errorf("store: reserve revisions: %w", err))
			return
		}
	}

	// Commit outside the lock, so that readers are not held up by the
	// fsyncs; a reader whose transaction would see the new file contents
	// before their revisions are published waits for the publication (see
	// snap), so no reader sees file contents newer than its revision.
	if tx != nil {
		d.mu.Lock()
		d.pendingTx = tx.ID()
		d.mu.Unlock()
		err := tx.Commit()
		d.mu.Lock()
		d.pendingTx = 0
		if err != nil {
			d.mu.Unlock()
			d.published.Broadcast()
			tx = nil
			fail(fmt.Errorf("store: commit: %w", err))
			return
		}
	} else {
		d.mu.Lock()
	}
	d.rev = rev
	d.ceiling = ceiling
	for i := range steps {
		st := &steps[i]
		if st.err != nil {
			continue
		}
		if st.overlayPut != nil {
			d.overlay[st.o.key] = st.overlayPut
		} else if st.overlayDrop {
			delete(d.overlay, st.o.key)
		}
		d.publish(st.event)
	}
	d.mu.Unlock()
	d.published.Broadcast()

	for i := range steps {
		st := &steps[i]
		if st.err != nil {
			st.o.done <- result{err: st.err}
			continue
		}
		kv := st.event.KV
		st.o.done <- result{kv: &kv}
	}
}

// lookup is the current entry of key as the batch sees it: the batch's own
// earlier effects, then the overlay, then the file.
func (d *DB) lookup(key string, pending map[string]*entry, tx **bbolt.Tx, begin func() error) (*entry, error) {
	if e, ok := pending[key]; ok {
		return e, nil
	}
	if e, ok := d.overlay[key]; ok {
		return e, nil
	}
	if err := begin(); err != nil {
		return nil, err
	}
	v := (*tx).Bucket(bucketKV).Get([]byte(key))
	if v == nil {
		return nil, nil
	}
	return decodeValue(v)
}

// publish records an event in the history and hands it to the watchers.
// Called with d.mu held.
func (d *DB) publish(ev store.Event) {
	if dropped := d.history.add(ev); dropped > d.compactRev {
		d.compactRev = dropped
	}
	for w := range d.watchers {
		if w.matches(ev.KV.Key) {
			w.enqueue(ev)
		}
	}
}
