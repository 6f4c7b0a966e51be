// Package logfile is the --log file of `orch server` and `orch agent`: an
// io.Writer that appends to a file and rotates it by size, keeping a few
// old files beside it as FILE.1 (the newest) to FILE.N, the names logrotate
// and k3s users know.
//
// Rotation happens inside Write, before a write would take the file past
// its size limit, so one log line is never split over two files. Reopen
// lets an external rotator (logrotate's copy-less "create" mode) move the
// file away and have the process start a new one, as on SIGHUP.
//
// The package owns nothing but its files: it starts no goroutine and reads
// no flags or signals itself.
package logfile

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"sync"
)

// Defaults of the --log-max-size and --log-max-backups flags.
const (
	DefaultMaxSize    = 10 << 20 // bytes
	DefaultMaxBackups = 3
)

// fileMode keeps logs private: they name nodes, pods and addresses.
const fileMode = 0o600

// Options say where to log and how much to keep.
type Options struct {
	// Path is the log file; its directory is created if missing.
	Path string
	// MaxSize is the size in bytes at which the file is rotated; zero
	// means DefaultMaxSize.
	MaxSize int64
	// MaxBackups is how many rotated files to keep; zero keeps none (the
	// file starts over when full), negative means DefaultMaxBackups.
	MaxBackups int
}

// File is a size-rotated log file. It is safe for concurrent use.
type File struct {
	opts Options

	mu   sync.Mutex
	f    *os.File
	size int64
}

// Open opens (appending) or creates the log file.
func Open(opts Options) (*File, error) {
	if opts.Path == "" {
		return nil, errors.New("log file: no path")
	}
	if opts.MaxSize <= 0 {
		opts.MaxSize = DefaultMaxSize
	}
	if opts.MaxBackups < 0 {
		opts.MaxBackups = DefaultMaxBackups
	}
	if err := os.MkdirAll(filepath.Dir(opts.Path), 0o755); err != nil {
		return nil, fmt.Errorf("log file %s: %w", opts.Path, err)
	}
	lf := &File{opts: opts}
	if err := lf.open(); err != nil {
		return nil, err
	}
	return lf, nil
}

// open opens the file at the configured path for appending; the caller
// holds mu (or owns lf exclusively).
func (lf *File) open() error {
	f, err := os.OpenFile(lf.opts.Path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, fileMode)
	if err != nil {
		return fmt.Errorf("log file: %w", err)
	}
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return fmt.Errorf("log file: %w", err)
	}
	lf.f, lf.size = f, st.Size()
	return nil
}

// Write appends p, rotating first if p would take the file past MaxSize. A
// write larger than MaxSize goes whole into a fresh file.
func (lf *File) Write(p []byte) (int, error) {
	lf.mu.Lock()
	defer lf.mu.Unlock()
	if lf.f == nil {
		return 0, fs.ErrClosed
	}
	if lf.size > 0 && lf.size+int64(len(p)) > lf.opts.MaxSize {
		if err := lf.rotate(); err != nil {
			if lf.f == nil {
				return 0, fmt.Errorf("log file: rotate: %w", err)
			}
			// Losing logs is worse than an oversized file: keep writing to
			// whatever is open and report the problem in the file itself.
			msg := fmt.Sprintf("orch: cannot rotate log file: %v\n", err)
			n, _ := lf.f.WriteString(msg)
			lf.size += int64(n)
		}
	}
	n, err := lf.f.Write(p)
	lf.size += int64(n)
	return n, err
}

// rotate shifts FILE.i to FILE.i+1, dropping the oldest, moves FILE to
// FILE.1 and opens a new FILE. The caller holds mu.
func (lf *File) rotate() error {
	if err := lf.f.Close(); err != nil {
		return err
	}
	lf.f = nil
	var errs []error
	if lf.opts.MaxBackups == 0 {
		if err := os.Remove(lf.opts.Path); err != nil && !errors.Is(err, fs.ErrNotExist) {
			errs = append(errs, err)
		}
	} else {
		for i := lf.opts.MaxBackups - 1; i >= 1; i-- {
			err := os.Rename(lf.backup(i), lf.backup(i+1))
			if err != nil && !errors.Is(err, fs.ErrNotExist) {
				errs = append(errs, err)
			}
		}
		if err := os.Rename(lf.opts.Path, lf.backup(1)); err != nil && !errors.Is(err, fs.ErrNotExist) {
			errs = append(errs, err)
		}
	}
	// Reopen even after a failed rename, so logging goes on.
	if err := lf.open(); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// backup is the name of the i-th rotated file, 1 being the newest.
func (lf *File) backup(i int) string {
	return lf.opts.Path + "." + strconv.Itoa(i)
}

// Reopen closes the file and opens the configured path again, for when
// something outside the process moved it away (logrotate, then SIGHUP).
func (lf *File) Reopen() error {
	lf.mu.Lock()
	defer lf.mu.Unlock()
	if lf.f == nil {
		return fs.ErrClosed
	}
	old := lf.f
	if err := lf.open(); err != nil {
		return err
	}
	return old.Close()
}

// ReopenOn reopens the file each time a value arrives on signals (wired to
// SIGHUP by the caller) until ctx ends. Failures go to report, which may
// be nil.
func (lf *File) ReopenOn(ctx context.Context, signals <-chan os.Signal, report func(error)) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-signals:
			if err := lf.Reopen(); err != nil && report != nil {
				report(fmt.Errorf("reopen log file %s: %w", lf.opts.Path, err))
			}
		}
	}
}

// Close closes the file; later writes fail with fs.ErrClosed.
func (lf *File) Close() error {
	lf.mu.Lock()
	defer lf.mu.Unlock()
	if lf.f == nil {
		return fs.ErrClosed
	}
	err := lf.f.Close()
	lf.f = nil
	return err
}
