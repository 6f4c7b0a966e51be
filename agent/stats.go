package agent

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/opencontainers/cgroups"

	"github.com/orch-dev/orch/internal/resourcemetrics"
	"github.com/orch-dev/orch/runtime/container"
)

// Resource metrics: the agent serves the kubelet's /metrics/resource on
// its node API, read from the cgroups of the node, its pods and their
// containers, for the server's metrics API (`kubectl top`, the
// HorizontalPodAutoscaler). CPU is the cumulative usage counter; the
// server turns two readings into a rate. Memory is the working set as the
// kubelet (cAdvisor) defines it: usage minus inactive file pages, which
// the kernel reclaims first.

// cgroupStats reads usage from a cgroup filesystem mounted at root
// (/sys/fs/cgroup): per-controller hierarchies on cgroup v1, the unified
// hierarchy on v2.
type cgroupStats struct {
	root string
	v2   bool
	// meminfo is /proc/meminfo, for the node's own memory.
	meminfo string
}

func hostCgroupStats() cgroupStats {
	return cgroupStats{root: "/sys/fs/cgroup", v2: cgroups.IsCgroup2UnifiedMode(), meminfo: "/proc/meminfo"}
}

// cpuSeconds is the cumulative CPU time of the cgroup at p, in seconds:
// v1 cpuacct.usage (nanoseconds), v2 cpu.stat usage_usec.
func (s cgroupStats) cpuSeconds(p string) (float64, error) {
	if s.v2 {
		v, err := statField(filepath.Join(s.root, p, "cpu.stat"), "usage_usec")
		return float64(v) / 1e6, err
	}
	v, err := readUint(filepath.Join(s.root, "cpuacct", p, "cpuacct.usage"))
	return float64(v) / 1e9, err
}

// memoryWorkingSet is the cgroup's memory usage less its inactive file
// pages (v1: memory.usage_in_bytes and total_inactive_file; v2:
// memory.current and inactive_file), never below zero.
func (s cgroupStats) memoryWorkingSet(p string) (uint64, error) {
	usageFile, statFile, inactiveKey := filepath.Join(s.root, "memory", p, "memory.usage_in_bytes"),
		filepath.Join(s.root, "memory", p, "memory.stat"), "total_inactive_file"
	if s.v2 {
		usageFile, statFile, inactiveKey = filepath.Join(s.root, p, "memory.current"), filepath.Join(s.root, p, "memory.stat"), "inactive_file"
	}
	usage, err := readUint(usageFile)
	if err != nil {
		return 0, err
	}
	inactive, err := statField(statFile, inactiveKey)
	if err != nil {
		return 0, err
	}
	if inactive > usage {
		return 0, nil
	}
	return usage - inactive, nil
}

// usage reads the cgroup at p at now; memory that cannot be read leaves
// CPU usable (MemoryUnread).
func (s cgroupStats) usage(p string, now time.Time) (resourcemetrics.Usage, error) {
	cpu, err := s.cpuSeconds(p)
	if err != nil {
		return resourcemetrics.Usage{}, err
	}
	u := resourcemetrics.Usage{CPUSeconds: cpu, Time: now}
	if u.MemoryBytes, err = s.memoryWorkingSet(p); err != nil {
		u.MemoryUnread = true
	}
	return u, nil
}

// nodeUsage is the whole machine's: the root cgroup's CPU time, and the
// memory in use less inactive file pages from /proc/meminfo (the root
// cgroup has no memory.current on v2).
func (s cgroupStats) nodeUsage(now time.Time) (resourcemetrics.Usage, error) {
	cpu, err := s.cpuSeconds("/")
	if err != nil {
		return resourcemetrics.Usage{}, err
	}
	u := resourcemetrics.Usage{CPUSeconds: cpu, Time: now}
	info, err := readMeminfo(s.meminfo)
	if err != nil {
		u.MemoryUnread = true
		return u, nil
	}
	used := info["MemTotal"] - info["MemFree"]
	if inactive := info["Inactive(file)"]; inactive < used {
		used -= inactive
	}
	u.MemoryBytes = used
	return u, nil
}

func readUint(file string) (uint64, error) {
	b, err := os.ReadFile(file)
	if err != nil {
		return 0, err
	}
	v, err := strconv.ParseUint(string(bytes.TrimSpace(b)), 10, 64)
	if err != nil {
		return 0, fmt.Errorf("%s: %w", file, err)
	}
	return v, nil
}

