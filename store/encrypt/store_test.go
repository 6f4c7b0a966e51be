package encrypt

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/orch-dev/orch/store"
	"github.com/orch-dev/orch/store/bolt"
)

const secretsPrefix = "/registry/core/secrets/"

func openBolt(t *testing.T, path string) *bolt.DB {
	t.Helper()
	db, err := bolt.Open(path, bolt.Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	return db
}

func newKeyring(t *testing.T, dir string) (*Keyring, string) {
	t.Helper()
	path := filepath.Join(dir, "cred", "encryption-config.json")
	kr, err := LoadKeyring(path, true)
	if err != nil {
		t.Fatal(err)
	}
	return kr, path
}

func TestKeyFile(t *testing.T) {
	dir := t.TempDir()
	kr, path := newKeyring(t, dir)
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("key file mode %v, want 0600", fi.Mode().Perm())
	}
	if got := kr.KeyNames(); len(got) != 1 || got[0] != "key1" {
		t.Errorf("keys %v, want [key1]", got)
	}
	if err := kr.Rotate(); err != nil {
		t.Fatal(err)
	}
	if err := kr.Save(path); err != nil {
		t.Fatal(err)
	}
	again, err := LoadKeyring(path, false)
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(again.KeyNames(), ","); got != "key2,key1" {
		t.Errorf("after rotation keys %s, want key2,key1", got)
	}

	bad := []struct{ name, content, want string }{
		{"not json", "nope", "invalid character"},
		{"no key", `{"resources":[{"resources":["secrets"],"providers":[{"aesgcm":{"keys":[]}}]}]}`, "has no aesgcm key"},
		{"short key", `{"resources":[{"resources":["secrets"],"providers":[{"aesgcm":{"keys":[{"name":"k","secret":"AAAA"}]}}]}]}`, "invalid key size"},
		{"bad base64", `{"resources":[{"resources":["secrets"],"providers":[{"aesgcm":{"keys":[{"name":"k","secret":"!!"}]}}]}]}`, "illegal base64"},
	}
	for _, tt := range bad {
		t.Run(tt.name, func(t *testing.T) {
			p := filepath.Join(dir, tt.name)
			if err := os.WriteFile(p, []byte(tt.content), 0o600); err != nil {
				t.Fatal(err)
			}
			if _, err := LoadKeyring(p, false); err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error %v, want one containing %q", err, tt.want)
			}
		})
	}
	if _, err := LoadKeyring(filepath.Join(dir, "missing"), false); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("missing file without create: %v", err)
	}
}

