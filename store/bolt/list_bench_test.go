package bolt

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"testing"

	"github.com/orch-dev/orch/store"
)

// BenchmarkList10k lists 10,000 values of 1 KiB, whole and in pages.
func BenchmarkList10k(b *testing.B) {
	ctx := context.Background()
	d, err := Open(filepath.Join(b.TempDir(), "state.db"), Options{NoSync: true})
	if err != nil {
		b.Fatal(err)
	}
	defer d.Close()
	value := []byte(strings.Repeat("x", 1400))
	for i := 0; i < 10000; i++ {
		if _, err := d.Create(ctx, fmt.Sprintf("/registry/core/configmaps/bench/cm-%05d", i), value, store.WriteOptions{}); err != nil {
			b.Fatal(err)
		}
	}
	prefix := "/registry/core/configmaps/bench/"
	b.Run("whole", func(b *testing.B) {
		b.ReportAllocs()
		for i := 0; i < b.N; i++ {
			if _, err := d.List(ctx, prefix, store.ListOptions{}); err != nil {
				b.Fatal(err)
			}
		}
	})
	for _, page := range []int64{100, 500} {
		b.Run(fmt.Sprintf("pages-%d", page), func(b *testing.B) {
			b.ReportAllocs()
			for i := 0; i < b.N; i++ {
				opts := store.ListOptions{Limit: page, SkipCount: true, Buffer: &store.ListBuffer{}}
				for {
					res, err := d.List(ctx, prefix, opts)
					if err != nil {
						b.Fatal(err)
					}
					if len(res.KVs) < int(page) {
						break
					}
					opts.Revision, opts.Start = res.Revision, res.KVs[len(res.KVs)-1].Key+"\x00"
				}
			}
		})
	}
}
