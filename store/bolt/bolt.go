package bolt

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"time"

	bbolt "go.etcd.io/bbolt"
	bolterrors "go.etcd.io/bbolt/errors"

	"github.com/orch-dev/orch/store"
)

// SchemaVersion is the file layout this package reads and writes.
const SchemaVersion = 1

var (
	bucketMeta = []byte("meta")
	bucketKV   = []byte("kv")
	keySchema  = []byte("schema")
	keyCeiling = []byte("ceiling")
)

// Options tune a DB. The zero value is the production default.
type Options struct {
	// HistoryEvents and HistoryBytes bound the in-memory event ring that
	// serves watches and reads at past revisions (defaults 10000 events,
	// 16 MiB of values).
	HistoryEvents int
	HistoryBytes  int
	// WatchBacklog is how many undelivered events a watcher may have before
	// it is cut off with store.ErrWatchCut (default 10000).
	WatchBacklog int
	// MaxBatch caps the operations committed in one transaction (default 512).
	MaxBatch int
	// ReserveBlock is how many revisions one ceiling write reserves
	// (default 1000).
	ReserveBlock int64
	// LockTimeout is how long Open waits for another process's file lock
	// (default 5 s).
	LockTimeout time.Duration
	// NoSync skips fsync. For throwaway tests only: it gives up durability.
	NoSync bool
	Logger *slog.Logger
}

func (o *Options) setDefaults() {
	if o.HistoryEvents <= 0 {
		o.HistoryEvents = 10000
	}
	if o.HistoryBytes <= 0 {
		o.HistoryBytes = 16 << 20
	}
	if o.WatchBacklog <= 0 {
		o.WatchBacklog = 10000
	}
	if o.MaxBatch <= 0 {
		o.MaxBatch = 512
	}
	if o.ReserveBlock <= 0 {
		o.ReserveBlock = 1000
	}
	if o.LockTimeout <= 0 {
		o.LockTimeout = 5 * time.Second
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
}

// DB is a store.Store backed by one bbolt file.
type DB struct {
	path string
	opts Options
	db   *bbolt.DB

	ops      chan *op
	stop     chan struct{}
	stopped  chan struct{}
	closeMu  sync.Mutex
	isClosed bool

	// mu guards everything below. The committer holds it for writing while
	// it publishes a batch, not while the batch's transaction is written
	// and synced: readers keep reading the published state meanwhile. They
	// hold it for reading only while they take their snapshot (never while
	// they hold a bbolt transaction and wait for something else).
	mu sync.RWMutex
	// pendingTx is the id of the bbolt transaction being committed (0 when
	// none): a snapshot whose read transaction is that new must wait for
	// its publication (published, on mu's read side) to stay consistent.
	pendingTx  int
	published  *sync.Cond
	rev        int64 // last published revision
	ceiling    int64 // revisions up to here may be handed out
	compactRev int64
	overlay    map[string]*entry // volatile values, shadowing the file
	history    history
	watchers   map[*watcher]struct{}
}

var _ store.Store = (*DB)(nil)

// entry is a key's value with its revisions.
type entry struct {
	value     []byte
	createRev int64
	modRev    int64
}

func (e *entry) kv(key string) store.KeyValue {
	return store.KeyValue{Key: key, Value: e.value, CreateRevision: e.createRev, ModRevision: e.modRev}
}

// Open opens or creates the database at path. It refuses files of another
// schema version and reports corrupt files without touching them.
func Open(path string, opts Options) (d *DB, err error) {
	opts.setDefaults()
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("store: create directory for %s: %w", path, err)
	}
	// bbolt panics on some kinds of damage it finds while reading pages;
	// a damaged file must be an error at start, not a crash.
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("store: %s is corrupt (%v); it was left untouched: restore it from a backup or move it away", path, r)
		}
	}()
	db, err := bbolt.Open(path, 0o600, &bbolt.Options{
		Timeout:        opts.LockTimeout,
		NoFreelistSync: true,
		FreelistType:   bbolt.FreelistMapType,
		NoSync:         opts.NoSync,
		// Map ahead so that a growing file is rarely remapped (a remap
		// waits for every reader); untouched pages cost no memory.
		InitialMmapSize: 64 << 20,
	})
	if err != nil {
		switch {
		case errors.Is(err, bolterrors.ErrTimeout):
			return nil, fmt.Errorf("store: %s is locked by another process (is another orch server running with this data dir?)", path)
		case errors.Is(err, bolterrors.ErrInvalid), errors.Is(err, bolterrors.ErrChecksum),
			errors.Is(err, bolterrors.ErrVersionMismatch):
			return nil, fmt.Errorf("store: %s is not a valid orch database (%v); it was left untouched: restore it from a backup or move it away", path, err)
		}
		return nil, fmt.Errorf("store: open %s: %w (the file was left untouched; if it is damaged, restore it from a backup or move it away)", path, err)
	}
	d = &DB{
		path: path, opts: opts, db: db,
		ops: make(chan *op, opts.MaxBatch), stop: make(chan struct{}), stopped: make(chan struct{}),
		overlay:  map[string]*entry{},
		watchers: map[*watcher]struct{}{},
	}
	d.published = sync.NewCond(d.mu.RLocker())
	d.history.maxEvents, d.history.maxBytes = opts.HistoryEvents, opts.HistoryBytes
	if err := d.init(); err != nil {
		db.Close()
		return nil, err
	}
	go d.commitLoop()
	return d, nil
}

