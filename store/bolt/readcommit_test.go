package bolt

import (
	"context"
	"fmt"
	"sync"
	"testing"

	"github.com/orch-dev/orch/store"
)

// TestReadsDuringCommits reads while batches are being committed
// (outside the store's lock): no snapshot may see a value newer than its
// revision, and a key published at revision R is in every later snapshot.
func TestReadsDuringCommits(t *testing.T) {
	d, _ := openTest(t, Options{})
	ctx := context.Background()
	const writers, perWriter = 8, 60
	var wg sync.WaitGroup
	for w := 0; w < writers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < perWriter; i++ {
				if _, err := d.Create(ctx, fmt.Sprintf("/k/%d-%03d", w, i), []byte("v"), store.WriteOptions{}); err != nil {
					t.Errorf("create: %v", err)
					return
				}
			}
		}()
	}
	done := make(chan struct{})
	var readers sync.WaitGroup
	for r := 0; r < 2; r++ {
		readers.Add(1)
		go func() {
			defer readers.Done()
			var lastRev int64
			var lastCount int
			for {
				select {
				case <-done:
					return
				default:
				}
				res, err := d.List(ctx, "/k/", store.ListOptions{})
				if err != nil {
					t.Errorf("list: %v", err)
					return
				}
				if res.Revision < lastRev || len(res.KVs) < lastCount {
					t.Errorf("snapshot went back: revision %d after %d, %d keys after %d", res.Revision, lastRev, len(res.KVs), lastCount)
				}
				for _, kv := range res.KVs {
					if kv.ModRevision > res.Revision {
						t.Errorf("snapshot at %d sees %s at %d", res.Revision, kv.Key, kv.ModRevision)
						return
					}
				}
				lastRev, lastCount = res.Revision, len(res.KVs)
			}
		}()
	}
	wg.Wait()
	close(done)
	readers.Wait()
	res, err := d.List(ctx, "/k/", store.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.KVs) != writers*perWriter {
		t.Errorf("%d keys, want %d", len(res.KVs), writers*perWriter)
	}
}
