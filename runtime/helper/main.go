// Command orch-helper is orch's container shim and container init and
// nothing else. `make build` embeds it, gzipped, into bin/orch (build tag
// orchhelper, see runtime/container/helper.go); the runtime writes it under
// its state directory and starts it, instead of the whole orch binary, as
// every container's shim, which libcontainer then re-executes as the
// container's init. Starting the 39 MB orch binary runs the package
// initialisers of the API types, protobuf and OpenAPI models and faults
// in far more of the binary: ~25-35 ms of CPU per process on a 2-core
// box, twice per container, where this ~6 MB binary takes ~8 ms.
//
// It is not a command for people: anything but the arguments the runtime
// passes exits with status 2.
package main

import (
	"fmt"
	"os"

	"github.com/orch-dev/orch/runtime/container"
)

func main() {
	container.Reexec()
	fmt.Fprintln(os.Stderr, "orch-helper: runs only as orch's container shim or container init")
	os.Exit(2)
}
