package bolt

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"syscall"
	"time"

	bbolt "go.etcd.io/bbolt"
	bolterrors "go.etcd.io/bbolt/errors"

	"github.com/orch-dev/orch/store"
)

// Snapshots
//
// A snapshot is a byte-for-byte copy of the database file as of one bbolt
// read transaction: consistent, taken while writers go on, and itself a
// database this package opens. It holds what is on disk, so volatile values
// (store.WriteOptions.Volatile, kept in the in-memory overlay) are not in
// it: they would not survive a crash either, and their owners (node
// heartbeats, leases) rewrite them within seconds.

// ErrLocked means another process (normally a running orch server) holds
// the database file.
var ErrLocked = errors.New("store: the database file is locked by another process")

// lockProbe is how long the offline helpers wait for a file lock. They run
// from the CLI next to a possibly running server: a short wait, then a clear
// answer, is better than the server's patient LockTimeout.
const lockProbe = 200 * time.Millisecond

// Snapshot writes a consistent copy of the database file to w and returns
// the number of bytes written. It runs concurrently with writes; the copy
// does not include volatile values (see the package documentation).
func (d *DB) Snapshot(w io.Writer) (int64, error) {
	if d.closed() {
		return 0, store.ErrClosed
	}
	var n int64
	err := d.db.View(func(tx *bbolt.Tx) error {
		var err error
		n, err = tx.WriteTo(w)
		return err
	})
	if err != nil {
		return n, fmt.Errorf("store: snapshot %s: %w", d.path, err)
	}
	return n, nil
}

// FileInfo describes a database file checked by Inspect.
type FileInfo struct {
	Schema int
	// Revision is the file's revision ceiling: a server opening the file
	// starts at this revision.
	Revision int64
	// Keys is the number of stored keys.
	Keys int
}

// Inspect opens the database file at path read-only and checks that it is
// a complete, consistent orch database of this schema version. It returns
// ErrLocked (wrapped) if a running server holds the file.
func Inspect(path string) (FileInfo, error) {
	var info FileInfo
	err := viewFile(path, func(tx *bbolt.Tx) error {
		var err error
		info, err = inspectTx(path, tx)
		return err
	})
	return info, err
}

// SnapshotFile writes a consistent copy of the database file at path to w
// without a running server: it takes the file's shared lock and returns
// ErrLocked (wrapped) if a server holds it. The file is checked first, so a
// damaged or foreign file is not copied.
func SnapshotFile(path string, w io.Writer) (int64, error) {
	var n int64
	err := viewFile(path, func(tx *bbolt.Tx) error {
		if _, err := inspectTx(path, tx); err != nil {
			return err
		}
		var err error
		n, err = tx.WriteTo(w)
		if err != nil {
			return fmt.Errorf("store: copy %s: %w", path, err)
		}
		return nil
	})
	return n, err
}

// RaiseRevision makes the database file at path start at revision rev or
// later. A restore calls it on the snapshot with the revision of the
// database it replaces, so that revisions never go backwards for clients
// that saw the newer state: their watches and caches get "compacted" and
// relist instead of silently missing changes (etcdutl's --bump-revision).
func RaiseRevision(path string, rev int64) error {
	if _, err := os.Stat(path); err != nil {
		return fmt.Errorf("store: %w", err)
	}
	db, err := openFile(path, false)
	if err != nil {
		return err
	}
	err = db.Update(func(tx *bbolt.Tx) error {
		if _, err := inspectTx(path, tx); err != nil {
			return err
		}
		meta := tx.Bucket(bucketMeta)
		if int64(binary.BigEndian.Uint64(meta.Get(keyCeiling))) >= rev {
			return nil
		}
		return meta.Put(keyCeiling, encodeRev(rev))
	})
	if cerr := db.Close(); err == nil && cerr != nil {
		err = fmt.Errorf("store: close %s: %w", path, cerr)
	}
	return err
}

