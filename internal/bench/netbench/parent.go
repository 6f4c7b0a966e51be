package main

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"syscall"

	"github.com/orch-dev/orch/internal/cgrouptree"
	"github.com/orch-dev/orch/internal/netnstest"
)

// The benchmark's network: the node's namespace on a switch of its own.
// Pods, their podCIDR and the service CIDR live inside the node's
// namespace, which has no route out.
const (
	switchNS   = "nb-switch"
	nodeNS     = "nb-node"
	nodeName   = "nb-node"
	cgroupRoot = "/orch-netbench"
)

var nodeAddr = netip.MustParsePrefix("198.18.40.1/24")

// setup is a netnstest.TB for the parent's network set-up: Fatal ends the
// goroutine that runs the set-up (as testing.T's FailNow does) and
// records why; Cleanup collects the teardown.
type setup struct {
	err      error
	cleanups []func()
}

func (s *setup) Helper()                           {}
func (s *setup) Fatal(args ...any)                 { s.fail(errors.New(fmt.Sprint(args...))) }
func (s *setup) Fatalf(format string, args ...any) { s.fail(fmt.Errorf(format, args...)) }
func (s *setup) Cleanup(f func())                  { s.cleanups = append(s.cleanups, f) }
func (s *setup) fail(err error)                    { s.err = err; runtime.Goexit() }

// do runs fn on a goroutine of its own and returns the error it returned
// or failed with.
func (s *setup) do(fn func() error) error {
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := fn(); err != nil {
			s.err = err
		}
	}()
	<-done
	return s.err
}

// teardown runs the cleanups, the last registered first.
func (s *setup) teardown() {
	for i := len(s.cleanups) - 1; i >= 0; i-- {
		s.cleanups[i]()
	}
}

// runParent builds the network, runs the driver in the node's namespace
// and removes everything afterwards.
func runParent(o options) error {
	if os.Geteuid() != 0 {
		return errors.New("needs root: network namespaces, cgroups, mounts and nftables")
	}
	for _, tool := range []string{"ip", "nft", "nsenter", "busybox"} {
		if _, err := exec.LookPath(tool); err != nil {
			return fmt.Errorf("needs %s (apt-get install -y iproute2 nftables util-linux busybox-static)", tool)
		}
	}
	var err error
	for _, p := range []*string{&o.orch, &o.dir} {
		if *p, err = filepath.Abs(*p); err != nil {
			return err
		}
	}
	if _, err := os.Stat(o.orch); err != nil {
		return fmt.Errorf("orch binary: %w (make build, or set ORCH_BIN)", err)
	}
	self, err := os.Executable()
	if err != nil {
		return err
	}
	if err := os.RemoveAll(o.dir); err != nil {
		return err
	}
	if err := os.MkdirAll(o.dir, 0o700); err != nil {
		return err
	}
	s := &setup{}
	defer s.teardown()
	// The server stops its pods (--kill-pods-on-stop); what is left of
	// their cgroups goes after the namespaces, the data dir last.
	s.Cleanup(func() { _ = os.RemoveAll(o.dir) })
	s.Cleanup(removeCgroups)
	return s.do(func() error {
		sw := netnstest.NewSwitch(s, switchNS)
		node := netnstest.New(s, nodeNS)
		sw.Attach(s, node, "uplink", nodeAddr)
		// What a default route does on a real node: packets to service
		// addresses get past routing to the proxy's filter chains (they
		// go no further than the switch).
		node.MustRun(s, "ip", "route", "add", "10.43.0.0/16", "dev", "uplink")

		cmd := node.NetCommand(context.Background(), self, o.driverArgs()...)
		cmd.Stdout, cmd.Stderr = os.Stdout, os.Stderr
		cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
		if err := cmd.Run(); err != nil {
			// The data dir goes; the server's log of a failed run stays.
			kept := o.dir + "-failed.log"
			if b, rerr := os.ReadFile(filepath.Join(o.dir, "server.log")); rerr == nil {
				_ = os.WriteFile(kept, b, 0o600)
			}
			return fmt.Errorf("driver: %w (server log in %s)", err, kept)
		}
		return nil
	})
}

// removeCgroups kills what is left in the benchmark's cgroup trees and
// removes them in every hierarchy.
func removeCgroups() {
	if err := cgrouptree.Clean(cgroupRoot); err != nil {
		fmt.Fprintln(os.Stderr, "netbench:", err)
	}
}
