package server

import (
	"bytes"
	"context"
	"path/filepath"
	"strings"
	"testing"

	"github.com/orch-dev/orch/store"
	"github.com/orch-dev/orch/store/bolt"
)

// TestEncryptSecretsOnAndOff: turning encryption off keeps encrypted
// secrets readable and writes new ones in plain text; turning it on again
// encrypts again, with the same key file.
func TestEncryptSecretsOnAndOff(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	db, err := bolt.Open(filepath.Join(dir, "state.db"), bolt.Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()

	off, err := encryptSecrets(false, dir, db)
	if err != nil || off != store.Store(db) {
		t.Fatalf("without the flag and a key file the store is not wrapped: %T, %v", off, err)
	}
	status := func(wantEnabled bool, wantKeys string) {
		t.Helper()
		enabled, keys, err := EncryptionStatus(dir)
		if err != nil || enabled != wantEnabled || strings.Join(keys, ",") != wantKeys {
			t.Errorf("status = %v %v %v, want %v [%s]", enabled, keys, err, wantEnabled, wantKeys)
		}
	}
	status(false, "")
	on, err := encryptSecrets(true, dir, db)
	if err != nil {
		t.Fatal(err)
	}
	status(true, "key1")
	if _, err := on.Create(ctx, secretsPrefix+"ns/a", []byte("value-a"), store.WriteOptions{}); err != nil {
		t.Fatal(err)
	}
	off, err = encryptSecrets(false, dir, db)
	if err != nil {
		t.Fatal(err)
	}
	status(false, "key1")
	if kv, err := off.Get(ctx, secretsPrefix+"ns/a"); err != nil || string(kv.Value) != "value-a" {
		t.Errorf("encrypted secret with encryption off: %q %v", kv.Value, err)
	}
	if _, err := off.Create(ctx, secretsPrefix+"ns/b", []byte("value-b"), store.WriteOptions{}); err != nil {
		t.Fatal(err)
	}
	raw, _ := db.Get(ctx, secretsPrefix+"ns/b")
	if string(raw.Value) != "value-b" {
		t.Errorf("with encryption off, new secrets are stored as %q", raw.Value)
	}
	on, err = encryptSecrets(true, dir, db)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := on.Create(ctx, secretsPrefix+"ns/c", []byte("value-c"), store.WriteOptions{}); err != nil {
		t.Fatal(err)
	}
	raw, _ = db.Get(ctx, secretsPrefix+"ns/c")
	if !bytes.HasPrefix(raw.Value, []byte("k8s:enc:aesgcm:v1:key1:")) {
		t.Errorf("encryption on again: stored %q", raw.Value)
	}
	if _, _, err := RotateEncryptionKeys(ctx, t.TempDir()); err == nil || !strings.Contains(err.Error(), "secrets encryption is not set up") {
		t.Errorf("rotate without a key file: %v", err)
	}
}
