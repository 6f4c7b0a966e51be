// Package pause is the pod sandbox's pause process, built into orch: the
// runtime re-executes the orch binary as `orch pause [-hostname NAME]` in
// fresh network, IPC and UTS (and optionally PID) namespaces. It holds
// those namespaces open for the pod's app containers, reaps zombies when it
// is PID 1 of a shared PID namespace, and exits on SIGTERM or SIGINT.
//
// It must stay tiny: no flags library, no goroutines of its own, nothing
// that allocates after start-up.
package pause

import (
	"fmt"
	"os"
	"os/signal"

	"golang.org/x/sys/unix"
)

// Arg is the first argument that makes orch run Main.
const Arg = "pause"

// ReadyFD is the file descriptor (the first ExtraFiles entry) on which the
// pause process reports that it is set up: it writes "ok", or an error
// message, and closes it.
const ReadyFD = 3

// Main runs the pause process and never returns. args are the arguments
// after "pause": an optional "-hostname NAME".
func Main(args []string) {
	ready := os.NewFile(ReadyFD, "ready")
	if err := setup(args); err != nil {
		report(ready, "pause: "+err.Error())
		os.Exit(1)
	}
	report(ready, "ok")

	sigs := make(chan os.Signal, 8)
	signal.Notify(sigs, unix.SIGTERM, unix.SIGINT, unix.SIGCHLD)
	for sig := range sigs {
		if sig == unix.SIGCHLD {
			reap()
			continue
		}
		os.Exit(0)
	}
}

func setup(args []string) error {
	for i := 0; i < len(args); i++ {
		switch args[i] {
		case "-hostname":
			if i+1 >= len(args) {
				return fmt.Errorf("-hostname needs a value")
			}
			i++
			if err := unix.Sethostname([]byte(args[i])); err != nil {
				return fmt.Errorf("set hostname %q: %w", args[i], err)
			}
		default:
			return fmt.Errorf("unknown argument %q", args[i])
		}
	}
	return nil
}

func report(f *os.File, msg string) {
	if f == nil {
		return
	}
	_, _ = f.Write([]byte(msg))
	_ = f.Close()
}

// reap collects every exited child. Orphans of a shared PID namespace are
// reparented to us as its PID 1.
func reap() {
	for {
		var ws unix.WaitStatus
		pid, err := unix.Wait4(-1, &ws, unix.WNOHANG, nil)
		if pid <= 0 || err != nil {
			return
		}
	}
}
