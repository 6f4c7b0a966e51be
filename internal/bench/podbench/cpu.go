package main

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// serverCgroup is the cgroup the benchmark moves `orch server` into, so
// that the kernel charges its CPU, and that of the helpers it starts
// (pause, shims, libcontainer init until it joins the container's
// cgroup), to one place. Pods' processes are charged to cgroupRoot.
const serverCgroup = "/orch-podbench-server"

// cpuMeter reads the CPU time the kernel charged to the server's cgroup
// and to the pods' cgroups: all the CPU a pod start costs on the node,
// dead processes included, in nanoseconds rather than /proc's 10 ms
// ticks.
type cpuMeter struct {
	v1  bool // cgroup v1 cpuacct; else the unified hierarchy's cpu.stat
	dir string
}

func newCPUMeter(pid int) (*cpuMeter, error) {
	m := &cpuMeter{v1: true, dir: "/sys/fs/cgroup/cpuacct"}
	if _, err := os.Stat(filepath.Join(m.dir, "cpuacct.usage")); err != nil {
		m = &cpuMeter{dir: "/sys/fs/cgroup"}
		if _, err := os.Stat(filepath.Join(m.dir, "cgroup.controllers")); err != nil {
			return nil, errors.New("neither cgroup v1 cpuacct nor cgroup v2 is mounted at /sys/fs/cgroup")
		}
	}
	dir := filepath.Join(m.dir, serverCgroup)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("cpu meter: %w", err)
	}
	if err := os.WriteFile(filepath.Join(dir, "cgroup.procs"), []byte(strconv.Itoa(pid)), 0o644); err != nil {
		return nil, fmt.Errorf("cpu meter: move server into %s: %w", dir, err)
	}
	return m, nil
}

// read returns the CPU charged so far to the server's cgroup and to the
// pods' (a missing cgroup counts 0).
func (m *cpuMeter) read() (server, pods time.Duration) {
	return m.usage(serverCgroup), m.usage(cgroupRoot)
}

func (m *cpuMeter) usage(cg string) time.Duration {
	dir := filepath.Join(m.dir, cg)
	if m.v1 {
		b, err := os.ReadFile(filepath.Join(dir, "cpuacct.usage"))
		if err != nil {
			return 0
		}
		ns, _ := strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64)
		return time.Duration(ns)
	}
	b, err := os.ReadFile(filepath.Join(dir, "cpu.stat"))
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "usage_usec "); ok {
			us, _ := strconv.ParseInt(v, 10, 64)
			return time.Duration(us) * time.Microsecond
		}
	}
	return 0
}

// close moves what is left in the server's cgroup back to the root and
// removes it.
func (m *cpuMeter) close() {
	dir := filepath.Join(m.dir, serverCgroup)
	if b, err := os.ReadFile(filepath.Join(dir, "cgroup.procs")); err == nil {
		for _, pid := range strings.Fields(string(b)) {
			_ = os.WriteFile(filepath.Join(m.dir, "cgroup.procs"), []byte(pid), 0o644)
		}
	}
	if err := os.Remove(dir); err != nil && !os.IsNotExist(err) {
		fmt.Fprintln(os.Stderr, "podbench: remove", dir+":", err)
	}
}

// cpuSample is the CPU a round of pod starts cost, split by cgroup.
type cpuSample struct {
	server, pods time.Duration
	n            int // pods started
}

func (s cpuSample) perPod() (server, pods time.Duration) {
	if s.n == 0 {
		return 0, 0
	}
	return s.server / time.Duration(s.n), s.pods / time.Duration(s.n)
}
