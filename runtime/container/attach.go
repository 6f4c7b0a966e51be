package container

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/orch-dev/orch/runtime/logs"
)

// Attach connects to a running container's main process: its output from
// now on, and its stdin when the container was started with Stdin. The
// shim owns the process's stdio, so it serves attach on a Unix socket in
// the container's directory; the socket outlives agent restarts with the
// shim.
//
// On that socket both sides send frames: a kind byte, a big-endian
// uint32 length, and the payload.
const (
	frameStdin      byte = 0 // client → shim: input
	frameStdout     byte = 1 // shim → client
	frameStderr     byte = 2 // shim → client
	frameExit       byte = 3 // shim → client: the process exited, output is complete
	frameResize     byte = 4 // client → shim: JSON TerminalSize
	frameStdinClose byte = 5 // client → shim: end of input

	attachSocketName = "attach.sock"
	// maxFrame bounds a payload; larger input is split.
	maxFrame = 32 << 10
	// attachWriteTimeout is how long a client that does not read may hold
	// up the container's output before it is dropped.
	attachWriteTimeout = 5 * time.Second
)

// AttachRequest is a client attaching to a container. Nil streams are not
// attached; Stdin is ignored unless the container keeps its stdin open.
type AttachRequest struct {
	Stdin          io.Reader
	Stdout, Stderr io.Writer
	// Resize carries terminal sizes for a TTY container (may be nil).
	Resize <-chan TerminalSize
}

// Attach streams the container's output to req until the container exits,
// the shim goes away or ctx ends. Output written before the call is in
// the log, not repeated here.
func (r *Runtime) Attach(ctx context.Context, id string, req AttachRequest) error {
	c, err := r.get(id)
	if err != nil {
		return err
	}
	if st := r.status(c); st.State != StateRunning {
		return fmt.Errorf("attach to container %s: %w", id, ErrNotRunning)
	}
	conn, err := dialAttach(r.containerDir(c.ID))
	if err != nil {
		return fmt.Errorf("attach to container %s: %w", id, err)
	}
	defer conn.Close()
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	defer stop()

	var wmu sync.Mutex
	send := func(kind byte, b []byte) error {
		wmu.Lock()
		defer wmu.Unlock()
		return writeFrame(conn, kind, b)
	}
	done := make(chan struct{})
	defer close(done)
	if req.Stdin != nil {
		go func() {
			buf := make([]byte, maxFrame)
			for {
				n, err := req.Stdin.Read(buf)
				if n > 0 && send(frameStdin, buf[:n]) != nil {
					return
				}
				if err != nil {
					_ = send(frameStdinClose, nil)
					return
				}
			}
		}()
	}
	if req.Resize != nil {
		go func() {
			for {
				select {
				case <-done:
					return
				case size, ok := <-req.Resize:
					if !ok {
						return
					}
					b, _ := json.Marshal(size)
					if send(frameResize, b) != nil {
						return
					}
				}
			}
		}()
	}
	for {
		kind, payload, err := readFrame(conn)
		if err != nil {
			if ctx.Err() != nil {
				return fmt.Errorf("attach to container %s: %w", id, ctx.Err())
			}
			return nil // the shim went away with its container
		}
		var w io.Writer
		switch kind {
		case frameExit:
			return nil
		case frameStdout:
			w = req.Stdout
		case frameStderr:
			w = req.Stderr
		}
		if w != nil {
			if _, err := w.Write(payload); err != nil {
				return nil // the client is gone
			}
		}
	}
}

// dialAttach connects to the shim's attach socket in dir, through
// /proc/self/fd so that long state paths fit in a socket address.
func dialAttach(dir string) (net.Conn, error) {
	var conn net.Conn
	err := viaDirFD(dir, func(short string) error {
		c, err := net.Dial("unix", short)
		conn = c
		return err
	})
	if errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("the container's shim serves no attach socket (started by an older orch)")
	}
	return conn, err
}

// listenAttach listens on dir's attach socket, replacing a stale one.
func listenAttach(dir string) (net.Listener, error) {
	_ = os.Remove(filepath.Join(dir, attachSocketName))
	var ln net.Listener
	err := viaDirFD(dir, func(short string) error {
		l, err := net.Listen("unix", short)
		ln = l
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("attach socket in %s: %w", dir, err)
	}
	if err := os.Chmod(filepath.Join(dir, attachSocketName), 0o600); err != nil {
		ln.Close()
		return nil, fmt.Errorf("attach socket in %s: %w", dir, err)
	}
	return ln, nil
}

// viaDirFD calls fn with a short path naming the attach socket in dir.
func viaDirFD(dir string, fn func(path string) error) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return fn(fmt.Sprintf("/proc/self/fd/%d/%s", d.Fd(), attachSocketName))
}

