package container

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"sync"
	"syscall"
	"time"

	"github.com/opencontainers/runc/libcontainer"
	"golang.org/x/sys/unix"
)

// ExecRequest is a process to run in a running container. Unset Env,
// WorkingDir and user fall back to the container's own.
type ExecRequest struct {
	Args       []string
	Env        []string // added to (and overriding) the container's env
	WorkingDir string
	// Stdin, Stdout and Stderr may be nil. Stdin is closed towards the
	// process when it returns EOF.
	Stdin          io.Reader
	Stdout, Stderr io.Writer
	// TTY runs the process on a new pseudo-terminal, its controlling
	// terminal: Stdin is typed into it, Stdout gets everything it prints
	// and Stderr is unused, as with the kubelet.
	TTY bool
	// Size is the terminal's initial size (TTY only; zero: the kernel's).
	Size TerminalSize
	// Resize delivers later size changes (TTY only; may be nil). It is
	// read until it is closed or Exec returns.
	Resize <-chan TerminalSize
}

// Exec runs req in the container and returns its exit code (128+signal
// when signalled). Cancelling ctx kills the process.
func (r *Runtime) Exec(ctx context.Context, id string, req ExecRequest) (int, error) {
	if len(req.Args) == 0 {
		return -1, fmt.Errorf("exec in container %s: no command", id)
	}
	c, err := r.get(id)
	if err != nil {
		return -1, err
	}
	lc, err := libcontainer.Load(r.libcontainerRoot(), c.ID)
	if err != nil {
		return -1, fmt.Errorf("exec in container %s: %w", id, err)
	}
	groups := make([]int, len(c.AdditionalGIDs))
	for i, g := range c.AdditionalGIDs {
		groups[i] = int(g)
	}
	wd := req.WorkingDir
	if wd == "" {
		wd = c.WorkingDir
	}
	p := &libcontainer.Process{
		Args:             req.Args,
		Env:              mergeEnv(c.Env, req.Env),
		Cwd:              wd,
		UID:              int(c.UID),
		GID:              int(c.GID),
		AdditionalGroups: groups,
	}

	// Own pipes rather than exec.Cmd's copiers: a stdin that never ends
	// (a network stream) must not keep Wait from returning.
	var (
		closeAfterStart []*os.File
		closeAfterWait  []*os.File
		copies          sync.WaitGroup
		consoleParent   *os.File
	)
	defer func() {
		for _, f := range append(closeAfterStart, closeAfterWait...) {
			f.Close()
		}
	}()
	if req.TTY {
		// libcontainer's init allocates the terminal inside the container
		// (its /dev/pts) and hands the master back over this socket.
		parent, child, err := consoleSocket()
		if err != nil {
			return -1, fmt.Errorf("exec in container %s: %w", id, err)
		}
		consoleParent = parent
		p.ConsoleSocket = child
		p.ConsoleWidth, p.ConsoleHeight = req.Size.Width, req.Size.Height
		p.Env = mergeEnv(p.Env, []string{"TERM=xterm"}) // as containerd's CRI does for exec -t
		closeAfterStart = append(closeAfterStart, child)
		closeAfterWait = append(closeAfterWait, parent)
	} else {
		if err := r.execPipes(p, req, &closeAfterStart, &closeAfterWait, &copies); err != nil {
			return -1, fmt.Errorf("exec in container %s: %w", id, err)
		}
	}

	if err := lc.Run(p); err != nil {
		if errors.Is(err, libcontainer.ErrNotRunning) {
			err = ErrNotRunning
		}
		return -1, fmt.Errorf("exec in container %s: %w", id, err)
	}
	for _, f := range closeAfterStart {
		f.Close()
	}
	closeAfterStart = nil
	if consoleParent != nil {
		master, err := recvConsole(consoleParent)
		if err != nil {
			_ = p.Signal(unix.SIGKILL)
			_, _ = p.Wait()
			return -1, fmt.Errorf("exec in container %s: %w", id, err)
		}
		closeAfterWait = append(closeAfterWait, master)
		done := make(chan struct{})
		defer close(done)
		serveTerminal(master, req, &copies, done)
	}

	stop := context.AfterFunc(ctx, func() { _ = p.Signal(unix.SIGKILL) })
	ps, werr := p.Wait()
	stop()

	// Let output drain; background children holding the pipes open do not
	// keep the exec open for long.
	done := make(chan struct{})
	go func() { copies.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(2 * time.Second):
	}
	if ps == nil {
		return -1, fmt.Errorf("exec in container %s: %w", id, werr)
	}
	if err := ctx.Err(); err != nil {
		return -1, fmt.Errorf("exec in container %s: %w", id, err)
	}
	ws := ps.Sys().(syscall.WaitStatus)
	if ws.Signaled() {
		return 128 + int(ws.Signal()), nil
	}
	return ws.ExitStatus(), nil
}

