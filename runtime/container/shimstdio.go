package container

import (
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"syscall"

	"github.com/opencontainers/runc/libcontainer"

	"github.com/orch-dev/orch/runtime/logs"
)

// shimStdio is a container's main process's stdio as its shim holds it:
// pipes, or a pseudo-terminal for a TTY container, and the stdin kept
// open for Attach when the pod spec asks for it.
type shimStdio struct {
	tty, stdinOnce bool
	// outputs are the readers of the process's output by log stream:
	// stdout and stderr, or only stdout (the terminal) with a TTY.
	outputs map[string]*os.File
	stdin   io.WriteCloser // nil without stdin
	// console receives the terminal's master from libcontainer's init.
	console         *os.File
	wantStdin       bool
	closeAfterStart []*os.File
}

// newShimStdio wires p's stdio as spec asks.
func newShimStdio(spec *shimSpec, p *libcontainer.Process) (*shimStdio, error) {
	s := &shimStdio{tty: spec.TTY, stdinOnce: spec.StdinOnce, wantStdin: spec.Stdin, outputs: map[string]*os.File{}}
	if spec.TTY {
		parent, child, err := consoleSocket()
		if err != nil {
			return nil, err
		}
		s.console = parent
		p.ConsoleSocket = child
		s.closeAfterStart = append(s.closeAfterStart, child)
		return s, nil
	}
	pipe := func() (*os.File, *os.File, error) {
		r, w, err := os.Pipe()
		if err != nil {
			s.closeOutputs()
			for _, f := range s.closeAfterStart {
				f.Close()
			}
		}
		return r, w, err
	}
	for _, out := range []struct {
		stream string
		set    func(*os.File)
	}{
		{logs.Stdout, func(f *os.File) { p.Stdout = f }},
		{logs.Stderr, func(f *os.File) { p.Stderr = f }},
	} {
		r, w, err := pipe()
		if err != nil {
			return nil, err
		}
		out.set(w)
		s.outputs[out.stream] = r
		s.closeAfterStart = append(s.closeAfterStart, w)
	}
	if spec.Stdin {
		r, w, err := pipe()
		if err != nil {
			return nil, err
		}
		p.Stdin = r
		s.stdin = w
		s.closeAfterStart = append(s.closeAfterStart, r)
	}
	return s, nil
}

// afterStart closes the container's ends of the pipes and, if the process
// runs on a terminal and started, receives the terminal's master.
func (s *shimStdio) afterStart(running bool) error {
	for _, f := range s.closeAfterStart {
		f.Close()
	}
	s.closeAfterStart = nil
	if s.console == nil {
		return nil
	}
	defer s.console.Close()
	if !running {
		return nil
	}
	master, err := recvConsole(s.console)
	if err != nil {
		return err
	}
	s.outputs[logs.Stdout] = master
	if s.wantStdin {
		s.stdin = master
	}
	return nil
}

// endOfTerminal tells the end of a terminal's output (EIO once the last
// process holding it exits) from a real read error.
func (s *shimStdio) endOfTerminal(err error) bool {
	return s.tty && errors.Is(err, syscall.EIO)
}

// closeOutputs ends the log copies of output that processes outliving the
// container's init keep open.
func (s *shimStdio) closeOutputs() {
	for _, f := range s.outputs {
		f.Close()
	}
}

// serveAttach starts serving Attach from the container directory dir. A
// container that cannot be attached to still runs, so a failure is only
// reported; the nil server it returns is valid.
func (s *shimStdio) serveAttach(dir string) *attachServer {
	ln, err := listenAttach(dir)
	if err != nil {
		fmt.Fprintf(os.Stderr, "shim: %v\n", err)
		return nil
	}
	att := &attachServer{ln: ln, stdin: s.stdin, stdinOnce: s.stdinOnce, clients: map[net.Conn]struct{}{}}
	if s.tty {
		att.terminal = s.outputs[logs.Stdout]
	}
	go att.serve()
	return att
}
