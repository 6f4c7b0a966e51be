package bolt

import (
	"context"
	"fmt"
	"testing"
	"unsafe"

	"github.com/orch-dev/orch/store"
)

// sameBytes reports whether a and b are the same memory, not just equal.
func sameBytes(a, b []byte) bool {
	return len(a) > 0 && len(a) == len(b) && unsafe.SliceData(a) == unsafe.SliceData(b)
}

// TestHistorySharesPreviousValues checks that an update's PrevKV is the
// previous event's value itself while that event is in the ring, and that
// writes stay correct once it has left the ring (the value then comes
// from the file), after a delete, and after Compact.
func TestHistorySharesPreviousValues(t *testing.T) {
	d, _ := openTest(t, Options{HistoryEvents: 4})
	ctx := context.Background()
	w, err := d.Watch(ctx, "/k/", 0)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Stop()
	next := func() store.Event {
		t.Helper()
		ev, ok := <-w.Events()
		if !ok {
			t.Fatalf("watch ended: %v", w.Err())
		}
		return ev
	}

	kv, err := d.Create(ctx, "/k/a", []byte("v1"), store.WriteOptions{})
	if err != nil {
		t.Fatal(err)
	}
	created := next()
	if _, err := d.Update(ctx, "/k/a", []byte("v2"), kv.ModRevision, store.WriteOptions{}); err != nil {
		t.Fatal(err)
	}
	updated := next()
	if string(updated.PrevKV.Value) != "v1" || !sameBytes(updated.PrevKV.Value, created.KV.Value) {
		t.Errorf("PrevKV %q does not share the previous event's value %q", updated.PrevKV.Value, created.KV.Value)
	}
	if updated.PrevKV.CreateRevision != created.KV.CreateRevision || updated.PrevKV.ModRevision != created.KV.ModRevision {
		t.Errorf("PrevKV revisions %d/%d, want %d/%d", updated.PrevKV.CreateRevision, updated.PrevKV.ModRevision,
			created.KV.CreateRevision, created.KV.ModRevision)
	}

	// Push /k/a's last event out of the ring of 4: its next update reads
	// the file, with the same result.
	for i := 0; i < 4; i++ {
		if _, err := d.Create(ctx, fmt.Sprintf("/k/other-%d", i), []byte("x"), store.WriteOptions{}); err != nil {
			t.Fatal(err)
		}
		next()
	}
	if _, ok := d.history.current("/k/a"); ok {
		t.Fatal("an evicted event is still the key's current entry")
	}
	if _, err := d.Update(ctx, "/k/a", []byte("v3"), updated.KV.ModRevision, store.WriteOptions{}); err != nil {
		t.Fatal(err)
	}
	fromFile := next()
	if string(fromFile.PrevKV.Value) != "v2" || fromFile.PrevKV.ModRevision != updated.KV.ModRevision ||
		fromFile.PrevKV.CreateRevision != created.KV.CreateRevision || sameBytes(fromFile.PrevKV.Value, updated.KV.Value) {
		t.Errorf("PrevKV after eviction = %+v", fromFile.PrevKV)
	}
	// A stale precondition is still a conflict when the entry comes from
	// the ring.
	if _, err := d.Update(ctx, "/k/a", []byte("v4"), updated.KV.ModRevision, store.WriteOptions{}); err != store.ErrConflict {
		t.Errorf("update with a stale revision: %v, want ErrConflict", err)
	}

	// A deleted key is gone, whatever the ring held.
	if _, err := d.Delete(ctx, "/k/a", 0); err != nil {
		t.Fatal(err)
	}
	next()
	if _, err := d.Update(ctx, "/k/a", []byte("v5"), fromFile.KV.ModRevision, store.WriteOptions{}); err != store.ErrNotFound {
		t.Errorf("update of a deleted key: %v, want ErrNotFound", err)
	}
	kv, err = d.Create(ctx, "/k/a", []byte("new"), store.WriteOptions{})
	if err != nil {
		t.Fatalf("create after delete: %v", err)
	}
	recreated := next()
	if recreated.PrevKV != nil || recreated.KV.CreateRevision != kv.ModRevision {
		t.Errorf("recreated key: PrevKV %+v, create revision %d, want none and %d", recreated.PrevKV, recreated.KV.CreateRevision, kv.ModRevision)
	}

	// Compact drops the ring's entry too.
	if err := d.Compact(ctx, kv.ModRevision); err != nil {
		t.Fatal(err)
	}
	if _, ok := d.history.current("/k/a"); ok {
		t.Fatal("a compacted event is still the key's current entry")
	}
	if _, err := d.Update(ctx, "/k/a", []byte("newer"), kv.ModRevision, store.WriteOptions{}); err != nil {
		t.Fatal(err)
	}
	if ev := next(); string(ev.PrevKV.Value) != "new" {
		t.Errorf("PrevKV after Compact = %q, want \"new\"", ev.PrevKV.Value)
	}
	got, err := d.Get(ctx, "/k/a")
	if err != nil || string(got.Value) != "newer" {
		t.Fatalf("Get = %v, %v", got, err)
	}
}
