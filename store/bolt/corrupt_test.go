package bolt

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	bbolt "go.etcd.io/bbolt"

	"github.com/orch-dev/orch/store"
)

// writeDB makes a real database file with some keys and returns its path.
func writeDB(t *testing.T) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "state.db")
	d, err := Open(path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 200; i++ {
		if _, err := d.Create(context.Background(), "/k/"+strings.Repeat("x", i), bytes.Repeat([]byte("v"), 900), store.WriteOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	if err := d.Close(); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestDamagedFilesAreRefusedUntouched(t *testing.T) {
	tests := []struct {
		name    string
		damage  func(t *testing.T, path string)
		wantErr string
	}{
		{"truncated", func(t *testing.T, path string) {
			if err := os.Truncate(path, 5000); err != nil {
				t.Fatal(err)
			}
		}, "left untouched"},
		{"garbage", func(t *testing.T, path string) {
			os.WriteFile(path, bytes.Repeat([]byte("garbage!"), 4096), 0o600)
		}, "not a valid orch database"},
		{"overwritten pages", func(t *testing.T, path string) {
			f, _ := os.OpenFile(path, os.O_RDWR, 0)
			defer f.Close()
			f.WriteAt(bytes.Repeat([]byte{0xff}, 3*4096), 2*4096)
		}, "left untouched"},
		{"newer schema", func(t *testing.T, path string) {
			db, err := bbolt.Open(path, 0o600, nil)
			if err != nil {
				t.Fatal(err)
			}
			db.Update(func(tx *bbolt.Tx) error { return tx.Bucket(bucketMeta).Put(keySchema, []byte("2")) })
			db.Close()
		}, "schema version 2"},
		{"another program's bolt file", func(t *testing.T, path string) {
			os.Remove(path)
			db, _ := bbolt.Open(path, 0o600, nil)
			db.Update(func(tx *bbolt.Tx) error { _, err := tx.CreateBucket([]byte("foreign")); return err })
			db.Close()
		}, "not an orch database"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := writeDB(t)
			tt.damage(t, path)
			before, _ := os.ReadFile(path)
			d, err := Open(path, Options{LockTimeout: time.Second})
			if err == nil {
				d.Close()
				t.Fatal("damaged file opened without error")
			}
			if !strings.Contains(err.Error(), tt.wantErr) || !strings.Contains(err.Error(), path) {
				t.Fatalf("error %q does not say %q and name the file", err, tt.wantErr)
			}
			after, _ := os.ReadFile(path)
			if !bytes.Equal(before, after) {
				t.Fatal("the damaged file was modified")
			}
		})
	}
}

func TestSecondOpenIsRefusedWhileLocked(t *testing.T) {
	d, path := openTest(t, Options{})
	_ = d
	_, err := Open(path, Options{LockTimeout: 100 * time.Millisecond})
	if err == nil || !strings.Contains(err.Error(), "locked by another process") {
		t.Fatalf("second open: %v", err)
	}
}
