package main

import (
	"bufio"
	"context"
	"fmt"
	"net/netip"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/orch-dev/orch/internal/bench/measure"
	"github.com/orch-dev/orch/internal/cgrouptree"
	"github.com/orch-dev/orch/internal/netnstest"
)

// The benchmark's network: one switch, the server's and the agent's
// namespaces, addresses from the benchmarking range only.
const (
	switchNS   = "cb-switch"
	serverNS   = "cb-server"
	agentNS    = "cb-agent"
	serverNode = "cb-server"
	agentNode  = "cb-agent"
	apiPort    = 6443

	// agentCgroupRoot holds the joined agent's pods. The server's node has
	// no such flag and uses orch's default (/orch); its pods are found by
	// their UIDs in its data dir instead (cleanupLeftovers).
	agentCgroupRoot = "/orch-clusterbench"
	serverCgroupDef = "/orch"
	// serverPodsFile (in the data dir) lists the UIDs of the server
	// node's pods, for cleanupLeftovers.
	serverPodsFile = "server-pod-uids"
)

var (
	serverAddr = netip.MustParsePrefix("198.18.30.1/24")
	agentAddr  = netip.MustParsePrefix("198.18.30.2/24")
)

// runParent builds the network, runs the driver in the server's
// namespace and removes everything afterwards.
func runParent(o options) error {
	if err := measure.Preflight("network namespaces, cgroups and mounts", "ip", "nft", "nsenter", "kubectl", "busybox"); err != nil {
		return err
	}
	if _, err := os.Stat(o.orch); err != nil {
		return fmt.Errorf("orch binary: %w (make build, or set ORCH_BIN)", err)
	}
	self, err := os.Executable()
	if err != nil {
		return err
	}

	unlock, err := lockRun(o.dir + ".lock")
	if err != nil {
		return err
	}
	defer unlock()
	cleanupLeftovers(o.dir)
	e := &netnstest.Program{}
	defer e.Close()
	defer cleanupLeftovers(o.dir) // before the namespaces go (runs first)
	return e.Run(func() error {
		sw := netnstest.NewSwitch(e, switchNS)
		srv, agent := netnstest.New(e, serverNS), netnstest.New(e, agentNS)
		sw.Attach(e, srv, "eth0", serverAddr)
		sw.Attach(e, agent, "eth0", agentAddr)
		if err := os.MkdirAll(o.dir, 0o700); err != nil {
			return err
		}

		// The driver stops the cluster on SIGINT/SIGTERM; this process
		// stays to clean up after it.
		sigs := make(chan os.Signal, 1)
		signal.Notify(sigs, os.Interrupt, syscall.SIGTERM)
		defer signal.Stop(sigs)
		cmd := srv.NetCommand(context.Background(), self, measure.RoleArgs(roleDriver)...)
		cmd.Stdout, cmd.Stderr = os.Stdout, os.Stderr
		cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
		if err := cmd.Start(); err != nil {
			return fmt.Errorf("start the driver: %w", err)
		}
		done := make(chan error, 1)
		go func() { done <- cmd.Wait() }()
		for {
			select {
			case err := <-done:
				if err != nil {
					// The data dir goes; the logs of a failed run stay.
					kept := o.dir + "-failed"
					_ = os.RemoveAll(kept)
					_ = os.MkdirAll(kept, 0o700)
					for _, name := range []string{"server.log", "agent.log"} {
						b, _ := os.ReadFile(filepath.Join(o.dir, name))
						_ = os.WriteFile(filepath.Join(kept, name), b, 0o600)
						fmt.Fprintf(os.Stderr, "--- end of %s (whole log in %s):\n%s\n", name, kept, tail(b, 40))
					}
					return fmt.Errorf("driver: %w", err)
				}
				return nil
			case s := <-sigs:
				_ = cmd.Process.Signal(s)
			}
		}
	})
}

