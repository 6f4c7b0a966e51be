// Package pause is the pod sandbox's pause process, built into orch: the
// runtime re-executes the orch binary as `orch pause [-hostname NAME]` in
// fresh network, IPC and UTS (and optionally PID) namespaces. It holds
// those namespaces open for the pod's app containers, reaps zombies when it
// is PID 1 of a shared PID namespace, and exits on SIGTERM or SIGINT.
//
// It is written in C (pause.c) and runs from an ELF constructor, before
// the Go runtime and the package initialisers of the whole binary start:
// one pause process per pod then costs a few hundred KiB instead of a Go
// runtime's ~4 MiB. Linking this package (the container runtime does) is
// all it takes; there is nothing to call.
package pause

// #cgo CFLAGS: -O2 -Wall -Wextra
import "C"

// Arg is the first argument that makes orch run the pause process.
const Arg = "pause"

// ReadyFD is the file descriptor (the first ExtraFiles entry) on which the
// pause process reports that it is set up: it writes "ok", or an error
// message starting with "pause: ", and closes it.
const ReadyFD = 3
