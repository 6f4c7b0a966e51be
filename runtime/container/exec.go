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
}

// Exec runs req in the container and returns its exit code (128+signal
// when signalled). Cancelling ctx kills the process. TTY sessions are not
// supported yet.
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
	)
	defer func() {
		for _, f := range append(closeAfterStart, closeAfterWait...) {
			f.Close()
		}
	}()
	if req.Stdin != nil {
		pr, pw, err := os.Pipe()
		if err != nil {
			return -1, err
		}
		p.Stdin = pr
		closeAfterStart = append(closeAfterStart, pr)
		closeAfterWait = append(closeAfterWait, pw)
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
			return -1, err
		}
		out.set(pw)
		closeAfterStart = append(closeAfterStart, pw)
		closeAfterWait = append(closeAfterWait, pr)
		copies.Add(1)
		go func() {
			defer copies.Done()
			_, _ = io.Copy(out.w, pr)
		}()
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
