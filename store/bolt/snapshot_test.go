package bolt

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	bbolt "go.etcd.io/bbolt"

	"github.com/orch-dev/orch/store"
)

func snapOpen(t *testing.T, path string) *DB {
	t.Helper()
	d, err := Open(path, Options{NoSync: true, LockTimeout: 100 * time.Millisecond})
	if err != nil {
		t.Fatalf("open %s: %v", path, err)
	}
	return d
}

func TestSnapshotIsConsistentAndOnline(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	d := snapOpen(t, filepath.Join(dir, "state.db"))
	defer d.Close()
	for i := range 50 {
		if _, err := d.Create(ctx, fmt.Sprintf("/registry/configmaps/default/cm%02d", i), []byte("v"), store.WriteOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := d.Create(ctx, "/registry/leases/kube-node-lease/n1", []byte("lease"), store.WriteOptions{Volatile: true}); err != nil {
		t.Fatal(err)
	}
	durableRev := d.Revision()

	// Writers keep going while the snapshot is taken.
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			if _, err := d.Create(ctx, fmt.Sprintf("/registry/pods/default/p%d", i), []byte("p"), store.WriteOptions{}); err != nil {
				t.Errorf("write during snapshot: %v", err)
				return
			}
		}
	}()
	var buf bytes.Buffer
	n, err := d.Snapshot(&buf)
	close(stop)
	wg.Wait()
	if err != nil {
		t.Fatalf("Snapshot: %v", err)
	}
	if n != int64(buf.Len()) {
		t.Errorf("Snapshot returned %d, wrote %d bytes", n, buf.Len())
	}

	snap := filepath.Join(dir, "snap.db")
	if err := os.WriteFile(snap, buf.Bytes(), 0o600); err != nil {
		t.Fatal(err)
	}
	info, err := Inspect(snap)
	if err != nil {
		t.Fatalf("Inspect(snapshot): %v", err)
	}
	if info.Schema != SchemaVersion || info.Revision < durableRev || info.Keys < 50 {
		t.Errorf("Inspect(snapshot) = %+v, want schema %d, revision >= %d, >= 50 keys", info, SchemaVersion, durableRev)
	}

	r := snapOpen(t, snap)
	defer r.Close()
	for i := range 50 {
		if _, err := r.Get(ctx, fmt.Sprintf("/registry/configmaps/default/cm%02d", i)); err != nil {
			t.Errorf("snapshot lost cm%02d: %v", i, err)
		}
	}
	if _, err := r.Get(ctx, "/registry/leases/kube-node-lease/n1"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("volatile value in snapshot: Get = %v, want ErrNotFound", err)
	}
	if r.Revision() < durableRev {
		t.Errorf("snapshot starts at revision %d, below %d", r.Revision(), durableRev)
	}
}

func TestSnapshotClosed(t *testing.T) {
	d := snapOpen(t, filepath.Join(t.TempDir(), "state.db"))
	d.Close()
	if _, err := d.Snapshot(&bytes.Buffer{}); !errors.Is(err, store.ErrClosed) {
		t.Errorf("Snapshot after Close = %v, want ErrClosed", err)
	}
}

func TestOfflineHelpersRespectTheServerLock(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "state.db")
	d := snapOpen(t, path)
	if _, err := d.Create(ctx, "/k", []byte("v"), store.WriteOptions{}); err != nil {
		t.Fatal(err)
	}

	if _, err := SnapshotFile(path, &bytes.Buffer{}); !errors.Is(err, ErrLocked) {
		t.Errorf("SnapshotFile while open = %v, want ErrLocked", err)
	}
	if _, err := Inspect(path); !errors.Is(err, ErrLocked) {
		t.Errorf("Inspect while open = %v, want ErrLocked", err)
	}
	if _, err := LockFile(path); !errors.Is(err, ErrLocked) {
		t.Errorf("LockFile while open = %v, want ErrLocked", err)
	}
	if err := d.Close(); err != nil {
		t.Fatal(err)
	}

	var buf bytes.Buffer
	if n, err := SnapshotFile(path, &buf); err != nil || n == 0 {
		t.Fatalf("SnapshotFile after close = %d, %v", n, err)
	}
	release, err := LockFile(path)
	if err != nil {
		t.Fatalf("LockFile after close: %v", err)
	}
	if _, err := Open(path, Options{LockTimeout: 100 * time.Millisecond}); err == nil || !strings.Contains(err.Error(), "locked") {
		t.Errorf("Open while LockFile holds the lock = %v, want a lock error", err)
	}
	if err := release(); err != nil {
		t.Fatal(err)
	}
	snapOpen(t, path).Close()

	if release, err := LockFile(filepath.Join(t.TempDir(), "missing.db")); err != nil {
		t.Errorf("LockFile(missing) = %v, want nil", err)
	} else {
		release()
	}
}

