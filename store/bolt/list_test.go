package bolt

import (
	"bytes"
	"context"
	"fmt"
	"testing"

	"github.com/orch-dev/orch/store"
)

// TestListBufferPages reads a prefix page by page with a lent buffer and
// no counts, pinned to the first page's revision while keys change: the
// pages together are exactly the list at that revision, and every page's
// values are right although they reuse the previous page's memory.
func TestListBufferPages(t *testing.T) {
	ctx := context.Background()
	for _, tc := range []struct {
		name  string
		page  int64
		value int // bytes per value; past arenaBlock/4 values are cloned
	}{
		{"one key a page", 1, 10},
		{"small pages", 7, 100},
		{"page larger than the prefix", 1000, 100},
		{"large values", 5, 20 << 10},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d, _ := openTest(t, Options{})
			value := func(i, gen int) []byte {
				return append([]byte(fmt.Sprintf("%03d-%d-", i, gen)), bytes.Repeat([]byte{'x'}, tc.value)...)
			}
			for i := 0; i < 40; i++ {
				if _, err := d.Create(ctx, fmt.Sprintf("/p/%03d", i), value(i, 0), store.WriteOptions{Volatile: i%9 == 0}); err != nil {
					t.Fatal(err)
				}
			}
			want, err := d.List(ctx, "/p/", store.ListOptions{})
			if err != nil {
				t.Fatal(err)
			}
			buf := &store.ListBuffer{}
			opts := store.ListOptions{Limit: tc.page, SkipCount: true, Buffer: buf}
			var got []store.KeyValue
			for n := 0; ; n++ {
				page, err := d.List(ctx, "/p/", opts)
				if err != nil {
					t.Fatal(err)
				}
				if page.Revision != want.Revision {
					t.Fatalf("page %d read at revision %d, want %d", n, page.Revision, want.Revision)
				}
				if page.RemainingCount != 0 {
					t.Fatalf("page %d: remaining count %d with SkipCount", n, page.RemainingCount)
				}
				for _, kv := range page.KVs {
					// Copy: the next page reuses the buffer.
					kv.Value = bytes.Clone(kv.Value)
					got = append(got, kv)
				}
				if n == 0 {
					// Changes after the first page must not show in later ones.
					if _, err := d.Delete(ctx, "/p/039", 0); err != nil {
						t.Fatal(err)
					}
					kv, _ := d.Get(ctx, "/p/020")
					if _, err := d.Update(ctx, "/p/020", value(20, 1), kv.ModRevision, store.WriteOptions{}); err != nil {
						t.Fatal(err)
					}
					if _, err := d.Create(ctx, "/p/0205", value(205, 0), store.WriteOptions{}); err != nil {
						t.Fatal(err)
					}
				}
				if page.Continue == "" {
					break
				}
				opts.Revision, opts.Start = page.Revision, page.KVs[len(page.KVs)-1].Key+"\x00"
			}
			if len(got) != len(want.KVs) {
				t.Fatalf("pages hold %d keys, the list %d", len(got), len(want.KVs))
			}
			for i := range got {
				g, w := got[i], want.KVs[i]
				if g.Key != w.Key || !bytes.Equal(g.Value, w.Value) || g.ModRevision != w.ModRevision || g.CreateRevision != w.CreateRevision {
					t.Fatalf("key %d: got %s %.12q rev %d, want %s %.12q rev %d", i, g.Key, g.Value, g.ModRevision, w.Key, w.Value, w.ModRevision)
				}
			}
		})
	}
}

// TestListCountsRemaining: without SkipCount a page cut by Limit counts the
// keys after it, including volatile ones, and only those under the prefix.
func TestListCountsRemaining(t *testing.T) {
	ctx := context.Background()
	d, _ := openTest(t, Options{})
	for i := 0; i < 12; i++ {
		if _, err := d.Create(ctx, fmt.Sprintf("/p/%02d", i), []byte("v"), store.WriteOptions{Volatile: i%4 == 0}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := d.Create(ctx, "/q", []byte("v"), store.WriteOptions{}); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		limit, remaining int64
	}{{1, 11}, {5, 7}, {11, 1}, {12, 0}, {100, 0}} {
		page, err := d.List(ctx, "/p/", store.ListOptions{Limit: tc.limit})
		if err != nil {
			t.Fatal(err)
		}
		if page.RemainingCount != tc.remaining || (page.Continue != "") != (tc.remaining > 0) {
			t.Errorf("limit %d: remaining %d continue %q, want remaining %d", tc.limit, page.RemainingCount, page.Continue, tc.remaining)
		}
	}
	n, err := d.Count(ctx, "/p/")
	if err != nil || n != 12 {
		t.Errorf("Count = %d, %v; want 12", n, err)
	}
}
