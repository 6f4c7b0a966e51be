// Package encrypt encrypts chosen values of a store.Store at rest: a
// decorator that seals the values of keys under given prefixes (the
// Secrets) with AES-GCM on the way in and opens them on the way out, so
// the API server and the registry see plain objects and the database file
// holds only ciphertext. Values are framed as kube-apiserver's aesgcm
// provider frames them ("k8s:enc:aesgcm:v1:<key name>:" + nonce +
// ciphertext), with the store key as additional data. Plain-text values
// (written before encryption was turned on) are read as they are.
//
// It owns the key file format (keys.go) and re-encryption (Rewrite); it
// does not decide which resources are secret (the caller passes prefixes)
// and does not change revisions, watch semantics or errors of the store.
package encrypt

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"

	"github.com/orch-dev/orch/store"
)

// Store encrypts the values under its prefixes in an inner store.
type Store struct {
	store.Store
	keys     *Keyring
	prefixes []string
}

var _ store.Store = (*Store)(nil)

// New returns inner with the values of keys under prefixes encrypted by
// keys. Closing the Store closes inner.
func New(inner store.Store, keys *Keyring, prefixes ...string) *Store {
	return &Store{Store: inner, keys: keys, prefixes: prefixes}
}

// Unwrap returns the inner store (for snapshots, metrics and compaction,
// which work on raw bytes).
func (s *Store) Unwrap() store.Store { return s.Store }

func (s *Store) covers(key string) bool {
	for _, p := range s.prefixes {
		if strings.HasPrefix(key, p) {
			return true
		}
	}
	return false
}

// overlaps reports whether a listing or watch of prefix may see covered
// keys.
func (s *Store) overlaps(prefix string) bool {
	for _, p := range s.prefixes {
		if strings.HasPrefix(p, prefix) || strings.HasPrefix(prefix, p) {
			return true
		}
	}
	return false
}

func (s *Store) open(kv *store.KeyValue) error {
	if kv == nil || !s.covers(kv.Key) {
		return nil
	}
	plain, err := s.keys.decrypt(kv.Key, kv.Value)
	if err != nil {
		return err
	}
	kv.Value = plain
	return nil
}

func (s *Store) Get(ctx context.Context, key string) (*store.KeyValue, error) {
	kv, err := s.Store.Get(ctx, key)
	if err != nil {
		return nil, err
	}
	if err := s.open(kv); err != nil {
		return nil, err
	}
	return kv, nil
}

func (s *Store) List(ctx context.Context, prefix string, opts store.ListOptions) (*store.ListResult, error) {
	res, err := s.Store.List(ctx, prefix, opts)
	if err != nil || !s.overlaps(prefix) {
		return res, err
	}
	for i := range res.KVs {
		if err := s.open(&res.KVs[i]); err != nil {
			return nil, err
		}
	}
	return res, nil
}

// write seals value for key when covered; the returned KeyValue carries
// the plain value again, as callers answer with it.
func (s *Store) write(key string, value []byte, do func([]byte) (*store.KeyValue, error)) (*store.KeyValue, error) {
	if !s.covers(key) {
		return do(value)
	}
	sealed, err := s.keys.encrypt(key, value)
	if err != nil {
		return nil, err
	}
	kv, err := do(sealed)
	if err != nil {
		return nil, err
	}
	kv.Value = value
	return kv, nil
}

func (s *Store) Create(ctx context.Context, key string, value []byte, opts store.WriteOptions) (*store.KeyValue, error) {
	return s.write(key, value, func(v []byte) (*store.KeyValue, error) { return s.Store.Create(ctx, key, v, opts) })
}

func (s *Store) Update(ctx context.Context, key string, value []byte, modRevision int64, opts store.WriteOptions) (*store.KeyValue, error) {
	return s.write(key, value, func(v []byte) (*store.KeyValue, error) {
		return s.Store.Update(ctx, key, v, modRevision, opts)
	})
}

func (s *Store) Delete(ctx context.Context, key string, modRevision int64) (*store.KeyValue, error) {
	kv, err := s.Store.Delete(ctx, key, modRevision)
	if err != nil {
		return nil, err
	}
	if err := s.open(kv); err != nil {
		return nil, err
	}
	return kv, nil
}

