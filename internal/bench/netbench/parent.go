package main

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"syscall"

	"github.com/orch-dev/orch/internal/bench/measure"
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

// runParent builds the network, runs the driver in the node's namespace
// and removes everything afterwards.
func runParent(o options) error {
	if err := measure.Preflight("network namespaces, cgroups, mounts and nftables", "ip", "nft", "nsenter", "busybox"); err != nil {
		return err
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
	s := &netnstest.Program{}
	defer s.Close()
	// The server stops its pods (--kill-pods-on-stop); what is left of
	// their cgroups goes after the namespaces, the data dir last.
	s.Cleanup(func() { _ = os.RemoveAll(o.dir) })
	s.Cleanup(removeCgroups)
	return s.Run(func() error {
		sw := netnstest.NewSwitch(s, switchNS)
		node := netnstest.New(s, nodeNS)
		sw.Attach(s, node, "uplink", nodeAddr)
		// What a default route does on a real node: packets to service
		// addresses get past routing to the proxy's filter chains (they
		// go no further than the switch).
		node.MustRun(s, "ip", "route", "add", "10.43.0.0/16", "dev", "uplink")

		cmd := node.NetCommand(context.Background(), self, measure.RoleArgs(roleDriver)...)
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
