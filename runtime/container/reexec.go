package container

import (
	"os"

	// Device cgroup rules for libcontainer's cgroup manager.
	_ "github.com/opencontainers/cgroups/devices"
	"github.com/opencontainers/runc/libcontainer"
	// nsenter's C constructor joins namespaces before the Go runtime starts
	// in `orch init`; in every other invocation it returns at once.
	_ "github.com/opencontainers/runc/libcontainer/nsenter"
)

// Arguments with which the runtime re-executes the orch binary.
const (
	initArg = "init" // fixed by libcontainer
	shimArg = "container-shim"
)

// Reexec runs orch's helper processes and must be the first thing main
// does. When os.Args[1] is "init" (libcontainer's container init) or
// "container-shim" (the per-container supervisor), it runs that role and
// exits; otherwise it returns at once. (A pod's pause process, "pause",
// never gets here: runtime/pause runs it in C before the Go runtime.)
func Reexec() {
	if len(os.Args) < 2 {
		return
	}
	switch os.Args[1] {
	case initArg:
		libcontainer.Init() // never returns
	case shimArg:
		shimMain(os.Args[2:])
	}
}