// Watch opens the values of events under covered prefixes. Watches that
// cannot see covered keys are the inner store's own.
func (s *Store) Watch(ctx context.Context, prefix string, afterRevision int64) (store.Watcher, error) {
	w, err := s.Store.Watch(ctx, prefix, afterRevision)
	if err != nil || !s.overlaps(prefix) {
		return w, err
	}
	dw := &decryptingWatcher{inner: w, events: make(chan store.Event), done: make(chan struct{})}
	go dw.run(s)
	return dw, nil
}

// decryptingWatcher relays an inner watch, opening values. Its goroutine
// ends when the inner watch ends or Stop is called.
type decryptingWatcher struct {
	inner  store.Watcher
	events chan store.Event
	done   chan struct{}
	stop   sync.Once
	mu     sync.Mutex
	err    error
}

func (w *decryptingWatcher) run(s *Store) {
	defer close(w.events)
	for ev := range w.inner.Events() {
		err := s.open(&ev.KV)
		if err == nil && ev.PrevKV != nil {
			prev := *ev.PrevKV
			err = s.open(&prev)
			ev.PrevKV = &prev
		}
		if err != nil {
			// A value no key opens cannot be delivered: end the watch with
			// the reason rather than hand out ciphertext.
			w.mu.Lock()
			w.err = fmt.Errorf("watch: %w", err)
			w.mu.Unlock()
			w.inner.Stop()
			return
		}
		select {
		case w.events <- ev:
		case <-w.done:
			return
		}
	}
}

func (w *decryptingWatcher) Events() <-chan store.Event { return w.events }

func (w *decryptingWatcher) Err() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.err != nil {
		return w.err
	}
	return w.inner.Err()
}

func (w *decryptingWatcher) Stop() {
	w.stop.Do(func() { close(w.done) })
	w.inner.Stop()
}

// Rewrite re-encrypts every covered value with the keyring's current
// first key (or writes it as plain text when the keyring is plain text):
// after a rotation, values sealed with old keys are sealed anew. It
// returns how many values it rewrote. A value changed concurrently is
// read again.
func (s *Store) Rewrite(ctx context.Context) (int, error) {
	n := 0
	for _, prefix := range s.prefixes {
		start := ""
		for {
			res, err := s.Store.List(ctx, prefix, store.ListOptions{Limit: 500, Start: start})
			if err != nil {
				return n, fmt.Errorf("list %s: %w", prefix, err)
			}
			for _, raw := range res.KVs {
				if err := s.rewriteOne(ctx, raw); err != nil {
					return n, err
				}
				n++
			}
			if res.Continue == "" || len(res.KVs) == 0 {
				break
			}
			start = res.KVs[len(res.KVs)-1].Key + "\x00"
		}
	}
	return n, nil
}

func (s *Store) rewriteOne(ctx context.Context, raw store.KeyValue) error {
	for range 5 {
		kv := raw
		if err := s.open(&kv); err != nil {
			return err
		}
		_, err := s.Update(ctx, kv.Key, kv.Value, kv.ModRevision, store.WriteOptions{})
		if err == nil || errors.Is(err, store.ErrNotFound) {
			return nil
		}
		if !errors.Is(err, store.ErrConflict) {
			return fmt.Errorf("re-encrypt %s: %w", kv.Key, err)
		}
		fresh, err := s.Store.Get(ctx, kv.Key)
		if err != nil {
			if errors.Is(err, store.ErrNotFound) {
				return nil
			}
			return fmt.Errorf("re-encrypt %s: %w", kv.Key, err)
		}
		raw = *fresh
	}
	return fmt.Errorf("re-encrypt %s: it keeps changing", raw.Key)
}

// Snapshot writes a snapshot of the inner store, values still sealed, when
// the inner store can take one (scheduled snapshots keep working with
// encryption on).
func (s *Store) Snapshot(w io.Writer) (int64, error) {
	sn, ok := s.Store.(interface {
		Snapshot(w io.Writer) (int64, error)
	})
	if !ok {
		return 0, errors.New("encrypt: the inner store cannot take snapshots")
	}
	return sn.Snapshot(w)
}