// statField reads "key value" from a flat keyed file (cpu.stat,
// memory.stat).
func statField(file, key string) (uint64, error) {
	b, err := os.ReadFile(file)
	if err != nil {
		return 0, err
	}
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), " ")
		if ok && k == key {
			n, err := strconv.ParseUint(strings.TrimSpace(v), 10, 64)
			if err != nil {
				return 0, fmt.Errorf("%s: %s: %w", file, key, err)
			}
			return n, nil
		}
	}
	return 0, fmt.Errorf("%s: no %s", file, key)
}

// readMeminfo returns /proc/meminfo's values in bytes.
func readMeminfo(file string) (map[string]uint64, error) {
	b, err := os.ReadFile(file)
	if err != nil {
		return nil, err
	}
	out := map[string]uint64{}
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		if !ok {
			continue
		}
		fields := strings.Fields(v)
		if len(fields) == 0 {
			continue
		}
		n, err := strconv.ParseUint(fields[0], 10, 64)
		if err != nil {
			continue
		}
		if len(fields) > 1 && fields[1] == "kB" {
			n *= 1024
		}
		out[k] = n
	}
	if _, ok := out["MemTotal"]; !ok {
		return nil, errors.New(file + ": no MemTotal")
	}
	return out, nil
}

// podsAndContainers lists what runs on this node: the runtime's sandboxes
// and containers, with their cgroups (CgroupRoot/pods/<qos>/<pod-uid> for
// a pod, and the container's ID below it, as runtime/container lays them
// out).
type podsAndContainers interface {
	ListSandboxes() []*container.Sandbox
	ListContainers() []container.ContainerStatus
}

// resourceSnapshot reads the node's, every ready pod's and every running
// container's usage. A pod or container whose cgroup cannot be read (it
// just ended) is left out, as the kubelet leaves it out.
func resourceSnapshot(rt podsAndContainers, stats cgroupStats, now time.Time) resourcemetrics.Snapshot {
	var snap resourcemetrics.Snapshot
	if u, err := stats.nodeUsage(now); err == nil {
		snap.Node = &u
	}
	sandboxes := map[string]*container.Sandbox{}
	for _, sb := range rt.ListSandboxes() {
		if !sb.Ready || sb.PodCgroup == "" {
			continue
		}
		ref := resourcemetrics.PodRef{Namespace: sb.Labels[labelPodNamespace], Name: sb.Labels[labelPodName]}
		if ref.Namespace == "" || ref.Name == "" {
			continue // not a pod the agent started
		}
		sandboxes[sb.ID] = sb
		if u, err := stats.usage(sb.PodCgroup, now); err == nil {
			snap.Pods = append(snap.Pods, resourcemetrics.Pod{Pod: ref, Usage: u})
		}
	}
	for _, c := range rt.ListContainers() {
		sb := sandboxes[c.SandboxID]
		if sb == nil || c.State != container.StateRunning || c.Labels[labelContainerName] == "" {
			continue
		}
		u, err := stats.usage(path.Join(sb.PodCgroup, c.ID), now)
		if err != nil {
			continue
		}
		snap.Containers = append(snap.Containers, resourcemetrics.Container{
			Pod:  resourcemetrics.PodRef{Namespace: c.Labels[labelPodNamespace], Name: c.Labels[labelPodName]},
			Name: c.Labels[labelContainerName], Usage: u,
		})
	}
	return snap
}

// resourceMetricsHandler serves GET /metrics/resource.
func resourceMetricsHandler(rt podsAndContainers, stats cgroupStats) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		snap := resourceSnapshot(rt, stats, time.Now())
		var buf bytes.Buffer
		if err := resourcemetrics.Write(&buf, snap); err != nil {
			writeTextError(w, http.StatusInternalServerError, err.Error())
			return
		}
		w.Header().Set("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
		// Compressed when asked, as the kubelet's (promhttp) is: the
		// scrape crosses the node's uplink every resolution.
		if strings.Contains(r.Header.Get("Accept-Encoding"), "gzip") {
			w.Header().Set("Content-Encoding", "gzip")
			zw := gzip.NewWriter(w)
			_, _ = zw.Write(buf.Bytes())
			_ = zw.Close()
			return
		}
		_, _ = w.Write(buf.Bytes())
	})
}

// registerResourceMetrics adds GET /metrics/resource to a node API mux.
func (a *Agent) registerResourceMetrics(mux *http.ServeMux) {
	mux.Handle(http.MethodGet+" "+resourcemetrics.Path, resourceMetricsHandler(a.rt, hostCgroupStats()))
}
