package snapshot

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"time"
)

// Snapshotter writes a consistent copy of a running store (*bolt.DB).
type Snapshotter interface {
	Snapshot(w io.Writer) (int64, error)
}

// Schedule takes a snapshot of db into dir every interval and keeps the
// newest retain scheduled snapshots, until ctx is cancelled; then it
// returns nil. A failed snapshot (a full disk, say) is logged and retried at
// the next tick: it must not stop the server. Hand-made snapshots in dir are
// never pruned.
func Schedule(ctx context.Context, db Snapshotter, dir string, every time.Duration, retain int, log *slog.Logger) error {
	if every <= 0 {
		return fmt.Errorf("snapshot schedule: interval must be positive, got %v", every)
	}
	if retain < 1 {
		return fmt.Errorf("snapshot schedule: retention must be at least 1, got %d", retain)
	}
	if log == nil {
		log = slog.Default()
	}
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case now := <-t.C:
			if _, err := TakeScheduled(db, dir, retain, now, log); err != nil {
				log.Error("scheduled snapshot failed", "dir", dir, "err", err)
			}
		}
	}
}

// TakeScheduled takes one scheduled snapshot now and prunes the scheduled
// snapshots beyond the newest retain.
func TakeScheduled(db Snapshotter, dir string, retain int, now time.Time, log *slog.Logger) (Info, error) {
	start := time.Now()
	info, err := write(dir, ScheduledName, now, db.Snapshot)
	if err != nil {
		return Info{}, err
	}
	log.Info("snapshot saved", "path", info.Path, "bytes", info.Size, "took", time.Since(start).Round(time.Millisecond))
	removed, err := Prune(dir, ScheduledName, retain)
	for _, p := range removed {
		log.Info("old snapshot removed", "path", p)
	}
	return info, err
}

// Prune removes the snapshots called name in dir beyond the newest retain,
// with their checksum files, and returns the removed paths.
func Prune(dir, name string, retain int) ([]string, error) {
	all, err := list(dir, false)
	if err != nil {
		return nil, err
	}
	var mine []Info
	for _, s := range all {
		if s.Name == name {
			mine = append(mine, s)
		}
	}
	var removed []string
	var errs []error
	for len(mine) > retain { // oldest first
		p := mine[0].Path
		mine = mine[1:]
		if err := os.Remove(p); err != nil && !errors.Is(err, os.ErrNotExist) {
			errs = append(errs, fmt.Errorf("remove old snapshot: %w", err))
			continue
		}
		if err := os.Remove(p + ".sha256"); err != nil && !errors.Is(err, os.ErrNotExist) {
			errs = append(errs, fmt.Errorf("remove old snapshot checksum: %w", err))
		}
		removed = append(removed, p)
	}
	return removed, errors.Join(errs...)
}
