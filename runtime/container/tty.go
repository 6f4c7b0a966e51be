package container

import (
	"fmt"
	"os"

	"golang.org/x/sys/unix"
)

// TerminalSize is a terminal's size in character cells, as kubectl sends
// it on the resize channel.
type TerminalSize struct {
	Width, Height uint16
}

// consoleSocket makes the socket pair libcontainer's init sends a new
// pseudo-terminal's master over: the child end goes to the container
// process (Process.ConsoleSocket), the parent end to recvConsole.
func consoleSocket() (parent, child *os.File, err error) {
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, nil, fmt.Errorf("console socket: %w", err)
	}
	return os.NewFile(uintptr(fds[0]), "console-parent"), os.NewFile(uintptr(fds[1]), "console-child"), nil
}

// recvConsole reads the pty master that libcontainer's init sends over
// sock once it has allocated the terminal. The master is made
// non-blocking, so that closing it ends a pending Read.
func recvConsole(sock *os.File) (*os.File, error) {
	conn, err := sock.SyscallConn()
	if err != nil {
		return nil, err
	}
	var (
		name  []byte
		fds   []int
		rerr  error
		oob   = make([]byte, unix.CmsgSpace(4))
		nameB = make([]byte, 4096)
	)
	err = conn.Read(func(fd uintptr) bool {
		var n, oobn int
		n, oobn, _, _, rerr = unix.Recvmsg(int(fd), nameB, oob, unix.MSG_CMSG_CLOEXEC)
		if rerr == unix.EAGAIN {
			return false
		}
		if rerr != nil {
			return true
		}
		name = nameB[:n]
		var msgs []unix.SocketControlMessage
		msgs, rerr = unix.ParseSocketControlMessage(oob[:oobn])
		for _, m := range msgs {
			got, err := unix.ParseUnixRights(&m)
			if err == nil {
				fds = append(fds, got...)
			}
		}
		return true
	})
	if err == nil {
		err = rerr
	}
	if err != nil {
		closeFDs(fds)
		return nil, fmt.Errorf("receive console: %w", err)
	}
	if len(fds) != 1 {
		closeFDs(fds)
		return nil, fmt.Errorf("receive console: got %d file descriptors, want 1", len(fds))
	}
	if err := unix.SetNonblock(fds[0], true); err != nil {
		unix.Close(fds[0])
		return nil, fmt.Errorf("receive console: %w", err)
	}
	return os.NewFile(uintptr(fds[0]), string(name)), nil
}

func closeFDs(fds []int) {
	for _, fd := range fds {
		unix.Close(fd)
	}
}

// resizeTerminal sets the window size of the terminal whose master is f;
// the kernel sends SIGWINCH to its foreground process group.
func resizeTerminal(f *os.File, size TerminalSize) error {
	conn, err := f.SyscallConn()
	if err != nil {
		return err
	}
	var ierr error
	err = conn.Control(func(fd uintptr) {
		ierr = unix.IoctlSetWinsize(int(fd), unix.TIOCSWINSZ, &unix.Winsize{Row: size.Height, Col: size.Width})
	})
	if err == nil {
		err = ierr
	}
	if err != nil {
		return fmt.Errorf("resize terminal to %dx%d: %w", size.Width, size.Height, err)
	}
	return nil
}
