// Package dirwatch tells a reader of a directory of manifests when to read
// it again, with inotify, so that it need not poll the directory every few
// seconds. On a small idle node every timer wake-up costs: the Go runtime
// spins its scheduler and system monitor up for each one. The kubelet does
// the same for its static pod directory (inotify plus a slow re-read, its
// --file-check-frequency of 20 s, for anything a watch could miss).
package dirwatch

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"os"

	"golang.org/x/sys/unix"
)

// events are the changes of a directory's entries that can change what a
// reader of its files sees: a file written and closed, removed, renamed in
// or out, its mode changed; and the directory itself removed or renamed
// (the watch ends then). Not IN_CREATE: a file is empty or half written
// when it is created, and reading it then only logs a parse error; its
// IN_CLOSE_WRITE follows (an editor's or installer's rename gives
// IN_MOVED_TO).
const events = unix.IN_CLOSE_WRITE | unix.IN_DELETE | unix.IN_MOVED_FROM |
	unix.IN_MOVED_TO | unix.IN_ATTRIB | unix.IN_DELETE_SELF | unix.IN_MOVE_SELF

// Watch watches dir until ctx ends. The channel receives a value after
// entries of dir changed; changes that come in quick succession may be
// reported once (a reader reads the whole directory again anyway). The
// channel is closed when ctx ends or when the watch ends on its own —
// dir was removed or renamed, or the inotify queue overflowed — after a
// last value: the caller reads dir again and may watch anew.
func Watch(ctx context.Context, dir string) (<-chan struct{}, error) {
	fd, err := unix.InotifyInit1(unix.IN_NONBLOCK | unix.IN_CLOEXEC)
	if err != nil {
		return nil, fmt.Errorf("watch %s: inotify: %w", dir, err)
	}
	if _, err := unix.InotifyAddWatch(fd, dir, events|unix.IN_ONLYDIR); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("watch %s: %w", dir, err)
	}
	// A non-blocking descriptor wrapped by os.NewFile is read through the
	// runtime's poller: the reading goroutine costs nothing while parked,
	// and Close wakes it.
	f := os.NewFile(uintptr(fd), "inotify:"+dir)
	changed := make(chan struct{}, 1)
	stop := context.AfterFunc(ctx, func() { f.Close() })
	go func() {
		defer close(changed)
		defer stop()
		defer f.Close()
		buf := make([]byte, 4096) // many events per read; each is 16 bytes plus a name
		for {
			n, err := f.Read(buf)
			if err != nil {
				if !errors.Is(err, os.ErrClosed) && ctx.Err() == nil {
					notify(changed) // cannot tell what was missed: read again
				}
				return
			}
			notify(changed)
			if ended(buf[:n]) {
				return
			}
		}
	}()
	return changed, nil
}

// notify queues one wake-up; one already queued stands for both.
func notify(ch chan<- struct{}) {
	select {
	case ch <- struct{}{}:
	default:
	}
}

// ended reports whether the events in buf end the watch: the directory
// went (IN_IGNORED follows IN_DELETE_SELF; a renamed directory is no
// longer the path the caller reads) or events were lost.
func ended(buf []byte) bool {
	// struct inotify_event: int wd; uint32_t mask, cookie, len; char name[len].
	for len(buf) >= unix.SizeofInotifyEvent {
		mask := binary.NativeEndian.Uint32(buf[4:])
		if mask&(unix.IN_IGNORED|unix.IN_MOVE_SELF|unix.IN_Q_OVERFLOW) != 0 {
			return true
		}
		size := unix.SizeofInotifyEvent + int(binary.NativeEndian.Uint32(buf[12:]))
		if size > len(buf) {
			break
		}
		buf = buf[size:]
	}
	return false
}
