package container

import (
	"os"

	// Device cgroup rules for libcontainer's cgroup manager.
	_ "github.com/opencontainers/cgroups/devices"
	"github.com/opencontainers/runc/libcontainer"
	// nsenter's C constructor joins namespaces before the Go runtime starts
	// in `orch init`; in every other invocation it returns at once.
	_ "github.com/opencontainers/runc/libcontainer/nsenter"

	"github.com/orch-dev/orch/runtime/pause"
)

// Arguments with which the runtime re-executes the orch binary.
const (
	initArg = "init" // fixed by libcontainer
	shimArg = "container-shim"
)

// Reexec runs orch's helper processes and must be the first thing main
// does. When os.Args[1] is "init" (libcontainer's container init),
// "pause" (a pod's pause process) or "container-shim" (the per-container
// supervisor), it runs that role and exits; otherwise it returns at once.
func Reexec() {
	if len(os.Args) < 2 {
		return
	}
	switch os.Args[1] {
	case initArg:
		libcontainer.Init() // never returns
	case pause.Arg:
		pause.Main(os.Args[2:])
	case shimArg:
		shimMain(os.Args[2:])
	}
}