func TestInspectRejects(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "good.db")
	d := snapOpen(t, good)
	if _, err := d.Create(context.Background(), "/k", bytes.Repeat([]byte("x"), 10000), store.WriteOptions{}); err != nil {
		t.Fatal(err)
	}
	d.Close()
	// A snapshot is exactly as long as its pages, unlike the live file,
	// which bbolt grows ahead.
	var snap bytes.Buffer
	if _, err := SnapshotFile(good, &snap); err != nil {
		t.Fatal(err)
	}
	goodBytes := snap.Bytes()

	rawBolt := func(fill func(tx *bbolt.Tx) error) func(string) error {
		return func(path string) error {
			db, err := bbolt.Open(path, 0o600, nil)
			if err != nil {
				return err
			}
			if err := db.Update(fill); err != nil {
				return err
			}
			return db.Close()
		}
	}
	tests := []struct {
		name string
		make func(path string) error
		want string
	}{
		{"empty file", func(p string) error { return os.WriteFile(p, nil, 0o600) }, "empty"},
		{"text file", func(p string) error {
			return os.WriteFile(p, bytes.Repeat([]byte("not a database\n"), 1000), 0o600)
		}, "not a valid orch database"},
		{"truncated", func(p string) error { return os.WriteFile(p, goodBytes[:len(goodBytes)*2/3], 0o600) }, "truncated"},
		{"directory", func(p string) error { return os.Mkdir(p, 0o700) }, "not a regular file"},
		{"missing", func(string) error { return nil }, "no such file"},
		{"foreign bolt file", rawBolt(func(tx *bbolt.Tx) error {
			_, err := tx.CreateBucket([]byte("other"))
			return err
		}), "not an orch database"},
		{"newer schema", rawBolt(func(tx *bbolt.Tx) error {
			m, err := tx.CreateBucket(bucketMeta)
			if err != nil {
				return err
			}
			if _, err := tx.CreateBucket(bucketKV); err != nil {
				return err
			}
			m.Put(keyCeiling, encodeRev(1))
			return m.Put(keySchema, []byte("2"))
		}), "schema version 2"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p := filepath.Join(t.TempDir(), "x.db")
			if err := tc.make(p); err != nil {
				t.Fatal(err)
			}
			_, err := Inspect(p)
			if err == nil {
				t.Fatal("Inspect accepted it")
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("Inspect = %v, want it to mention %q", err, tc.want)
			}
			if _, err := SnapshotFile(p, &bytes.Buffer{}); err == nil {
				t.Error("SnapshotFile copied it")
			}
		})
	}
}

func TestRaiseRevision(t *testing.T) {
	path := filepath.Join(t.TempDir(), "state.db")
	d := snapOpen(t, path)
	if _, err := d.Create(context.Background(), "/k", []byte("v"), store.WriteOptions{}); err != nil {
		t.Fatal(err)
	}
	d.Close()
	before, err := Inspect(path)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		raise, want int64
	}{
		{raise: before.Revision + 5000, want: before.Revision + 5000},
		{raise: 1, want: before.Revision + 5000}, // never lowered
	} {
		if err := RaiseRevision(path, tc.raise); err != nil {
			t.Fatalf("RaiseRevision(%d): %v", tc.raise, err)
		}
		r := snapOpen(t, path)
		got := r.Revision()
		r.Close()
		if got != tc.want {
			t.Errorf("after RaiseRevision(%d) the store starts at %d, want %d", tc.raise, got, tc.want)
		}
	}
	if err := RaiseRevision(filepath.Join(t.TempDir(), "missing.db"), 1); err == nil {
		t.Error("RaiseRevision(missing) created a file")
	}
}
