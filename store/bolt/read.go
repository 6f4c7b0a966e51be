package bolt

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"sort"
	"strings"

	bbolt "go.etcd.io/bbolt"

	"github.com/orch-dev/orch/store"
)

// snapshot is a consistent view at one revision: a read transaction plus
// what the overlay and the history said at the moment it was begun.
type snapshot struct {
	tx      *bbolt.Tx
	rev     int64 // published revision when taken
	overlay map[string]*entry
	// rewind, when reading at an older revision, maps each key changed
	// since then to its value at that revision (nil: absent then).
	rewind map[string]*entry
}

// snap takes a snapshot of the keys under prefix. at is the revision to
// read (0 = current).
func (d *DB) snap(prefix string, at int64) (*snapshot, error) {
	if d.closed() {
		return nil, store.ErrClosed
	}
	d.mu.RLock()
	defer d.mu.RUnlock()
	for {
		s, err := d.snapLocked(prefix, at)
		if err != nil {
			return nil, err
		}
		tx, err := d.db.Begin(false)
		if err != nil {
			return nil, err
		}
		if d.pendingTx != 0 && tx.ID() >= d.pendingTx {
			// The file already holds a batch whose revisions are not
			// published yet: wait for them, then take the snapshot again.
			_ = tx.Rollback()
			d.published.Wait()
			continue
		}
		s.tx = tx
		return s, nil
	}
}

// snapLocked is the in-memory part of a snapshot. Called with d.mu held.
func (d *DB) snapLocked(prefix string, at int64) (*snapshot, error) {
	if at > d.rev {
		return nil, store.ErrFutureRevision
	}
	if at != 0 && at < d.compactRev {
		return nil, store.ErrCompacted
	}
	s := &snapshot{rev: d.rev, overlay: map[string]*entry{}}
	for k, e := range d.overlay {
		if strings.HasPrefix(k, prefix) {
			s.overlay[k] = e
		}
	}
	if at != 0 && at < d.rev {
		s.rewind = map[string]*entry{}
		events := d.history.events[d.history.index(at):]
		for i := range events {
			ev := &events[i]
			k := ev.KV.Key
			if !strings.HasPrefix(k, prefix) {
				continue
			}
			if _, seen := s.rewind[k]; seen {
				continue // the oldest change after at tells the value at at
			}
			if ev.PrevKV == nil {
				s.rewind[k] = nil
			} else {
				s.rewind[k] = &entry{value: ev.PrevKV.Value, createRev: ev.PrevKV.CreateRevision, modRev: ev.PrevKV.ModRevision}
			}
		}
		s.rev = at
	}
	return s, nil
}

func (s *snapshot) close() { _ = s.tx.Rollback() }

// get is key's entry in the snapshot, nil if absent.
func (s *snapshot) get(key string) (*entry, error) {
	if s.rewind != nil {
		if e, ok := s.rewind[key]; ok {
			return e, nil
		}
	}
	if e, ok := s.overlay[key]; ok {
		return e, nil
	}
	v := s.tx.Bucket(bucketKV).Get([]byte(key))
	if v == nil {
		return nil, nil
	}
	return decodeValue(v)
}

// Get reads the current value of key.
func (d *DB) Get(ctx context.Context, key string) (*store.KeyValue, error) {
	s, err := d.snap(key, 0)
	if err != nil {
		return nil, err
	}
	defer s.close()
	e, err := s.get(key)
	if err != nil {
		return nil, err
	}
	if e == nil {
		return nil, store.ErrNotFound
	}
	kv := e.kv(key)
	return &kv, nil
}

// continueToken is what a ListResult.Continue carries.
type continueToken struct {
	Rev    int64  `json:"r"`
	Prefix string `json:"p"`
	Next   string `json:"k"`
}

func encodeContinue(t continueToken) string {
	b, _ := json.Marshal(t)
	return base64.RawURLEncoding.EncodeToString(b)
}

func decodeContinue(s, prefix string) (continueToken, error) {
	var t continueToken
	b, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil || json.Unmarshal(b, &t) != nil || t.Rev <= 0 || t.Prefix != prefix || !strings.HasPrefix(t.Next, prefix) {
		return continueToken{}, store.ErrInvalidContinue
	}
	return t, nil
}