func writeFrame(w io.Writer, kind byte, payload []byte) error {
	var hdr [5]byte
	hdr[0] = kind
	binary.BigEndian.PutUint32(hdr[1:], uint32(len(payload)))
	if _, err := w.Write(append(hdr[:], payload...)); err != nil {
		return err
	}
	return nil
}

func readFrame(r io.Reader) (byte, []byte, error) {
	var hdr [5]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		return 0, nil, err
	}
	n := binary.BigEndian.Uint32(hdr[1:])
	if n > maxFrame {
		return 0, nil, fmt.Errorf("attach frame of %d bytes: at most %d", n, maxFrame)
	}
	payload := make([]byte, n)
	if _, err := io.ReadFull(r, payload); err != nil {
		return 0, nil, err
	}
	return hdr[0], payload, nil
}

// attachServer is the shim's side: it fans the container's output out to
// the attached clients and feeds their input to the process.
type attachServer struct {
	ln        net.Listener
	stdinOnce bool     // the first client's end of input closes stdin
	terminal  *os.File // the pty master of a TTY container, for resizes

	inMu  sync.Mutex     // clients type one write at a time
	stdin io.WriteCloser // nil: the container has no (more) stdin

	mu      sync.Mutex
	clients map[net.Conn]struct{}
	closed  bool
	wg      sync.WaitGroup
}

// tee copies what is read from r to the clients attached to stream.
func (s *attachServer) tee(stream string, r io.Reader) io.Reader {
	if s == nil {
		return r
	}
	kind := frameStdout
	if stream == logs.Stderr {
		kind = frameStderr
	}
	return io.TeeReader(r, s.output(kind))
}

// serve accepts clients until close.
func (s *attachServer) serve() {
	for {
		conn, err := s.ln.Accept()
		if err != nil {
			return
		}
		s.mu.Lock()
		if s.closed {
			s.mu.Unlock()
			conn.Close()
			return
		}
		s.clients[conn] = struct{}{}
		s.wg.Add(1)
		s.mu.Unlock()
		go func() {
			defer s.wg.Done()
			s.readInput(conn)
		}()
	}
}

// readInput applies one client's frames until it goes away.
func (s *attachServer) readInput(conn net.Conn) {
	defer s.drop(conn)
	for {
		kind, payload, err := readFrame(conn)
		if err != nil {
			return
		}
		switch kind {
		case frameStdin:
			s.inMu.Lock()
			if s.stdin != nil {
				if _, err := s.stdin.Write(payload); err != nil {
					s.stdin = nil // the process closed its stdin
				}
			}
			s.inMu.Unlock()
		case frameStdinClose:
			s.inMu.Lock()
			if s.stdin != nil && s.stdinOnce {
				if s.terminal != nil {
					// A terminal's input ends with EOT; closing the master
					// would end its output too.
					_, _ = s.stdin.Write([]byte{4})
				} else {
					s.stdin.Close()
				}
				s.stdin = nil
			}
			s.inMu.Unlock()
		case frameResize:
			var size TerminalSize
			if s.terminal != nil && json.Unmarshal(payload, &size) == nil {
				_ = resizeTerminal(s.terminal, size)
			}
		}
	}
}

// drop forgets a client and closes its connection.
func (s *attachServer) drop(conn net.Conn) {
	s.mu.Lock()
	delete(s.clients, conn)
	s.mu.Unlock()
	conn.Close()
}

// broadcast sends a frame to every client; a client that does not take it
// in time is dropped rather than holding up the container.
func (s *attachServer) broadcast(kind byte, p []byte) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for conn := range s.clients {
		_ = conn.SetWriteDeadline(time.Now().Add(attachWriteTimeout))
		if writeFrame(conn, kind, p) != nil {
			delete(s.clients, conn)
			conn.Close()
		}
	}
}

// output is an io.Writer of one output stream for io.TeeReader: it never
// fails, so the log copy goes on whatever the clients do.
func (s *attachServer) output(kind byte) io.Writer {
	return outputWriter(func(p []byte) {
		for len(p) > 0 {
			n := min(len(p), maxFrame)
			s.broadcast(kind, p[:n])
			p = p[n:]
		}
	})
}

type outputWriter func([]byte)

func (w outputWriter) Write(p []byte) (int, error) {
	w(p)
	return len(p), nil
}

// close tells every client the process has exited and stops serving.
func (s *attachServer) close() {
	if s == nil {
		return
	}
	s.mu.Lock()
	s.closed = true
	s.mu.Unlock()
	s.broadcast(frameExit, nil)
	s.ln.Close()
	s.mu.Lock()
	for conn := range s.clients {
		conn.Close()
	}
	s.mu.Unlock()
	s.wg.Wait()
}