func TestEncryptsSecretsOnly(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	dbPath := filepath.Join(dir, "state.db")
	db := openBolt(t, dbPath)
	kr, _ := newKeyring(t, dir)
	s := New(db, kr, secretsPrefix)

	plain := []byte(`{"kind":"Secret","data":{"password":"aHVudGVyMg=="},"stringData":"topsecret-marker"}`)
	secretKey := secretsPrefix + "default/db"
	kv, err := s.Create(ctx, secretKey, plain, store.WriteOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(kv.Value, plain) {
		t.Errorf("Create returned %q, want the plain value", kv.Value)
	}
	cmKey := "/registry/core/configmaps/default/cm"
	if _, err := s.Create(ctx, cmKey, []byte(`{"data":"visible-marker"}`), store.WriteOptions{}); err != nil {
		t.Fatal(err)
	}

	raw, err := db.Get(ctx, secretKey)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.HasPrefix(raw.Value, []byte("k8s:enc:aesgcm:v1:key1:")) || bytes.Contains(raw.Value, []byte("topsecret-marker")) {
		t.Errorf("stored value is not sealed: %q", raw.Value)
	}
	if raw, _ := db.Get(ctx, cmKey); !bytes.Contains(raw.Value, []byte("visible-marker")) {
		t.Errorf("config map was changed: %q", raw.Value)
	}

	got, err := s.Get(ctx, secretKey)
	if err != nil || !bytes.Equal(got.Value, plain) {
		t.Fatalf("Get = %q, %v", got.Value, err)
	}
	list, err := s.List(ctx, "/registry/", store.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for _, kv := range list.KVs {
		if bytes.HasPrefix(kv.Value, []byte("k8s:enc:")) {
			t.Errorf("List returned sealed %s", kv.Key)
		}
	}

	// The file itself never holds the plain text.
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	file, err := os.ReadFile(dbPath)
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(file, []byte("topsecret-marker")) || bytes.Contains(file, []byte("aHVudGVyMg==")) {
		t.Error("the database file holds the secret in plain text")
	}
	if !bytes.Contains(file, []byte("visible-marker")) {
		t.Error("the database file lacks the config map: is the check looking at the right file?")
	}
}

func TestReadsPlaintextAndOldKeys(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	db := openBolt(t, filepath.Join(dir, "state.db"))
	defer db.Close()
	// Written before encryption was on.
	if _, err := db.Create(ctx, secretsPrefix+"ns/old", []byte(`{"v":"old"}`), store.WriteOptions{}); err != nil {
		t.Fatal(err)
	}
	kr, path := newKeyring(t, dir)
	s := New(db, kr, secretsPrefix)
	if _, err := s.Create(ctx, secretsPrefix+"ns/k1", []byte(`{"v":"k1"}`), store.WriteOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := kr.Rotate(); err != nil {
		t.Fatal(err)
	}
	if err := kr.Save(path); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Create(ctx, secretsPrefix+"ns/k2", []byte(`{"v":"k2"}`), store.WriteOptions{}); err != nil {
		t.Fatal(err)
	}
	for name, want := range map[string]string{"old": `{"v":"old"}`, "k1": `{"v":"k1"}`, "k2": `{"v":"k2"}`} {
		kv, err := s.Get(ctx, secretsPrefix+"ns/"+name)
		if err != nil || string(kv.Value) != want {
			t.Errorf("Get %s = %q, %v; want %s", name, kv.Value, err, want)
		}
	}

	// Rewrite seals everything with key2, after which key1 is not needed.
	n, err := s.Rewrite(ctx)
	if err != nil || n != 3 {
		t.Fatalf("Rewrite = %d, %v; want 3", n, err)
	}
	list, err := db.List(ctx, secretsPrefix, store.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for _, kv := range list.KVs {
		if !bytes.HasPrefix(kv.Value, []byte("k8s:enc:aesgcm:v1:key2:")) {
			t.Errorf("%s after rewrite: %.30q", kv.Key, kv.Value)
		}
	}

	// A keyring without the key cannot read, and says why.
	other, _ := newKeyring(t, t.TempDir())
	if _, err := New(db, other, secretsPrefix).Get(ctx, secretsPrefix+"ns/k1"); !errors.Is(err, ErrUnknownKey) {
		t.Errorf("Get with a foreign keyring: %v, want ErrUnknownKey", err)
	}
	// A value moved to another key does not open (the key is authenticated).
	kv, _ := db.Get(ctx, secretsPrefix+"ns/k1")
	if _, err := db.Create(ctx, secretsPrefix+"ns/moved", kv.Value, store.WriteOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Get(ctx, secretsPrefix+"ns/moved"); err == nil {
		t.Error("a sealed value copied to another key was opened")
	}
}

func TestWatchAndDelete(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	dir := t.TempDir()
	db := openBolt(t, filepath.Join(dir, "state.db"))
	defer db.Close()
	kr, _ := newKeyring(t, dir)
	s := New(db, kr, secretsPrefix)

	w, err := s.Watch(ctx, "/registry/", db.Revision())
	if err != nil {
		t.Fatal(err)
	}
	defer w.Stop()
	key := secretsPrefix + "ns/s"
	kv, err := s.Create(ctx, key, []byte("v1"), store.WriteOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Update(ctx, key, []byte("v2"), kv.ModRevision, store.WriteOptions{}); err != nil {
		t.Fatal(err)
	}
	del, err := s.Delete(ctx, key, 0)
	if err != nil || string(del.Value) != "v2" {
		t.Fatalf("Delete = %q, %v", del.Value, err)
	}
	want := []struct {
		typ         store.EventType
		value, prev string
	}{
		{store.EventPut, "v1", ""}, {store.EventPut, "v2", "v1"}, {store.EventDelete, "v2", ""},
	}
	for i, wnt := range want {
		select {
		case ev, ok := <-w.Events():
			if !ok {
				t.Fatalf("watch ended early: %v", w.Err())
			}
			prev := ""
			if ev.PrevKV != nil && ev.Type == store.EventPut {
				prev = string(ev.PrevKV.Value)
			}
			if ev.Type != wnt.typ || string(ev.KV.Value) != wnt.value || prev != wnt.prev {
				t.Errorf("event %d: %v %q prev %q, want %v %q prev %q", i, ev.Type, ev.KV.Value, prev, wnt.typ, wnt.value, wnt.prev)
			}
		case <-ctx.Done():
			t.Fatal("no watch event")
		}
	}
	w.Stop()
	w.Stop()
}
