package logfile

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

func read(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return "<missing>"
	}
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func write(t *testing.T, lf *File, s string) {
	t.Helper()
	if n, err := lf.Write([]byte(s)); err != nil || n != len(s) {
		t.Fatalf("Write(%q) = %d, %v", s, n, err)
	}
}

func TestRotation(t *testing.T) {
	tests := []struct {
		name    string
		backups int
		lines   []string // each 4 bytes, the file holds 10
		want    map[string]string
	}{
		{
			name: "fits", backups: 2, lines: []string{"aaa\n", "bbb\n"},
			want: map[string]string{"": "aaa\nbbb\n", ".1": "<missing>"},
		},
		{
			name: "one rotation keeps lines whole", backups: 2, lines: []string{"aaa\n", "bbb\n", "ccc\n"},
			want: map[string]string{"": "ccc\n", ".1": "aaa\nbbb\n", ".2": "<missing>"},
		},
		{
			name: "oldest dropped", backups: 2,
			lines: []string{"aaa\n", "bbb\n", "ccc\n", "ddd\n", "eee\n", "fff\n", "ggg\n"},
			want:  map[string]string{"": "ggg\n", ".1": "eee\nfff\n", ".2": "ccc\nddd\n", ".3": "<missing>"},
		},
		{
			name: "no backups starts over", backups: 0, lines: []string{"aaa\n", "bbb\n", "ccc\n"},
			want: map[string]string{"": "ccc\n", ".1": "<missing>"},
		},
		{
			name: "oversized line gets its own file", backups: 1, lines: []string{"aaa\n", "0123456789abcdef\n", "bbb\n"},
			want: map[string]string{"": "bbb\n", ".1": "0123456789abcdef\n"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "orch.log")
			lf, err := Open(Options{Path: path, MaxSize: 10, MaxBackups: tt.backups})
			if err != nil {
				t.Fatal(err)
			}
			defer lf.Close()
			for _, l := range tt.lines {
				write(t, lf, l)
			}
			for suffix, want := range tt.want {
				if got := read(t, path+suffix); got != want {
					t.Errorf("orch.log%s = %q, want %q", suffix, got, want)
				}
			}
		})
	}
}

func TestOpenAppendsAndCountsExistingSize(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "sub", "orch.log") // the directory is created
	lf, err := Open(Options{Path: path, MaxSize: 10, MaxBackups: 1})
	if err != nil {
		t.Fatal(err)
	}
	write(t, lf, "aaaaaaaa\n")
	if err := lf.Close(); err != nil {
		t.Fatal(err)
	}
	// A restart appends, and knows the file is nearly full.
	lf, err = Open(Options{Path: path, MaxSize: 10, MaxBackups: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer lf.Close()
	write(t, lf, "bb\n")
	if got, got1 := read(t, path), read(t, path+".1"); got != "bb\n" || got1 != "aaaaaaaa\n" {
		t.Errorf("after restart: file %q, .1 %q", got, got1)
	}
	st, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode().Perm() != fileMode {
		t.Errorf("mode %v, want %v", st.Mode().Perm(), os.FileMode(fileMode))
	}
}

func TestDefaults(t *testing.T) {
	lf, err := Open(Options{Path: filepath.Join(t.TempDir(), "orch.log"), MaxBackups: -1})
	if err != nil {
		t.Fatal(err)
	}
	defer lf.Close()
	if lf.opts.MaxSize != DefaultMaxSize || lf.opts.MaxBackups != DefaultMaxBackups {
		t.Errorf("defaults: %+v", lf.opts)
	}
}

func TestBadInput(t *testing.T) {
	dir := t.TempDir()
	if _, err := Open(Options{}); err == nil {
		t.Error("Open without a path succeeded")
	}
	if _, err := Open(Options{Path: dir}); err == nil {
		t.Error("Open of a directory succeeded")
	}
	lf, err := Open(Options{Path: filepath.Join(dir, "orch.log")})
	if err != nil {
		t.Fatal(err)
	}
	if err := lf.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := lf.Write([]byte("x")); !errors.Is(err, fs.ErrClosed) {
		t.Errorf("Write after Close: %v, want fs.ErrClosed", err)
	}
	if err := lf.Reopen(); !errors.Is(err, fs.ErrClosed) {
		t.Errorf("Reopen after Close: %v, want fs.ErrClosed", err)
	}
}

// TestRotateFailureKeepsLogging: a backup name that cannot be replaced
// (a non-empty directory) must not stop logging.
func TestRotateFailureKeepsLogging(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "orch.log")
	if err := os.MkdirAll(filepath.Join(path+".1", "x"), 0o755); err != nil {
		t.Fatal(err)
	}
	lf, err := Open(Options{Path: path, MaxSize: 10, MaxBackups: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer lf.Close()
	write(t, lf, "aaaaaaaa\n")
	write(t, lf, "bbb\n")
	got := read(t, path)
	if !strings.HasPrefix(got, "aaaaaaaa\n") || !strings.Contains(got, "cannot rotate log file") || !strings.HasSuffix(got, "bbb\n") {
		t.Errorf("log after failed rotation = %q", got)
	}
}

func TestConcurrentWritesStayWhole(t *testing.T) {
	path := filepath.Join(t.TempDir(), "orch.log")
	lf, err := Open(Options{Path: path, MaxSize: 1000, MaxBackups: 50})
	if err != nil {
		t.Fatal(err)
	}
	defer lf.Close()
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Go(func() {
			for i := range 100 {
				fmt.Fprintf(lf, "writer=%d line=%03d\n", w, i)
			}
		})
	}
	wg.Wait()
	lines := 0
	for i := 0; i <= 50; i++ {
		name := path
		if i > 0 {
			name = fmt.Sprintf("%s.%d", path, i)
		}
		content := read(t, name)
		if content == "<missing>" {
			continue
		}
		if len(content) > 1000 {
			t.Errorf("%s has %d bytes, over the limit", name, len(content))
		}
		for _, l := range strings.Split(strings.TrimSuffix(content, "\n"), "\n") {
			if !strings.HasPrefix(l, "writer=") || len(l) != len("writer=0 line=000") {
				t.Errorf("%s: torn line %q", name, l)
			}
			lines++
		}
	}
	if lines != 400 {
		t.Errorf("%d lines in all files, want 400", lines)
	}
}

func TestReopenOnSignal(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "orch.log")
	lf, err := Open(Options{Path: path})
	if err != nil {
		t.Fatal(err)
	}
	defer lf.Close()
	write(t, lf, "before\n")
	// logrotate moves the file, then signals the process.
	if err := os.Rename(path, path+".moved"); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	signals := make(chan os.Signal)
	done := make(chan struct{})
	go func() {
		defer close(done)
		lf.ReopenOn(ctx, signals, func(err error) { t.Error(err) })
	}()
	signals <- syscall.SIGHUP
	// The unbuffered send returned once the loop took the signal; a second
	// send waits until the first reopen has finished.
	signals <- syscall.SIGHUP
	write(t, lf, "after\n")
	cancel()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("ReopenOn did not return after cancel")
	}
	if got, moved := read(t, path), read(t, path+".moved"); got != "after\n" || moved != "before\n" {
		t.Errorf("new file %q, moved file %q", got, moved)
	}
}