// execPipes connects the process's stdio to req's readers and writers
// through pipes whose copiers are counted in copies.
func (r *Runtime) execPipes(p *libcontainer.Process, req ExecRequest, closeAfterStart, closeAfterWait *[]*os.File, copies *sync.WaitGroup) error {
	if req.Stdin != nil {
		pr, pw, err := os.Pipe()
		if err != nil {
			return err
		}
		p.Stdin = pr
		*closeAfterStart = append(*closeAfterStart, pr)
		*closeAfterWait = append(*closeAfterWait, pw)
		go func() {
			_, _ = io.Copy(pw, req.Stdin)
			pw.Close()
		}()
	}
	for _, out := range []struct {
		w   io.Writer
		set func(*os.File)
	}{
		{req.Stdout, func(f *os.File) { p.Stdout = f }},
		{req.Stderr, func(f *os.File) { p.Stderr = f }},
	} {
		if out.w == nil {
			continue
		}
		pr, pw, err := os.Pipe()
		if err != nil {
			return err
		}
		out.set(pw)
		*closeAfterStart = append(*closeAfterStart, pw)
		*closeAfterWait = append(*closeAfterWait, pr)
		copies.Add(1)
		go func() {
			defer copies.Done()
			_, _ = io.Copy(out.w, pr)
		}()
	}
	return nil
}

// serveTerminal copies between req's streams and the terminal master and
// applies resizes until done closes. The output copy, counted in copies,
// ends when the last process holding the terminal closes it (EIO) or
// master is closed.
func serveTerminal(master *os.File, req ExecRequest, copies *sync.WaitGroup, done <-chan struct{}) {
	if req.Stdin != nil {
		go func() { _, _ = io.Copy(master, req.Stdin) }()
	}
	if req.Resize != nil {
		go func() {
			for {
				select {
				case <-done:
					return
				case size, ok := <-req.Resize:
					if !ok || resizeTerminal(master, size) != nil {
						return // no more sizes, or the terminal is gone
					}
				}
			}
		}()
	}
	out := req.Stdout
	if out == nil {
		out = io.Discard // a full terminal would block the process
	}
	copies.Add(1)
	go func() {
		defer copies.Done()
		_, _ = io.Copy(out, master)
	}()
}

// mergeEnv returns base with extra's variables set, extra winning.
func mergeEnv(base, extra []string) []string {
	out := append([]string(nil), base...)
	for _, e := range extra {
		key, _, _ := cutEnv(e)
		replaced := false
		for i, b := range out {
			if k, _, _ := cutEnv(b); k == key {
				out[i], replaced = e, true
				break
			}
		}
		if !replaced {
			out = append(out, e)
		}
	}
	return out
}

func cutEnv(e string) (string, string, bool) {
	for i := 0; i < len(e); i++ {
		if e[i] == '=' {
			return e[:i], e[i+1:], true
		}
	}
	return e, "", false
}