// List reads a page of the keys under prefix, in key order.
func (d *DB) List(ctx context.Context, prefix string, opts store.ListOptions) (*store.ListResult, error) {
	at, start := opts.Revision, prefix
	if opts.Continue != "" {
		t, err := decodeContinue(opts.Continue, prefix)
		if err != nil {
			return nil, err
		}
		at, start = t.Rev, t.Next
	}
	if opts.Start != "" {
		if !strings.HasPrefix(opts.Start, prefix) {
			return nil, store.ErrInvalidContinue
		}
		if opts.Start > start {
			start = opts.Start
		}
	}
	s, err := d.snap(prefix, at)
	if err != nil {
		return nil, err
	}
	defer s.close()

	res := &store.ListResult{Revision: s.rev}
	it := newMergeIter(s, prefix, start)
	var values valueArena
	if b := opts.Buffer; b != nil {
		res.KVs = b.KVs[:0]
		values.block = b.Values[:0]
		defer func() {
			// Keep the page's KeyValues, and enough value memory for the
			// next page to fit in one block.
			b.KVs = res.KVs[:0]
			if values.used > cap(b.Values) {
				b.Values = make([]byte, 0, values.used)
			}
		}()
	}
	for {
		key, e, raw, err := it.next()
		if err != nil {
			return nil, err
		}
		if key == nil {
			break
		}
		if opts.Limit > 0 && int64(len(res.KVs)) == opts.Limit {
			res.Continue = encodeContinue(continueToken{Rev: s.rev, Prefix: prefix, Next: string(key)})
			if opts.SkipCount {
				break
			}
			n, err := it.count()
			if err != nil {
				return nil, err
			}
			res.RemainingCount = 1 + n
			break
		}
		if res.KVs == nil {
			res.KVs = make([]store.KeyValue, 0, listCapacity(opts.Limit))
		}
		if e != nil {
			res.KVs = append(res.KVs, e.kv(string(key)))
			continue
		}
		if len(raw) < 16 {
			return nil, fmt.Errorf("store: damaged record of %d bytes", len(raw))
		}
		res.KVs = append(res.KVs, store.KeyValue{Key: string(key), Value: values.copy(raw[16:]),
			CreateRevision: int64(binary.BigEndian.Uint64(raw)), ModRevision: int64(binary.BigEndian.Uint64(raw[8:]))})
	}
	return res, nil
}

// listCapacity is the first capacity of a page's KVs: the limit when there
// is one, else enough for a typical large list to grow only a few times.
func listCapacity(limit int64) int {
	if limit > 0 && limit <= 4096 {
		return int(limit)
	}
	return 256
}

// valueArena copies the values of one List out of the memory map into a
// few large blocks instead of one allocation per value: a list is used
// and dropped as a whole, and a LIST of 10k objects otherwise makes 20k
// small allocations (an entry and a value each).
type valueArena struct {
	block []byte
	used  int // bytes of all values copied
}

const arenaBlock = 64 << 10

func (a *valueArena) copy(v []byte) []byte {
	a.used += len(v)
	if len(v) > arenaBlock/4 && cap(a.block)-len(a.block) < len(v) {
		return bytes.Clone(v)
	}
	if cap(a.block)-len(a.block) < len(v) {
		a.block = make([]byte, 0, arenaBlock)
	}
	n := len(a.block)
	a.block = append(a.block, v...)
	// A full slice expression, so that appending to one value never
	// overwrites the next.
	return a.block[n:len(a.block):len(a.block)]
}

// Count is the number of keys under prefix now.
func (d *DB) Count(ctx context.Context, prefix string) (int64, error) {
	s, err := d.snap(prefix, 0)
	if err != nil {
		return 0, err
	}
	defer s.close()
	return newMergeIter(s, prefix, prefix).count()
}

// mergeIter walks the union of the file's keys, the overlay's keys and the
// rewound keys under a prefix, in order, yielding each key's value in the
// snapshot and skipping keys absent in it.
type mergeIter struct {
	s      *snapshot
	prefix []byte
	cur    *bbolt.Cursor
	fk, fv []byte // next file key and raw value, nil when exhausted
	extra  []string
	xi     int
}

func newMergeIter(s *snapshot, prefix, start string) *mergeIter {
	it := &mergeIter{s: s, prefix: []byte(prefix), cur: s.tx.Bucket(bucketKV).Cursor()}
	it.fk, it.fv = it.cur.Seek([]byte(start))
	it.checkFile()
	for k := range s.overlay {
		if k >= start {
			it.extra = append(it.extra, k)
		}
	}
	for k := range s.rewind {
		if k >= start {
			if _, dup := s.overlay[k]; !dup {
				it.extra = append(it.extra, k)
			}
		}
	}
	sort.Strings(it.extra)
	return it
}

func (it *mergeIter) checkFile() {
	if it.fk != nil && !bytes.HasPrefix(it.fk, it.prefix) {
		it.fk, it.fv = nil, nil
	}
}

// next advances to the next key present in the snapshot. It returns the
// entry when the value comes from memory, else the raw file record. The
// key and the record are valid only during the transaction: keys are
// handed out as bytes so that walking past keys (counting, skipping)
// allocates nothing.
func (it *mergeIter) next() ([]byte, *entry, []byte, error) {
	for {
		var key, raw []byte
		switch {
		case it.fk == nil && it.xi == len(it.extra):
			return nil, nil, nil, nil
		case it.fk == nil:
			key = []byte(it.extra[it.xi])
			it.xi++
		case it.xi == len(it.extra) || string(it.fk) < it.extra[it.xi]:
			key, raw = it.fk, it.fv
			it.fk, it.fv = it.cur.Next()
			it.checkFile()
		default:
			key = []byte(it.extra[it.xi])
			it.xi++
			if string(it.fk) == string(key) {
				it.fk, it.fv = it.cur.Next()
				it.checkFile()
			}
		}
		if it.s.rewind != nil {
			if e, ok := it.s.rewind[string(key)]; ok {
				if e == nil {
					continue // absent at the snapshot's revision
				}
				return key, e, nil, nil
			}
		}
		if e, ok := it.s.overlay[string(key)]; ok {
			return key, e, nil, nil
		}
		if raw == nil {
			continue
		}
		return key, nil, raw, nil
	}
}

// count is the number of keys left in the iteration.
func (it *mergeIter) count() (int64, error) {
	var n int64
	for {
		k, _, _, err := it.next()
		if err != nil {
			return 0, err
		}
		if k == nil {
			return n, nil
		}
		n++
	}
}
