//go:build orchpprof

// This file is only in binaries built with `-tags orchpprof`: profiling
// builds for measuring the footprint. Release builds (make build) leave
// it out, so they carry neither net/http/pprof nor its handlers; check
// with `go tool nm bin/orch | grep pprof`.

package main

import (
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
)

// pprofAddrEnv names the environment variable with the address of the
// profiling endpoint. Unset, a profiling build serves nothing.
const pprofAddrEnv = "ORCH_PPROF_ADDR"

func init() {
	addr := os.Getenv(pprofAddrEnv)
	if addr == "" || len(os.Args) < 2 || (os.Args[1] != "server" && os.Args[1] != "agent") {
		return // re-executed helpers (shims, container init) never serve
	}
	host, _, err := net.SplitHostPort(addr)
	if ip := net.ParseIP(host); err != nil || ip == nil || !ip.IsLoopback() {
		slog.Error("profiling endpoint not started: needs a loopback address", "env", pprofAddrEnv, "addr", addr)
		return
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	go func() {
		// Errors only end profiling, never the process.
		if err := http.ListenAndServe(addr, mux); err != nil {
			slog.Error("profiling endpoint stopped", "addr", addr, "err", err)
		}
	}()
}
