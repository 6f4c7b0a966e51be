package container

import (
	"errors"
	"fmt"
	"os"
	"path"
	"strings"

	"github.com/opencontainers/cgroups"
	"github.com/opencontainers/cgroups/manager"
	"golang.org/x/sys/unix"
)

// Resources are a container's (or pod's) cgroup limits in cgroup v1 units;
// the v2 mapping happens here, not in callers.
type Resources struct {
	// CPUShares is the relative CPU weight (v1 cpu.shares, 2..262144); 0
	// leaves the default. Use MilliCPUToShares for a CPU request.
	CPUShares uint64
	// CPUQuota and CPUPeriod (µs) cap CPU time per period; 0 means no cap.
	// Use MilliCPUToQuota for a CPU limit.
	CPUQuota  int64
	CPUPeriod uint64
	// MemoryLimit in bytes; 0 means unlimited. Swap is not allowed beyond it.
	MemoryLimit int64
	// PidsLimit caps the number of tasks; 0 means unlimited.
	PidsLimit int64
}

// Kubernetes' CPU conversions (pkg/kubelet/cm/helpers_linux.go).
const (
	minShares     = 2
	sharesPerCPU  = 1024
	milliPerCPU   = 1000
	quotaPeriodUS = 100000
	minQuotaUS    = 1000
)

// MilliCPUToShares converts a CPU request in millicores to cpu.shares.
func MilliCPUToShares(milli int64) uint64 {
	if milli == 0 {
		return minShares
	}
	shares := milli * sharesPerCPU / milliPerCPU
	if shares < minShares {
		return minShares
	}
	return uint64(shares)
}

// MilliCPUToQuota converts a CPU limit in millicores to a CFS quota for
// the default 100 ms period; 0 means no limit.
func MilliCPUToQuota(milli int64) (quota int64, period uint64) {
	if milli == 0 {
		return 0, 0
	}
	quota = milli * quotaPeriodUS / milliPerCPU
	if quota < minQuotaUS {
		quota = minQuotaUS
	}
	return quota, quotaPeriodUS
}

// cgroupResources maps r onto libcontainer's resources for the host's
// cgroup version. v2 has no shares: they become cpu.weight with the same
// formula as runc and crun.
func (r Resources) cgroupResources(v2 bool) *cgroups.Resources {
	res := &cgroups.Resources{
		CpuQuota:  r.CPUQuota,
		CpuPeriod: r.CPUPeriod,
		Memory:    r.MemoryLimit,
	}
	if r.PidsLimit > 0 {
		res.PidsLimit = &r.PidsLimit
	}
	if v2 {
		res.CpuWeight = cgroups.ConvertCPUSharesToCgroupV2Value(r.CPUShares)
	} else {
		res.CpuShares = r.CPUShares
	}
	if r.MemoryLimit > 0 && swapAccounting(v2) {
		// memory+swap equal to memory: no swap, so the limit means OOM.
		res.MemorySwap = r.MemoryLimit
	}
	return res
}

func swapAccounting(v2 bool) bool {
	if v2 {
		return true
	}
	_, err := os.Stat("/sys/fs/cgroup/memory/memory.memsw.limit_in_bytes")
	return err == nil
}

// qosDir is the cgroup directory name of a QoS class.
func qosDir(class string) string {
	switch c := strings.ToLower(class); c {
	case "guaranteed", "burstable", "besteffort":
		return c
	default:
		return "besteffort"
	}
}

func (r *Runtime) podCgroup(qos, podUID string) string {
	return path.Join(r.cfg.CgroupRoot, "pods", qosDir(qos), podUID)
}

// CheckCgroups reports a start-up error a user can act on when a
// controller the runtime needs is missing, e.g. the memory controller on
// Raspberry Pi OS without cgroup_enable=memory.
func CheckCgroups() error {
	if cgroups.IsCgroup2UnifiedMode() {
		b, err := os.ReadFile("/sys/fs/cgroup/cgroup.controllers")
		if err != nil {
			return fmt.Errorf("read cgroup v2 controllers: %w", err)
		}
		have := strings.Fields(string(b))
		for _, want := range []string{"cpu", "memory", "pids"} {
			if !contains(have, want) {
				return fmt.Errorf("cgroup v2 controller %q is not available (add cgroup_enable=%s to the kernel command line)", want, want)
			}
		}
		return nil
	}
	var fs unix.Statfs_t
	if err := unix.Statfs("/sys/fs/cgroup", &fs); err == nil && fs.Type == unix.SYSFS_MAGIC {
		// Nothing mounted there: typically `ip netns exec`, which mounts
		// a fresh /sys for the command it runs.
		return errors.New("no cgroup file system is mounted at /sys/fs/cgroup in this mount namespace " +
			"(under `ip netns exec`, which remounts /sys, use `nsenter --net=/run/netns/NAME` instead)")
	}
	for _, want := range []string{"cpu", "memory", "pids", "devices"} {
		if _, err := os.Stat("/sys/fs/cgroup/" + want); err != nil {
			return fmt.Errorf("cgroup v1 controller %q is not mounted (add cgroup_enable=%s to the kernel command line): %w", want, want, err)
		}
	}
	return nil
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// ensureCgroup creates the cgroup at the absolute path p with resources
// res, without putting any process in it.
func ensureCgroup(p string, res *cgroups.Resources) (cgroups.Manager, error) {
	if res == nil {
		res = &cgroups.Resources{}
	}
	// Pod and pause cgroups leave device rules alone; libcontainer sets
	// each container's own.
	res.SkipDevices = true
	m, err := manager.New(&cgroups.Cgroup{Path: p, Resources: res})
	if err != nil {
		return nil, fmt.Errorf("cgroup %s: %w", p, err)
	}
	if err := m.Apply(-1); err != nil {
		return nil, fmt.Errorf("create cgroup %s: %w", p, err)
	}
	if err := m.Set(res); err != nil {
		return nil, fmt.Errorf("set cgroup %s limits: %w", p, err)
	}
	return m, nil
}

// removeCgroup removes the cgroup at p in every hierarchy; a missing one
// is not an error.
func removeCgroup(p string) error {
	m, err := manager.New(&cgroups.Cgroup{Path: p, Resources: &cgroups.Resources{SkipDevices: true}})
	if err != nil {
		return fmt.Errorf("cgroup %s: %w", p, err)
	}
	if err := m.Destroy(); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("remove cgroup %s: %w", p, err)
	}
	return nil
}

// oomKilled reports whether the kernel OOM-killed a task in cgroup p.
func oomKilled(p string) bool {
	m, err := manager.New(&cgroups.Cgroup{Path: p, Resources: &cgroups.Resources{SkipDevices: true}})
	if err != nil {
		return false
	}
	n, err := m.OOMKillCount()
	return err == nil && n > 0
}