// lockRun takes an exclusive lock on path, waiting for another run to
// finish first: two runs share the namespace names and the data dir, and
// each one's start-up cleanup would kill the other's cluster.
func lockRun(path string) (unlock func(), err error) {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, fmt.Errorf("lock %s: %w", path, err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		fmt.Fprintf(os.Stderr, "clusterbench: another run holds %s; waiting for it to finish\n", path)
		if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX); err != nil {
			f.Close()
			return nil, fmt.Errorf("lock %s: %w", path, err)
		}
	}
	return func() { f.Close() }, nil
}

// cleanupLeftovers kills every process this benchmark (or a killed
// earlier run) started, removes their cgroups, unmounts what is mounted
// under dir and removes dir. It leaves alone the pods of other users of
// the default cgroup root: only the UIDs found in the server node's data
// dir are touched there.
func cleanupLeftovers(dir string) {
	for range 50 {
		if killMatching(func(pid int) bool { return strings.Contains(cmdline(pid), dir) }) == 0 {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	var cgroups []string
	hierarchies, _ := filepath.Glob("/sys/fs/cgroup/*")
	hierarchies = append([]string{"/sys/fs/cgroup"}, hierarchies...)
	// The server node's pods: those it still keeps state for, and those
	// the driver recorded (a run killed after the node forgot a pod, or
	// while it was deleting one, may leave the pod's cgroups behind).
	uids := map[string]bool{}
	entries, _ := os.ReadDir(filepath.Join(dir, "server", "agent", "pods"))
	for _, e := range entries {
		uids[e.Name()] = true
	}
	recorded, _ := os.ReadFile(filepath.Join(dir, serverPodsFile))
	for _, uid := range strings.Fields(string(recorded)) {
		uids[uid] = true
	}
	for _, h := range hierarchies {
		cgroups = append(cgroups, filepath.Join(h, agentCgroupRoot))
		for uid := range uids {
			for _, pattern := range []string{"*", "."} { // with and without a QoS level
				found, _ := filepath.Glob(filepath.Join(h, serverCgroupDef, "pods", pattern, uid))
				cgroups = append(cgroups, found...)
			}
		}
	}
	for _, cg := range cgroups {
		// A process that survives SIGKILL (uninterruptible sleep) keeps
		// its cgroup; the next run tries again.
		if err := cgrouptree.Kill(cg); err != nil {
			fmt.Fprintf(os.Stderr, "clusterbench: %v\n", err)
		}
		_ = cgrouptree.Remove(cg)
	}
	mounts := mountsUnder(dir)
	for i := len(mounts) - 1; i >= 0; i-- {
		_ = syscall.Unmount(mounts[i], syscall.MNT_DETACH)
	}
	if err := os.RemoveAll(dir); err != nil {
		fmt.Fprintf(os.Stderr, "clusterbench: remove %s: %v\n", dir, err)
	}
}

// killMatching sends SIGKILL to every process match accepts and returns
// how many it signalled.
func killMatching(match func(pid int) bool) int {
	n := 0
	for _, pid := range pids() {
		// Never this program or the one that ran it (go run).
		if pid != os.Getpid() && pid != os.Getppid() && match(pid) {
			_ = syscall.Kill(pid, syscall.SIGKILL)
			n++
		}
	}
	return n
}

// mountsUnder lists the mount points below dir, in mount order.
func mountsUnder(dir string) []string {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return nil
	}
	defer f.Close()
	var out []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) > 4 && strings.HasPrefix(fields[4], dir+"/") {
			out = append(out, fields[4])
		}
	}
	return out
}

// pids lists the processes of the machine.
func pids() []int {
	entries, _ := os.ReadDir("/proc")
	var out []int
	for _, e := range entries {
		if pid, err := strconv.Atoi(e.Name()); err == nil {
			out = append(out, pid)
		}
	}
	return out
}

// cmdline is a process' arguments joined by spaces ("" once it is gone).
func cmdline(pid int) string {
	b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	return strings.TrimSpace(strings.ReplaceAll(string(b), "\x00", " "))
}
