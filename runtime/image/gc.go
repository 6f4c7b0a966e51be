package image

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"syscall"
	"time"
)

// GCPolicy is when and how far images are garbage collected, as the
// kubelet's imageGCHighThresholdPercent, imageGCLowThresholdPercent and
// imageMinimumGCAge.
type GCPolicy struct {
	// HighThresholdPercent of the image filesystem in use starts a
	// collection; default 85.
	HighThresholdPercent int
	// LowThresholdPercent is what a collection frees down to; default 80.
	LowThresholdPercent int
	// MinAge keeps images first seen less than this long ago, so that a
	// pod's image is not collected between its pull and its start;
	// default 2 minutes.
	MinAge time.Duration
}

func (p *GCPolicy) complete() error {
	if p.HighThresholdPercent == 0 {
		p.HighThresholdPercent = 85
	}
	if p.LowThresholdPercent == 0 {
		p.LowThresholdPercent = 80
	}
	if p.MinAge == 0 {
		p.MinAge = 2 * time.Minute
	}
	if p.HighThresholdPercent > 100 || p.LowThresholdPercent < 0 || p.LowThresholdPercent > p.HighThresholdPercent {
		return fmt.Errorf("image GC thresholds: low %d%% and high %d%% must satisfy 0 <= low <= high <= 100",
			p.LowThresholdPercent, p.HighThresholdPercent)
	}
	return nil
}

// GCResult says what a collection did.
type GCResult struct {
	Removed    []Image
	UsePercent int // of the image filesystem, after the collection
}

// diskUsage reports the bytes used and the total size of the filesystem
// holding dir.
type diskUsage func(dir string) (used, total uint64, err error)

func statfsUsage(dir string) (used, total uint64, err error) {
	var st syscall.Statfs_t
	if err := syscall.Statfs(dir, &st); err != nil {
		return 0, 0, fmt.Errorf("statfs %s: %w", dir, err)
	}
	total = st.Blocks * uint64(st.Bsize)
	// Space reserved for root counts as used, as df and the kubelet count it.
	return total - st.Bavail*uint64(st.Bsize), total, nil
}

func usePercent(used, total uint64) int {
	if total == 0 {
		return 0
	}
	return int((used*100 + total - 1) / total) // rounded up, as df does
}

// GarbageCollect removes images no container uses, least recently used
// first, when the filesystem of the store is at least HighThresholdPercent
// full, until it is at most LowThresholdPercent full or nothing more can
// go. inUse holds the IDs of images containers use now; they are recorded
// as used at now. Images are remembered as used from when this store
// first saw them in a collection, so a restart makes every image young
// again rather than old.
func (s *Store) GarbageCollect(ctx context.Context, policy GCPolicy, inUse map[string]bool, now time.Time) (GCResult, error) {
	if err := policy.complete(); err != nil {
		return GCResult{}, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	imgs, err := s.list()
	if err != nil {
		return GCResult{}, err
	}
	if s.lastUsed == nil {
		s.lastUsed = map[string]gcRecord{}
	}
	known := map[string]bool{}
	for _, img := range imgs {
		known[img.ID] = true
		r, seen := s.lastUsed[img.ID]
		if !seen {
			r.firstSeen, r.lastUsed = now, now
		}
		if inUse[img.ID] {
			r.lastUsed = now
		}
		s.lastUsed[img.ID] = r
	}
	for id := range s.lastUsed {
		if !known[id] {
			delete(s.lastUsed, id) // removed by hand
		}
	}

	used, total, err := s.usage(s.root)
	if err != nil {
		return GCResult{}, fmt.Errorf("image GC: %w", err)
	}
	res := GCResult{UsePercent: usePercent(used, total)}
	if res.UsePercent < policy.HighThresholdPercent {
		return res, nil
	}
	var candidates []Image
	for _, img := range imgs {
		if !inUse[img.ID] && now.Sub(s.lastUsed[img.ID].firstSeen) >= policy.MinAge {
			candidates = append(candidates, img)
		}
	}
	sort.SliceStable(candidates, func(i, j int) bool {
		return s.lastUsed[candidates[i].ID].lastUsed.Before(s.lastUsed[candidates[j].ID].lastUsed)
	})
	var errs []error
	for _, img := range candidates {
		if res.UsePercent <= policy.LowThresholdPercent || ctx.Err() != nil {
			break
		}
		if err := s.removeImage(img); err != nil {
			errs = append(errs, err)
			continue
		}
		delete(s.lastUsed, img.ID)
		res.Removed = append(res.Removed, img)
		if used, total, err = s.usage(s.root); err != nil {
			errs = append(errs, err)
			break
		}
		res.UsePercent = usePercent(used, total)
	}
	if res.UsePercent > policy.LowThresholdPercent && len(errs) == 0 && ctx.Err() == nil {
		errs = append(errs, fmt.Errorf("image filesystem is %d%% full after removing %d unused images; wanted %d%%",
			res.UsePercent, len(res.Removed), policy.LowThresholdPercent))
	}
	if err := errors.Join(errs...); err != nil {
		return res, fmt.Errorf("image GC: %w", err)
	}
	return res, ctx.Err()
}

// gcRecord is what GarbageCollect remembers of an image.
type gcRecord struct {
	firstSeen, lastUsed time.Time
}

// removeImage deletes an image with all its names and the layers only it
// used. Callers hold s.mu.
func (s *Store) removeImage(img Image) error {
	if err := os.Remove(filepath.Join(s.root, "images", hexOf(img.ID)+".json")); err != nil {
		return fmt.Errorf("remove image %s: %w", img.ID, err)
	}
	return s.gcLayers()
}