// init checks the schema and integrity and loads the revision ceiling, or
// lays out a new file.
func (d *DB) init() error {
	var fresh bool
	err := d.db.View(func(tx *bbolt.Tx) error {
		meta := tx.Bucket(bucketMeta)
		if meta == nil {
			if tx.Bucket(bucketKV) != nil || !bucketsEmpty(tx) {
				return fmt.Errorf("store: %s has no orch metadata: it is not an orch database; it was left untouched", d.path)
			}
			fresh = true
			return nil
		}
		v := meta.Get(keySchema)
		schema, err := strconv.Atoi(string(v))
		if err != nil {
			return fmt.Errorf("store: %s has an unreadable schema version %q; it was left untouched", d.path, v)
		}
		if schema != SchemaVersion {
			return fmt.Errorf("store: %s has schema version %d, this orch understands only version %d; refusing to open it (it was left untouched)", d.path, schema, SchemaVersion)
		}
		c := meta.Get(keyCeiling)
		if len(c) != 8 {
			return fmt.Errorf("store: %s has a damaged revision record; it was left untouched", d.path)
		}
		d.ceiling = int64(binary.BigEndian.Uint64(c))
		if tx.Bucket(bucketKV) == nil {
			return fmt.Errorf("store: %s has no key bucket; it was left untouched", d.path)
		}
		// Read the checker's channel to the end: it keeps reading pages
		// until it is done, and the file must stay mapped until then.
		var first error
		for cerr := range tx.Check() {
			if first == nil {
				first = cerr
			}
		}
		if first != nil {
			return fmt.Errorf("store: %s is corrupt (%v); it was left untouched: restore it from a backup or move it away", d.path, first)
		}
		return nil
	})
	if err != nil {
		return err
	}
	if fresh {
		err = d.db.Update(func(tx *bbolt.Tx) error {
			meta, err := tx.CreateBucket(bucketMeta)
			if err != nil {
				return err
			}
			if _, err := tx.CreateBucket(bucketKV); err != nil {
				return err
			}
			if err := meta.Put(keySchema, []byte(strconv.Itoa(SchemaVersion))); err != nil {
				return err
			}
			return meta.Put(keyCeiling, encodeRev(0))
		})
		if err != nil {
			return fmt.Errorf("store: initialise %s: %w", d.path, err)
		}
	}
	// Everything handed out before is at or below the ceiling; history of
	// it is gone, so the current revision is also the compaction point.
	d.rev = d.ceiling
	d.compactRev = d.ceiling
	return nil
}

func bucketsEmpty(tx *bbolt.Tx) bool {
	empty := true
	_ = tx.ForEach(func([]byte, *bbolt.Bucket) error { empty = false; return nil })
	return empty
}

func encodeRev(rev int64) []byte {
	b := make([]byte, 8)
	binary.BigEndian.PutUint64(b, uint64(rev))
	return b
}

// encodeValue lays out a kv bucket value.
func encodeValue(createRev, modRev int64, value []byte) []byte {
	b := make([]byte, 16+len(value))
	binary.BigEndian.PutUint64(b, uint64(createRev))
	binary.BigEndian.PutUint64(b[8:], uint64(modRev))
	copy(b[16:], value)
	return b
}

// decodeValue reads a kv bucket value, copying it out of the memory map.
func decodeValue(b []byte) (*entry, error) {
	if len(b) < 16 {
		return nil, fmt.Errorf("store: damaged record of %d bytes", len(b))
	}
	return &entry{
		createRev: int64(binary.BigEndian.Uint64(b)),
		modRev:    int64(binary.BigEndian.Uint64(b[8:])),
		value:     bytes.Clone(b[16:]),
	}, nil
}

// Revision is the last published revision.
func (d *DB) Revision() int64 {
	d.mu.RLock()
	defer d.mu.RUnlock()
	return d.rev
}

// CompactRevision is the newest revision whose history is gone.
func (d *DB) CompactRevision() int64 {
	d.mu.RLock()
	defer d.mu.RUnlock()
	return d.compactRev
}

// Compact drops history at and below revision.
func (d *DB) Compact(ctx context.Context, revision int64) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if revision > d.rev {
		return store.ErrFutureRevision
	}
	if revision <= d.compactRev {
		return nil
	}
	d.compactRev = revision
	d.history.dropThrough(revision)
	return nil
}

// Close stops the committer (pending writes fail with store.ErrClosed),
// ends all watches, writes the volatile overlay to the file so a clean
// restart keeps it, and closes the file.
func (d *DB) Close() error {
	d.closeMu.Lock()
	if d.isClosed {
		d.closeMu.Unlock()
		return nil
	}
	d.isClosed = true
	close(d.stop)
	d.closeMu.Unlock()
	<-d.stopped

	d.mu.Lock()
	for w := range d.watchers {
		w.cut(store.ErrClosed)
	}
	d.watchers = nil
	overlay := d.overlay
	d.overlay = map[string]*entry{}
	rev := d.rev
	d.mu.Unlock()

	flushErr := d.db.Update(func(tx *bbolt.Tx) error {
		kv := tx.Bucket(bucketKV)
		for k, e := range overlay {
			if err := kv.Put([]byte(k), encodeValue(e.createRev, e.modRev, e.value)); err != nil {
				return err
			}
		}
		// A clean stop needs no reserved gap: continue right after rev.
		return tx.Bucket(bucketMeta).Put(keyCeiling, encodeRev(rev))
	})
	if err := d.db.Close(); err != nil {
		return fmt.Errorf("store: close %s: %w", d.path, err)
	}
	if flushErr != nil {
		return fmt.Errorf("store: write volatile values to %s: %w", d.path, flushErr)
	}
	return nil
}

func (d *DB) closed() bool {
	d.closeMu.Lock()
	defer d.closeMu.Unlock()
	return d.isClosed
}
