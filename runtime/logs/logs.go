// Package logs writes and reads container log files in the CRI format that
// kubelet and `kubectl logs` expect:
//
//	2016-10-06T00:17:09.669794202Z stdout F message
//
// One line of output becomes one log line tagged F (full); a line longer
// than MaxLineSize is split into P (partial) lines followed by a final F.
// The writer rotates the file by size and keeps a bounded number of old
// files. The package owns only the file format; where files live and who
// reads them is the caller's business.
package logs

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"sync"
	"time"
)

// Stream names used in the second field of a line.
const (
	Stdout = "stdout"
	Stderr = "stderr"
)

// MaxLineSize is the largest message put on one log line; longer lines are
// split, as containerd does (16 KiB).
const MaxLineSize = 16 * 1024

// Options bound the disk a container's log may use.
type Options struct {
	// MaxSize rotates the file once it reaches this many bytes; 0 means
	// 10 MiB (kubelet's containerLogMaxSize default).
	MaxSize int64
	// MaxFiles is how many files, the live one included, are kept; 0 means
	// 5 (kubelet's containerLogMaxFiles default). Rotated files are named
	// PATH.1 (newest) to PATH.N-1.
	MaxFiles int
	// Now is the clock; nil means time.Now. Tests set it.
	Now func() time.Time
}

func (o Options) withDefaults() Options {
	if o.MaxSize <= 0 {
		o.MaxSize = 10 << 20
	}
	if o.MaxFiles <= 0 {
		o.MaxFiles = 5
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	return o
}

// File is a CRI log file open for appending. It is safe for concurrent use
// by the stdout and stderr copiers of one container.
type File struct {
	path string
	opts Options

	mu   sync.Mutex
	f    *os.File
	size int64
}

// Open opens (creating if needed) the log file at path for appending.
func Open(path string, opts Options) (*File, error) {
	l := &File{path: path, opts: opts.withDefaults()}
	if err := l.open(); err != nil {
		return nil, err
	}
	return l, nil
}

func (l *File) open() error {
	f, err := os.OpenFile(l.path, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o640)
	if err != nil {
		return fmt.Errorf("open container log: %w", err)
	}
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return fmt.Errorf("stat container log: %w", err)
	}
	l.f, l.size = f, st.Size()
	return nil
}

// Close closes the file.
func (l *File) Close() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.f == nil {
		return nil
	}
	err := l.f.Close()
	l.f = nil
	return err
}

// WriteLine appends one message (without its newline). partial marks a
// fragment of a longer line.
func (l *File) WriteLine(stream string, msg []byte, partial bool) error {
	tag := "F"
	if partial {
		tag = "P"
	}
	var b bytes.Buffer
	b.Grow(len(msg) + 48)
	b.WriteString(l.opts.Now().UTC().Format(time.RFC3339Nano))
	b.WriteByte(' ')
	b.WriteString(stream)
	b.WriteByte(' ')
	b.WriteString(tag)
	b.WriteByte(' ')
	b.Write(msg)
	b.WriteByte('\n')

	l.mu.Lock()
	defer l.mu.Unlock()
	if l.f == nil {
		return os.ErrClosed
	}
	if l.size > 0 && l.size+int64(b.Len()) > l.opts.MaxSize {
		if err := l.rotate(); err != nil {
			return err
		}
	}
	n, err := l.f.Write(b.Bytes())
	l.size += int64(n)
	if err != nil {
		return fmt.Errorf("write container log: %w", err)
	}
	return nil
}

// rotate shifts PATH.i to PATH.i+1, drops the oldest, and starts a new
// PATH. Callers hold l.mu.
func (l *File) rotate() error {
	if err := l.f.Close(); err != nil {
		return fmt.Errorf("rotate container log: %w", err)
	}
	l.f = nil
	last := l.opts.MaxFiles - 1
	if last < 1 {
		// Only the live file is kept: truncate by recreating it.
		if err := os.Remove(l.path); err != nil && !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("rotate container log: %w", err)
		}
		return l.open()
	}
	_ = os.Remove(l.path + "." + strconv.Itoa(last))
	for i := last - 1; i >= 1; i-- {
		from := l.path + "." + strconv.Itoa(i)
		if err := os.Rename(from, l.path+"."+strconv.Itoa(i+1)); err != nil && !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("rotate container log: %w", err)
		}
	}
	if err := os.Rename(l.path, l.path+".1"); err != nil {
		return fmt.Errorf("rotate container log: %w", err)
	}
	return l.open()
}

// Copy reads r until EOF and writes each line to the log under stream. It
// returns nil at EOF; the error otherwise.
func (l *File) Copy(stream string, r io.Reader) error {
	buf := make([]byte, 0, MaxLineSize)
	chunk := make([]byte, 32*1024)
	for {
		n, rerr := r.Read(chunk)
		data := chunk[:n]
		for len(data) > 0 {
			i := bytes.IndexByte(data, '\n')
			if i < 0 {
				// No newline yet: buffer, flushing full partial lines.
				room := MaxLineSize - len(buf)
				if len(data) < room {
					buf = append(buf, data...)
					break
				}
				buf = append(buf, data[:room]...)
				data = data[room:]
				if err := l.WriteLine(stream, buf, true); err != nil {
					return err
				}
				buf = buf[:0]
				continue
			}
			line := data[:i]
			data = data[i+1:]
			for len(buf)+len(line) > MaxLineSize {
				room := MaxLineSize - len(buf)
				buf = append(buf, line[:room]...)
				line = line[room:]
				if err := l.WriteLine(stream, buf, true); err != nil {
					return err
				}
				buf = buf[:0]
			}
			buf = append(buf, line...)
			if err := l.WriteLine(stream, buf, false); err != nil {
				return err
			}
			buf = buf[:0]
		}
		if rerr != nil {
			if len(buf) > 0 {
				// Output that ended without a newline is still a whole line.
				if err := l.WriteLine(stream, buf, false); err != nil {
					return err
				}
			}
			if errors.Is(rerr, io.EOF) || errors.Is(rerr, os.ErrClosed) {
				return nil
			}
			return fmt.Errorf("read %s: %w", stream, rerr)
		}
	}
}

// Line is one parsed log line.
type Line struct {
	Time    time.Time
	Stream  string
	Partial bool
	Message []byte // without the trailing newline
}

// ParseLine parses one CRI log line, with or without its newline.
func ParseLine(b []byte) (Line, error) {
	b = bytes.TrimSuffix(b, []byte{'\n'})
	fields := bytes.SplitN(b, []byte{' '}, 4)
	if len(fields) < 3 {
		return Line{}, fmt.Errorf("parse log line %q: want TIME STREAM TAG MESSAGE", truncate(b))
	}
	ts, err := time.Parse(time.RFC3339Nano, string(fields[0]))
	if err != nil {
		return Line{}, fmt.Errorf("parse log line time: %w", err)
	}
	l := Line{Time: ts, Stream: string(fields[1])}
	if l.Stream != Stdout && l.Stream != Stderr {
		return Line{}, fmt.Errorf("parse log line: unknown stream %q", truncate(fields[1]))
	}
	switch string(fields[2]) {
	case "F":
	case "P":
		l.Partial = true
	default:
		return Line{}, fmt.Errorf("parse log line: unknown tag %q", truncate(fields[2]))
	}
	if len(fields) == 4 {
		l.Message = fields[3]
	}
	return l, nil
}

func truncate(b []byte) []byte {
	if len(b) > 64 {
		return b[:64]
	}
	return b
}
