package agent

import (
	"math"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/orch-dev/orch/internal/resourcemetrics"
	"github.com/orch-dev/orch/runtime/container"
)

// fakeCgroupFS writes files relative to a temporary cgroup root.
func fakeCgroupFS(t *testing.T, files map[string]string) string {
	t.Helper()
	root := t.TempDir()
	for name, content := range files {
		p := filepath.Join(root, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return root
}

const testMeminfo = `MemTotal:        8000000 kB
MemFree:         2000000 kB
MemAvailable:    5000000 kB
Inactive(file):  1000000 kB
`

func TestCgroupStatsV1AndV2(t *testing.T) {
	const pod = "/orch/pods/burstable/uid-1"
	for _, tc := range []struct {
		name  string
		v2    bool
		files map[string]string
	}{
		{name: "v1", files: map[string]string{
			"cpuacct/cpuacct.usage":                      "100000000000\n",
			"cpuacct" + pod + "/cpuacct.usage":           "2500000000\n",
			"memory" + pod + "/memory.usage_in_bytes":    "104857600\n",
			"memory" + pod + "/memory.stat":              "cache 10\ninactive_file 999\ntotal_inactive_file 4194304\n",
			"cpuacct" + pod + "/c1/cpuacct.usage":        "500000000\n",
			"memory" + pod + "/c1/memory.usage_in_bytes": "1000\n",
			"memory" + pod + "/c1/memory.stat":           "total_inactive_file 5000\n",
		}},
		{name: "v2", v2: true, files: map[string]string{
			"cpu.stat":                 "usage_usec 100000000\nuser_usec 1\n",
			pod + "/cpu.stat":          "usage_usec 2500000\nuser_usec 2000000\nsystem_usec 500000\n",
			pod + "/memory.current":    "104857600\n",
			pod + "/memory.stat":       "anon 1\nfile 2\ninactive_file 4194304\nactive_file 3\n",
			pod + "/c1/cpu.stat":       "usage_usec 500000\n",
			pod + "/c1/memory.current": "1000\n",
			pod + "/c1/memory.stat":    "inactive_file 5000\n",
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			root := fakeCgroupFS(t, tc.files)
			meminfo := filepath.Join(root, "meminfo")
			if err := os.WriteFile(meminfo, []byte(testMeminfo), 0o644); err != nil {
				t.Fatal(err)
			}
			s := cgroupStats{root: root, v2: tc.v2, meminfo: meminfo}
			now := time.Unix(1_700_000_000, 0)

			node, err := s.nodeUsage(now)
			if err != nil || node.CPUSeconds != 100 || node.MemoryBytes != 5_000_000*1024 || node.MemoryUnread {
				t.Errorf("node = %+v, %v", node, err)
			}
			u, err := s.usage(pod, now)
			if err != nil || math.Abs(u.CPUSeconds-2.5) > 1e-9 || u.MemoryBytes != 100<<20-4<<20 {
				t.Errorf("pod = %+v, %v", u, err)
			}
			// More inactive file pages than usage: the working set is 0.
			u, err = s.usage(pod+"/c1", now)
			if err != nil || u.CPUSeconds != 0.5 || u.MemoryBytes != 0 || u.MemoryUnread {
				t.Errorf("container = %+v, %v", u, err)
			}
			if _, err := s.usage(pod+"/gone", now); err == nil {
				t.Error("usage of a missing cgroup succeeded")
			}
		})
	}
}

type fakeRuntime struct {
	sandboxes  []*container.Sandbox
	containers []container.ContainerStatus
}

func (f *fakeRuntime) ListSandboxes() []*container.Sandbox         { return f.sandboxes }
func (f *fakeRuntime) ListContainers() []container.ContainerStatus { return f.containers }

func TestResourceMetricsEndpoint(t *testing.T) {
	const podCg = "/orch/pods/besteffort/uid-1"
	root := fakeCgroupFS(t, map[string]string{
		"cpu.stat":                      "usage_usec 7000000\n",
		podCg + "/cpu.stat":             "usage_usec 3000000\n",
		podCg + "/memory.current":       "3000\n",
		podCg + "/memory.stat":          "inactive_file 0\n",
		podCg + "/ctr-1/cpu.stat":       "usage_usec 2000000\n",
		podCg + "/ctr-1/memory.current": "2000\n",
		podCg + "/ctr-1/memory.stat":    "inactive_file 0\n",
	})
	labels := func(container string) map[string]string {
		l := map[string]string{labelPodNamespace: "default", labelPodName: "web", labelPodUID: "uid-1"}
		if container != "" {
			l[labelContainerName] = container
		}
		return l
	}
	rt := &fakeRuntime{
		sandboxes: []*container.Sandbox{
			{ID: "sb-1", Ready: true, PodCgroup: podCg, Labels: labels("")},
			{ID: "sb-old", Ready: false, PodCgroup: "/orch/pods/besteffort/uid-0", Labels: labels("")},
		},
		containers: []container.ContainerStatus{
			{ID: "ctr-1", SandboxID: "sb-1", State: container.StateRunning, Labels: labels("app")},
			{ID: "ctr-0", SandboxID: "sb-1", State: container.StateExited, Labels: labels("app")},
			{ID: "ctr-gone", SandboxID: "sb-1", State: container.StateRunning, Labels: labels("sidecar")},
		},
	}
	srv := httptest.NewServer(resourceMetricsHandler(rt, cgroupStats{root: root, v2: true, meminfo: filepath.Join(root, "none")}))
	defer srv.Close()
	resp, err := http.Get(srv.URL + resourcemetrics.Path)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/plain") {
		t.Fatalf("answer %s %s", resp.Status, resp.Header.Get("Content-Type"))
	}
	if !resp.Uncompressed { // net/http asked for gzip and unpacked it
		t.Error("the answer was not compressed")
	}
	snap, err := resourcemetrics.Parse(resp.Body, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if snap.Node == nil || snap.Node.CPUSeconds != 7 || !snap.Node.MemoryUnread {
		t.Errorf("node = %+v (no meminfo: CPU only)", snap.Node)
	}
	if len(snap.Pods) != 1 || snap.Pods[0].Pod.Name != "web" || snap.Pods[0].CPUSeconds != 3 || snap.Pods[0].MemoryBytes != 3000 {
		t.Errorf("pods = %+v", snap.Pods)
	}
	// The exited container and the one whose cgroup is gone are left out.
	if len(snap.Containers) != 1 || snap.Containers[0].Name != "app" || snap.Containers[0].CPUSeconds != 2 || snap.Containers[0].MemoryBytes != 2000 {
		t.Errorf("containers = %+v", snap.Containers)
	}
}

// TestHostCgroupStats reads this machine's own root cgroup: whatever the
// version, the node's CPU time and memory are there.
func TestHostCgroupStats(t *testing.T) {
	u, err := hostCgroupStats().nodeUsage(time.Now())
	if err != nil {
		t.Skipf("no cgroup CPU accounting here: %v", err)
	}
	if u.CPUSeconds <= 0 || u.MemoryUnread || u.MemoryBytes == 0 {
		t.Fatalf("node usage = %+v", u)
	}
}
