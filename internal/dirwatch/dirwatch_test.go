package dirwatch

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// wait is generous: a wake-up comes within milliseconds, but the machine
// running the tests may be busy.
const wait = 30 * time.Second

func expectWake(t *testing.T, ch <-chan struct{}, what string) {
	t.Helper()
	select {
	case _, ok := <-ch:
		if !ok {
			t.Fatalf("%s: watch ended instead of a wake-up", what)
		}
	case <-time.After(wait):
		t.Fatalf("%s: no wake-up within %s", what, wait)
	}
}

// drain takes wake-ups already queued, so the next expectation is about
// the next change only.
func drain(ch <-chan struct{}) {
	for {
		select {
		case <-ch:
		case <-time.After(100 * time.Millisecond):
			return
		}
	}
}

func TestWatchReportsChanges(t *testing.T) {
	dir := t.TempDir()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ch, err := Watch(ctx, dir)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "pod.yaml")
	steps := []struct {
		name string
		do   func() error
	}{
		{"create and write", func() error { return os.WriteFile(path, []byte("a: 1\n"), 0o600) }},
		{"rewrite", func() error { return os.WriteFile(path, []byte("a: 2\n"), 0o600) }},
		{"chmod", func() error { return os.Chmod(path, 0o644) }},
		{"rename in", func() error {
			tmp := filepath.Join(t.TempDir(), "x.yaml")
			if err := os.WriteFile(tmp, []byte("b: 1\n"), 0o600); err != nil {
				return err
			}
			return os.Rename(tmp, filepath.Join(dir, "other.yaml"))
		}},
		{"remove", func() error { return os.Remove(path) }},
	}
	for _, s := range steps {
		drain(ch)
		if err := s.do(); err != nil {
			t.Fatalf("%s: %v", s.name, err)
		}
		expectWake(t, ch, s.name)
	}
}

func TestWatchEnds(t *testing.T) {
	for _, tc := range []struct {
		name string
		end  func(dir string, cancel context.CancelFunc) error
		wake bool // a last wake-up before the channel closes
	}{
		{"directory removed", func(dir string, _ context.CancelFunc) error { return os.RemoveAll(dir) }, true},
		{"directory renamed", func(dir string, _ context.CancelFunc) error { return os.Rename(dir, dir+".old") }, true},
		{"context done", func(_ string, cancel context.CancelFunc) error { cancel(); return nil }, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "manifests")
			if err := os.Mkdir(dir, 0o700); err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			ch, err := Watch(ctx, dir)
			if err != nil {
				t.Fatal(err)
			}
			if err := tc.end(dir, cancel); err != nil {
				t.Fatal(err)
			}
			woke := false
			deadline := time.After(wait)
			for {
				select {
				case _, ok := <-ch:
					if ok {
						woke = true
						continue
					}
					if tc.wake && !woke {
						t.Errorf("channel closed without a last wake-up")
					}
					return
				case <-deadline:
					t.Fatalf("watch did not end within %s", wait)
				}
			}
		})
	}
}

func TestWatchMissingDirectory(t *testing.T) {
	_, err := Watch(context.Background(), filepath.Join(t.TempDir(), "absent"))
	if err == nil {
		t.Fatal("Watch of a missing directory succeeded")
	}
}