// LockFile takes the exclusive lock a server takes on the database file at
// path and holds it until release is called, so that no server opens the
// file while it is being replaced. It returns ErrLocked (wrapped) if a
// server holds the file. A missing file needs no lock.
func LockFile(path string) (release func() error, err error) {
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if errors.Is(err, os.ErrNotExist) {
		return func() error { return nil }, nil
	}
	if err != nil {
		return nil, fmt.Errorf("store: open %s: %w", path, err)
	}
	// bbolt locks with flock(2) on Linux; the same call conflicts with it.
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, fmt.Errorf("%w: %s", ErrLocked, path)
		}
		return nil, fmt.Errorf("store: lock %s: %w", path, err)
	}
	return f.Close, nil
}

// viewFile runs fn in a read transaction on the file at path, holding its
// shared lock.
func viewFile(path string, fn func(*bbolt.Tx) error) (err error) {
	st, err := os.Stat(path)
	if err != nil {
		return fmt.Errorf("store: %w", err)
	}
	if !st.Mode().IsRegular() || st.Size() == 0 {
		return fmt.Errorf("store: %s is not an orch database (empty or not a regular file)", path)
	}
	db, err := openFile(path, true)
	if err != nil {
		return err
	}
	defer db.Close()
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("store: %s is corrupt (%v)", path, r)
		}
	}()
	return db.View(fn)
}

// openFile opens path with bbolt without starting a DB (no committer, no
// overlay), failing fast if the lock is taken.
func openFile(path string, readOnly bool) (db *bbolt.DB, err error) {
	// bbolt panics on some damage it finds while reading pages.
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("store: %s is corrupt (%v)", path, r)
		}
	}()
	db, err = bbolt.Open(path, 0o600, &bbolt.Options{ReadOnly: readOnly, Timeout: lockProbe})
	switch {
	case err == nil:
		return db, nil
	case errors.Is(err, bolterrors.ErrTimeout):
		return nil, fmt.Errorf("%w: %s", ErrLocked, path)
	case errors.Is(err, bolterrors.ErrInvalid), errors.Is(err, bolterrors.ErrChecksum),
		errors.Is(err, bolterrors.ErrVersionMismatch):
		return nil, fmt.Errorf("store: %s is not a valid orch database: %w", path, err)
	}
	return nil, fmt.Errorf("store: open %s: %w", path, err)
}

// inspectTx checks the layout drawn in the package documentation and the
// integrity of every page.
func inspectTx(path string, tx *bbolt.Tx) (FileInfo, error) {
	var info FileInfo
	// A cut-off copy can still have intact meta pages; the pages they point
	// past the end are what is missing.
	if st, err := os.Stat(path); err == nil && st.Size() < tx.Size() {
		return info, fmt.Errorf("store: %s is truncated (%d bytes, its pages need %d)", path, st.Size(), tx.Size())
	}
	meta := tx.Bucket(bucketMeta)
	if meta == nil {
		return info, fmt.Errorf("store: %s has no orch metadata: it is not an orch database", path)
	}
	v := meta.Get(keySchema)
	schema, err := strconv.Atoi(string(v))
	if err != nil {
		return info, fmt.Errorf("store: %s has an unreadable schema version %q", path, v)
	}
	if schema != SchemaVersion {
		return info, fmt.Errorf("store: %s has schema version %d, this orch understands only version %d", path, schema, SchemaVersion)
	}
	c := meta.Get(keyCeiling)
	if len(c) != 8 {
		return info, fmt.Errorf("store: %s has a damaged revision record", path)
	}
	kv := tx.Bucket(bucketKV)
	if kv == nil {
		return info, fmt.Errorf("store: %s has no key bucket", path)
	}
	// Drain the checker: it reads pages in its own goroutine, which must be
	// done before the transaction ends and the file is unmapped.
	var corrupt error
	for cerr := range tx.Check() {
		if corrupt == nil {
			corrupt = cerr
		}
	}
	if corrupt != nil {
		return info, fmt.Errorf("store: %s is corrupt: %w", path, corrupt)
	}
	info.Schema = schema
	info.Revision = int64(binary.BigEndian.Uint64(c))
	info.Keys = kv.Stats().KeyN
	return info, nil
}
