package container

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"strconv"
	"time"

	"golang.org/x/sys/unix"
)

// procRef names a process that is not necessarily our child. The start
// time (clock ticks since boot, /proc/PID/stat field 22) guards against
// the pid having been reused after an agent restart.
type procRef struct {
	Pid   int    `json:"pid"`
	Start uint64 `json:"start"`
}

func newProcRef(pid int) (procRef, error) {
	st, err := procStartTime(pid)
	if err != nil {
		return procRef{}, err
	}
	return procRef{Pid: pid, Start: st}, nil
}

func procStartTime(pid int) (uint64, error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0, err
	}
	// The command name may contain spaces and parentheses: fields start
	// after the last ')'.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, fmt.Errorf("parse /proc/%d/stat", pid)
	}
	fields := bytes.Fields(b[i+1:])
	// fields[0] is field 3 (state); field 22 is fields[19].
	if len(fields) < 20 {
		return 0, fmt.Errorf("parse /proc/%d/stat: too few fields", pid)
	}
	if string(fields[0]) == "Z" {
		return 0, os.ErrNotExist // exited, not yet reaped
	}
	return strconv.ParseUint(string(fields[19]), 10, 64)
}

// alive reports whether the referenced process still runs.
func (p procRef) alive() bool {
	if p.Pid <= 0 {
		return false
	}
	st, err := procStartTime(p.Pid)
	return err == nil && st == p.Start
}

// signal sends sig unless the pid now names another process. pidfd makes
// the check and the kill one atomic step.
func (p procRef) signal(sig unix.Signal) error {
	fd, err := p.pidfd()
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	if err := unix.PidfdSendSignal(fd, sig, nil, 0); err != nil {
		if errors.Is(err, unix.ESRCH) {
			return ErrNotRunning
		}
		return err
	}
	return nil
}

// pidfd opens a pidfd for the process, or fails with ErrNotRunning.
func (p procRef) pidfd() (int, error) {
	if p.Pid <= 0 {
		return -1, ErrNotRunning
	}
	fd, err := unix.PidfdOpen(p.Pid, 0)
	if err != nil {
		if errors.Is(err, unix.ESRCH) {
			return -1, ErrNotRunning
		}
		return -1, fmt.Errorf("pidfd_open %d: %w", p.Pid, err)
	}
	// Checked after opening: the fd now pins this very process.
	if !p.alive() {
		unix.Close(fd)
		return -1, ErrNotRunning
	}
	return fd, nil
}

// wait blocks until the process exits or ctx ends. It works for processes
// that are not our children, which is what an agent restart leaves us.
func (p procRef) wait(ctx context.Context) error {
	fd, err := p.pidfd()
	if errors.Is(err, ErrNotRunning) {
		return nil
	}
	if err != nil {
		return p.pollWait(ctx)
	}
	defer unix.Close(fd)
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		fds := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}
		n, err := unix.Poll(fds, 500)
		if err != nil && !errors.Is(err, unix.EINTR) {
			return fmt.Errorf("poll pidfd: %w", err)
		}
		if n > 0 {
			return nil
		}
	}
}

// pollWait is wait for kernels without pidfd_open (before 5.3).
func (p procRef) pollWait(ctx context.Context) error {
	t := time.NewTicker(100 * time.Millisecond)
	defer t.Stop()
	for p.alive() {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
		}
	}
	return nil
}
