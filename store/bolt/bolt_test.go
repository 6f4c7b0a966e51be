package bolt

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"sync"
	"testing"

	"github.com/orch-dev/orch/store"
)

func openTest(t *testing.T, opts Options) (*DB, string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "state.db")
	d, err := Open(path, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close() })
	return d, path
}

func TestWrites(t *testing.T) {
	ctx := context.Background()
	d, _ := openTest(t, Options{})
	a, err := d.Create(ctx, "/a", []byte("1"), store.WriteOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if a.CreateRevision != a.ModRevision || a.ModRevision != d.Revision() {
		t.Fatalf("create revisions = %+v, store at %d", a, d.Revision())
	}
	tests := []struct {
		name    string
		write   func() (*store.KeyValue, error)
		wantErr error
	}{
		{"create existing", func() (*store.KeyValue, error) {
			return d.Create(ctx, "/a", []byte("x"), store.WriteOptions{})
		}, store.ErrExists},
		{"update stale revision", func() (*store.KeyValue, error) {
			return d.Update(ctx, "/a", []byte("x"), a.ModRevision-1, store.WriteOptions{})
		}, store.ErrConflict},
		{"update missing", func() (*store.KeyValue, error) {
			return d.Update(ctx, "/missing", []byte("x"), 1, store.WriteOptions{})
		}, store.ErrNotFound},
		{"delete stale revision", func() (*store.KeyValue, error) {
			return d.Delete(ctx, "/a", a.ModRevision+100)
		}, store.ErrConflict},
		{"delete missing", func() (*store.KeyValue, error) {
			return d.Delete(ctx, "/missing", 0)
		}, store.ErrNotFound},
		{"empty key", func() (*store.KeyValue, error) {
			return d.Create(ctx, "", []byte("x"), store.WriteOptions{})
		}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := d.Revision()
			_, err := tt.write()
			if tt.wantErr != nil && !errors.Is(err, tt.wantErr) || tt.wantErr == nil && err == nil {
				t.Fatalf("err = %v, want %v", err, tt.wantErr)
			}
			if d.Revision() != before {
				t.Fatalf("failed write moved the revision from %d to %d", before, d.Revision())
			}
		})
	}
	got, err := d.Get(ctx, "/a")
	if err != nil || string(got.Value) != "1" || got.ModRevision != a.ModRevision {
		t.Fatalf("after failed writes Get = %+v, %v", got, err)
	}

	u, err := d.Update(ctx, "/a", []byte("2"), a.ModRevision, store.WriteOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if u.CreateRevision != a.CreateRevision || u.ModRevision != a.ModRevision+1 {
		t.Fatalf("update revisions = %+v after %+v", u, a)
	}
	del, err := d.Delete(ctx, "/a", u.ModRevision)
	if err != nil {
		t.Fatal(err)
	}
	if string(del.Value) != "2" || del.ModRevision != u.ModRevision+1 {
		t.Fatalf("delete returned %+v", del)
	}
	if _, err := d.Get(ctx, "/a"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("Get after delete: %v", err)
	}
}

func TestListPagesAndRevisions(t *testing.T) {
	ctx := context.Background()
	d, _ := openTest(t, Options{})
	for i := 0; i < 10; i++ {
		if _, err := d.Create(ctx, fmt.Sprintf("/p/%02d", i), []byte{byte(i)}, store.WriteOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	d.Create(ctx, "/q/other", nil, store.WriteOptions{})
	at := d.Revision()
	// Changes after the first page must not show in later pages.
	first, err := d.List(ctx, "/p/", store.ListOptions{Limit: 4})
	if err != nil {
		t.Fatal(err)
	}
	if len(first.KVs) != 4 || first.RemainingCount != 6 || first.Continue == "" || first.Revision != at {
		t.Fatalf("first page: %d keys, remaining %d, continue %q, rev %d", len(first.KVs), first.RemainingCount, first.Continue, first.Revision)
	}
	if _, err := d.Delete(ctx, "/p/05", 0); err != nil {
		t.Fatal(err)
	}
	kv, _ := d.Get(ctx, "/p/06")
	d.Update(ctx, "/p/06", []byte("changed"), kv.ModRevision, store.WriteOptions{})
	d.Create(ctx, "/p/055", nil, store.WriteOptions{Volatile: true})

	var keys []string
	for _, kv := range first.KVs {
		keys = append(keys, kv.Key)
	}
	cont := first.Continue
	for cont != "" {
		page, err := d.List(ctx, "/p/", store.ListOptions{Limit: 4, Continue: cont})
		if err != nil {
			t.Fatal(err)
		}
		if page.Revision != at {
			t.Fatalf("page revision %d, want %d", page.Revision, at)
		}
		for _, kv := range page.KVs {
			keys = append(keys, kv.Key)
			if kv.Key == "/p/06" && string(kv.Value) != "\x06" {
				t.Fatalf("page shows a value newer than its revision: %q", kv.Value)
			}
		}
		cont = page.Continue
	}
	if fmt.Sprint(keys) != "[/p/00 /p/01 /p/02 /p/03 /p/04 /p/05 /p/06 /p/07 /p/08 /p/09]" {
		t.Fatalf("paged keys at %d = %v", at, keys)
	}

	now, err := d.List(ctx, "/p/", store.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if len(now.KVs) != 10 || now.KVs[5].Key != "/p/055" || now.KVs[6].Key != "/p/06" || string(now.KVs[6].Value) != "changed" {
		t.Fatalf("current list wrong: %v", now.KVs)
	}
	if n, _ := d.Count(ctx, "/p/"); n != 10 {
		t.Fatalf("Count = %d", n)
	}
	start, _ := d.List(ctx, "/p/", store.ListOptions{Start: "/p/07"})
	if len(start.KVs) != 3 {
		t.Fatalf("Start listing: %v", start.KVs)
	}

	for name, opts := range map[string]store.ListOptions{
		"garbage token":      {Continue: "!!"},
		"token of a prefix":  {Continue: encodeContinue(continueToken{Rev: at, Prefix: "/q/", Next: "/q/x"})},
		"start out of range": {Start: "/q/"},
	} {
		if _, err := d.List(ctx, "/p/", opts); !errors.Is(err, store.ErrInvalidContinue) {
			t.Errorf("%s: err = %v", name, err)
		}
	}
	if _, err := d.List(ctx, "/p/", store.ListOptions{Revision: d.Revision() + 1}); !errors.Is(err, store.ErrFutureRevision) {
		t.Errorf("future revision: %v", err)
	}
	if err := d.Compact(ctx, at); err != nil {
		t.Fatal(err)
	}
	if _, err := d.List(ctx, "/p/", store.ListOptions{Revision: at - 1}); !errors.Is(err, store.ErrCompacted) {
		t.Errorf("compacted revision: %v", err)
	}
	if _, err := d.List(ctx, "/p/", store.ListOptions{Limit: 4, Continue: first.Continue}); err != nil {
		t.Errorf("continue at the compaction point: %v", err)
	}
}

func TestWatchOrderUnderConcurrentWriters(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	d, _ := openTest(t, Options{})
	from := d.Revision()
	w, err := d.Watch(ctx, "/w/", from)
	if err != nil {
		t.Fatal(err)
	}
	const writers, each = 8, 50
	var wg sync.WaitGroup
	for i := 0; i < writers; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			key := fmt.Sprintf("/w/%d", i)
			kv, err := d.Create(ctx, key, []byte("0"), store.WriteOptions{Volatile: i%2 == 0})
			if err != nil {
				t.Error(err)
				return
			}
			for j := 1; j < each; j++ {
				if kv, err = d.Update(ctx, key, []byte(fmt.Sprint(j)), kv.ModRevision, store.WriteOptions{}); err != nil {
					t.Error(err)
					return
				}
			}
			d.Create(ctx, "/elsewhere/"+key, nil, store.WriteOptions{})
		}(i)
	}
	wg.Wait()
	last := from
	seen := map[string]int{}
	for n := 0; n < writers*each; n++ {
		ev := <-w.Events()
		if ev.KV.ModRevision <= last {
			t.Fatalf("event %d at revision %d after %d", n, ev.KV.ModRevision, last)
		}
		last = ev.KV.ModRevision
		if want := fmt.Sprint(seen[ev.KV.Key]); string(ev.KV.Value) != want {
			t.Fatalf("%s: got value %q, want %q", ev.KV.Key, ev.KV.Value, want)
		}
		seen[ev.KV.Key]++
	}
	// A second watch from the start replays the same history.
	w2, err := d.Watch(ctx, "/w/", from)
	if err != nil {
		t.Fatal(err)
	}
	if ev := <-w2.Events(); ev.Type != store.EventPut || ev.PrevKV != nil || ev.KV.ModRevision <= from {
		t.Fatalf("replayed first event %+v", ev)
	}
	w2.Stop()
	if _, ok := <-w2.Events(); ok {
		// drain: the channel closes soon after Stop
		for range w2.Events() {
		}
	}
	if w2.Err() != nil {
		t.Fatalf("stopped watch Err = %v", w2.Err())
	}
}

func TestWatchCompactedAndCut(t *testing.T) {
	ctx := context.Background()
	d, _ := openTest(t, Options{HistoryEvents: 5, WatchBacklog: 3})
	for i := 0; i < 10; i++ {
		d.Create(ctx, fmt.Sprintf("/k/%d", i), nil, store.WriteOptions{})
	}
	if _, err := d.Watch(ctx, "/k/", d.Revision()-8); !errors.Is(err, store.ErrCompacted) {
		t.Fatalf("watch beyond history: %v", err)
	}
	if _, err := d.Watch(ctx, "/k/", d.Revision()+1); !errors.Is(err, store.ErrFutureRevision) {
		t.Fatalf("watch in the future: %v", err)
	}
	w, err := d.Watch(ctx, "/k/", d.Revision())
	if err != nil {
		t.Fatal(err)
	}
	// Nobody reads: the consumer channel holds 16, the backlog 3.
	for i := 10; i < 40; i++ {
		d.Create(ctx, fmt.Sprintf("/k/%d", i), nil, store.WriteOptions{})
	}
	for range w.Events() {
	}
	if !errors.Is(w.Err(), store.ErrWatchCut) {
		t.Fatalf("slow watcher Err = %v", w.Err())
	}
}

func TestVolatile(t *testing.T) {
	ctx := context.Background()
	d, path := openTest(t, Options{ReserveBlock: 10})
	durable, _ := d.Create(ctx, "/lease/a", []byte("durable"), store.WriteOptions{})
	v, err := d.Update(ctx, "/lease/a", []byte("volatile"), durable.ModRevision, store.WriteOptions{Volatile: true})
	if err != nil {
		t.Fatal(err)
	}
	d.Create(ctx, "/lease/b", []byte("only in memory"), store.WriteOptions{Volatile: true})
	for i := 0; i < 25; i++ { // crosses two reservation blocks
		v, err = d.Update(ctx, "/lease/a", []byte(fmt.Sprint("volatile", i)), v.ModRevision, store.WriteOptions{Volatile: true})
		if err != nil {
			t.Fatal(err)
		}
	}
	if got, _ := d.Get(ctx, "/lease/a"); string(got.Value) != "volatile24" {
		t.Fatalf("Get = %q", got.Value)
	}
	if l, _ := d.List(ctx, "/lease/", store.ListOptions{}); len(l.KVs) != 2 {
		t.Fatalf("List = %v", l.KVs)
	}
	last := d.Revision()

	// Crash: the file is closed without the clean-close flush.
	crash(t, d)
	d2, err := Open(path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer d2.Close()
	if got, _ := d2.Get(ctx, "/lease/a"); string(got.Value) != "durable" {
		t.Fatalf("after a crash Get = %q, want the durable value", got.Value)
	}
	if _, err := d2.Get(ctx, "/lease/b"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("volatile-only key survived a crash: %v", err)
	}
	if d2.Revision() < last {
		t.Fatalf("revision went back from %d to %d across a crash", last, d2.Revision())
	}
	next, _ := d2.Create(ctx, "/x", nil, store.WriteOptions{})
	if next.ModRevision <= last {
		t.Fatalf("revision %d handed out again after a crash (last was %d)", next.ModRevision, last)
	}
}

// crash closes the file the way a killed process leaves it: no flush.
func crash(t *testing.T, d *DB) {
	t.Helper()
	d.closeMu.Lock()
	d.isClosed = true
	close(d.stop)
	d.closeMu.Unlock()
	<-d.stopped
	if err := d.db.Close(); err != nil {
		t.Fatal(err)
	}
}

func TestReopenKeepsDataAndVolatileOnCleanClose(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "state.db")
	d, err := Open(path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	d.Create(ctx, "/a", []byte("a"), store.WriteOptions{})
	d.Create(ctx, "/v", []byte("v"), store.WriteOptions{Volatile: true})
	last := d.Revision()
	if err := d.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := d.Get(ctx, "/a"); !errors.Is(err, store.ErrClosed) {
		t.Fatalf("Get after Close: %v", err)
	}
	if _, err := d.Create(ctx, "/b", nil, store.WriteOptions{}); !errors.Is(err, store.ErrClosed) {
		t.Fatalf("Create after Close: %v", err)
	}
	d, err = Open(path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	if d.Revision() != last || d.CompactRevision() != last {
		t.Fatalf("reopened at %d (compacted %d), want %d", d.Revision(), d.CompactRevision(), last)
	}
	for _, k := range []string{"/a", "/v"} {
		if _, err := d.Get(ctx, k); err != nil {
			t.Fatalf("%s after reopen: %v", k, err)
		}
	}
	if _, err := d.Watch(ctx, "/", last-1); !errors.Is(err, store.ErrCompacted) {
		t.Fatalf("watch from before the restart: %v", err)
	}
}
