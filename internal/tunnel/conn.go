package tunnel

import (
	"fmt"
	"io"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"time"
)

// chunkSize is the size of the read buffers of a stream conn: two HTTP/2
// frames of the default size, so a burst is handed over in one piece.
const chunkSize = 32 << 10

// streamWriter is the outgoing half of an HTTP/2 stream.
type streamWriter interface {
	// Write sends p to the peer, flushing it out of any buffer.
	Write(p []byte) (int, error)
	// abort makes a blocked Write return; the stream is unusable afterwards.
	abort()
	// closeWrite ends this direction; the peer reads io.EOF.
	closeWrite() error
}

// streamConn adapts one HTTP/2 stream to a net.Conn.
//
// Reads are fed by a pump goroutine so that a read deadline can interrupt a
// blocked Read without touching the stream (net/http's server relies on
// that to stop its background read). A write that is blocked by flow control
// when its deadline passes cannot be taken back, so it resets the stream.
type streamConn struct {
	w             streamWriter
	local, remote net.Addr
	onClose       func() // releases the stream; called once

	readMu  sync.Mutex
	chunks  chan []byte   // filled slices of buffers from free
	free    chan []byte   // empty buffers the pump may fill
	cur     []byte        // unread rest of the current chunk
	curBuf  []byte        // the buffer cur points into
	readErr error         // why chunks was closed; set before closing it
	rdl     deadline      // read deadline
	wdl     deadline      // write deadline
	wmu     sync.Mutex    // serializes Write
	writing atomic.Bool   // a Write is inside w.Write
	done    chan struct{} // closed by Close
	once    sync.Once
}

func newStreamConn(r io.Reader, w streamWriter, local, remote net.Addr, onClose func()) *streamConn {
	c := &streamConn{
		w:       w,
		local:   local,
		remote:  remote,
		onClose: onClose,
		chunks:  make(chan []byte, 1),
		free:    make(chan []byte, 2),
		rdl:     newDeadline(nil),
		done:    make(chan struct{}),
	}
	c.wdl = newDeadline(func() {
		if c.writing.Load() {
			c.w.abort()
		}
	})
	c.free <- make([]byte, chunkSize)
	c.free <- make([]byte, chunkSize)
	go c.pump(r)
	return c
}

// pump copies the incoming half of the stream into chunks until it fails or
// the conn is closed.
func (c *streamConn) pump(r io.Reader) {
	defer close(c.chunks)
	for {
		var buf []byte
		select {
		case buf = <-c.free:
		case <-c.done:
			c.readErr = net.ErrClosed
			return
		}
		n, err := r.Read(buf)
		if n > 0 {
			select {
			case c.chunks <- buf[:n]:
			case <-c.done:
				c.readErr = net.ErrClosed
				return
			}
		} else {
			c.free <- buf
		}
		if err != nil {
			c.readErr = err
			return
		}
	}
}

func (c *streamConn) Read(p []byte) (int, error) {
	c.readMu.Lock()
	defer c.readMu.Unlock()
	if isClosed(c.done) {
		return 0, net.ErrClosed
	}
	if isClosed(c.rdl.wait()) {
		return 0, os.ErrDeadlineExceeded
	}
	if len(p) == 0 {
		return 0, nil
	}
	if len(c.cur) == 0 {
		if c.curBuf != nil {
			c.free <- c.curBuf[:cap(c.curBuf)]
			c.cur, c.curBuf = nil, nil
		}
		select {
		case chunk, ok := <-c.chunks:
			if !ok {
				return 0, c.readErr
			}
			c.cur, c.curBuf = chunk, chunk
		case <-c.rdl.wait():
			return 0, os.ErrDeadlineExceeded
		case <-c.done:
			return 0, net.ErrClosed
		}
	}
	n := copy(p, c.cur)
	c.cur = c.cur[n:]
	return n, nil
}

func (c *streamConn) Write(p []byte) (int, error) {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if isClosed(c.done) {
		return 0, net.ErrClosed
	}
	// Mark the write before checking the deadline: the deadline's timer
	// checks the mark after expiring, so one of the two always notices.
	c.writing.Store(true)
	defer c.writing.Store(false)
	if isClosed(c.wdl.wait()) {
		return 0, os.ErrDeadlineExceeded
	}
	n, err := c.w.Write(p)
	if err != nil {
		switch {
		case isClosed(c.done):
			err = net.ErrClosed
		case isClosed(c.wdl.wait()):
			err = os.ErrDeadlineExceeded
		default:
			err = fmt.Errorf("tunnel stream write: %w", err)
		}
	}
	return n, err
}

// Close releases the stream. Data already written is delivered unless the
// stream was broken.
func (c *streamConn) Close() error {
	c.once.Do(func() {
		close(c.done)
		if c.writing.Load() {
			c.w.abort()
		}
		c.onClose()
	})
	return nil
}

// CloseWrite ends the outgoing direction: the peer reads io.EOF and may
// go on writing. Like *net.TCPConn's, for proxies that pass half-closes on.
func (c *streamConn) CloseWrite() error {
	return c.w.closeWrite()
}

func (c *streamConn) LocalAddr() net.Addr  { return c.local }
func (c *streamConn) RemoteAddr() net.Addr { return c.remote }

func (c *streamConn) SetDeadline(t time.Time) error {
	c.rdl.set(t)
	c.wdl.set(t)
	return nil
}

func (c *streamConn) SetReadDeadline(t time.Time) error {
	c.rdl.set(t)
	return nil
}

func (c *streamConn) SetWriteDeadline(t time.Time) error {
	c.wdl.set(t)
	return nil
}

// halfCloser is what proxies look for to pass a half-close on.
type halfCloser interface {
	CloseWrite() error
}

var _ halfCloser = (*streamConn)(nil)

// deadline is a resettable point in time, signalled by closing a channel
// (the same scheme as net.Pipe's).
type deadline struct {
	mu       sync.Mutex
	timer    *time.Timer
	cancel   chan struct{}
	onExpire func() // optional; runs after cancel is closed
}

func newDeadline(onExpire func()) deadline {
	return deadline{cancel: make(chan struct{}), onExpire: onExpire}
}

func (d *deadline) expire() {
	close(d.cancel)
	if d.onExpire != nil {
		d.onExpire()
	}
}

// set arms the deadline at t; the zero time disarms it.
func (d *deadline) set(t time.Time) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.timer != nil && !d.timer.Stop() {
		<-d.cancel // the timer fired: wait until it closed cancel
	}
	d.timer = nil
	expired := isClosed(d.cancel)
	if t.IsZero() {
		if expired {
			d.cancel = make(chan struct{})
		}
		return
	}
	if dur := time.Until(t); dur > 0 {
		if expired {
			d.cancel = make(chan struct{})
		}
		// No lock in the callback: set waits for it while holding mu.
		d.timer = time.AfterFunc(dur, d.expire)
		return
	}
	if !expired {
		d.expire()
	}
}

// wait returns a channel that is closed once the deadline has passed.
func (d *deadline) wait() <-chan struct{} {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.cancel
}

func isClosed(c <-chan struct{}) bool {
	select {
	case <-c:
		return true
	default:
		return false
	}
}

// tunnelAddr is the address of either end of a session.
type tunnelAddr string

func (a tunnelAddr) Network() string { return "tunnel" }
func (a tunnelAddr) String() string  { return string(a) }
