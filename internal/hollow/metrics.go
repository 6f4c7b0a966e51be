package hollow

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"sort"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	"k8s.io/apimachinery/pkg/types"

	"github.com/orch-dev/orch/internal/resourcemetrics"
)

// Simulated resource usage of a pod, changeable at run time by annotating
// the pod: CPUAnnotation is a CPU quantity ("500m": half a core, which the
// pod's cumulative CPU time grows by), MemoryAnnotation a memory quantity
// ("100Mi"). The usage is shared evenly by the pod's containers. Pods
// without them use nothing.
const (
	CPUAnnotation    = "hollow.orch.dev/cpu"
	MemoryAnnotation = "hollow.orch.dev/memory"
)

// Usage of a simulated node's own system processes, added to its pods'.
const (
	nodeBaseCPUMilli = 50
	nodeBaseMemory   = 256 << 20
)

// podUsage integrates a pod's simulated CPU rate into cumulative CPU time.
type podUsage struct {
	ref        resourcemetrics.PodRef
	node       string
	containers []string
	cpuMilli   int64   // current rate in millicores
	memory     int64   // bytes
	cpuSeconds float64 // accumulated up to since
	since      time.Time
}

// cpuAt is the cumulative CPU time at t.
func (u *podUsage) cpuAt(t time.Time) float64 {
	return u.cpuSeconds + float64(u.cpuMilli)/1000*t.Sub(u.since).Seconds()
}

// nodeUsage is what a node's cumulative CPU time holds beyond its current
// pods': the CPU time of pods that are gone, and its base usage since it
// started.
type nodeUsage struct {
	cpuSeconds float64 // of pods that are gone
	since      time.Time
}

// trackUsage records a running pod's annotated usage; the rate changes
// from now on, what was used so far stays.
func (c *Cluster) trackUsage(pod *corev1.Pod, now time.Time) {
	cpuQ, memQ := quantity(pod.Annotations[CPUAnnotation]), quantity(pod.Annotations[MemoryAnnotation])
	cpu, mem := cpuQ.MilliValue(), memQ.Value()
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.usage == nil {
		c.usage = map[types.UID]*podUsage{}
	}
	u := c.usage[pod.UID]
	if u == nil {
		u = &podUsage{ref: resourcemetrics.PodRef{Namespace: pod.Namespace, Name: pod.Name}, node: pod.Spec.NodeName, since: now}
		for _, ctr := range pod.Spec.Containers {
			u.containers = append(u.containers, ctr.Name)
		}
		c.usage[pod.UID] = u
	}
	u.cpuSeconds, u.since = u.cpuAt(now), now
	u.cpuMilli, u.memory = cpu, mem
}

// forgetUsage drops a pod that is gone; its CPU time stays in its node's.
func (c *Cluster) forgetUsage(uid types.UID, now time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	u := c.usage[uid]
	if u == nil {
		return
	}
	if n := c.nodes[u.node]; n != nil {
		n.usage.cpuSeconds += u.cpuAt(now)
	}
	delete(c.usage, uid)
}

// forgetUsageExcept drops the pods not in live, after a relist.
func (c *Cluster) forgetUsageExcept(live map[types.UID]bool, now time.Time) {
	c.mu.Lock()
	var gone []types.UID
	for uid := range c.usage {
		if !live[uid] {
			gone = append(gone, uid)
		}
	}
	c.mu.Unlock()
	for _, uid := range gone {
		c.forgetUsage(uid, now)
	}
}

// quantity parses an annotation; a malformed one counts as zero, as the
// test asked for nothing sensible.
func quantity(s string) resource.Quantity {
	q, err := resource.ParseQuantity(strings.TrimSpace(s))
	if err != nil || q.Sign() < 0 {
		return resource.Quantity{}
	}
	return q
}

// Snapshot is what node's /metrics/resource reports at now.
func (c *Cluster) Snapshot(node string, now time.Time) (resourcemetrics.Snapshot, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := c.nodes[node]
	if n == nil {
		return resourcemetrics.Snapshot{}, fmt.Errorf("no hollow node %s", node)
	}
	nodeCPU := n.usage.cpuSeconds + nodeBaseCPUMilli/1000.0*now.Sub(n.usage.since).Seconds()
	nodeMem := uint64(nodeBaseMemory)
	var s resourcemetrics.Snapshot
	for _, u := range c.usage {
		if u.node != node {
			continue
		}
		cpu, mem := u.cpuAt(now), uint64(u.memory)
		nodeCPU += cpu
		nodeMem += mem
		s.Pods = append(s.Pods, resourcemetrics.Pod{Pod: u.ref, Usage: resourcemetrics.Usage{CPUSeconds: cpu, MemoryBytes: mem, Time: now}})
		for _, name := range u.containers {
			share := float64(len(u.containers))
			s.Containers = append(s.Containers, resourcemetrics.Container{Pod: u.ref, Name: name,
				Usage: resourcemetrics.Usage{CPUSeconds: cpu / share, MemoryBytes: mem / uint64(len(u.containers)), Time: now}})
		}
	}
	sort.Slice(s.Pods, func(i, j int) bool { return podLess(s.Pods[i].Pod, s.Pods[j].Pod) })
	sort.SliceStable(s.Containers, func(i, j int) bool { return podLess(s.Containers[i].Pod, s.Containers[j].Pod) })
	s.Node = &resourcemetrics.Usage{CPUSeconds: nodeCPU, MemoryBytes: nodeMem, Time: now}
	return s, nil
}

func podLess(a, b resourcemetrics.PodRef) bool {
	if a.Namespace != b.Namespace {
		return a.Namespace < b.Namespace
	}
	return a.Name < b.Name
}

// Transport reaches node's simulated node API in memory, as the API server
// reaches an agent: it answers GET /metrics/resource, and 404 otherwise. A
// node whose heartbeats are stopped does not answer.
func (c *Cluster) Transport(node string) (http.RoundTripper, error) {
	c.mu.Lock()
	_, ok := c.nodes[node]
	c.mu.Unlock()
	if !ok {
		return nil, fmt.Errorf("node %s is not connected", node)
	}
	return nodeTransport{c: c, node: node}, nil
}

type nodeTransport struct {
	c    *Cluster
	node string
}

func (t nodeTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	if req.Body != nil {
		_ = req.Body.Close()
	}
	if err := req.Context().Err(); err != nil {
		return nil, err
	}
	t.c.mu.Lock()
	silent := t.c.stopped[t.node]
	t.c.mu.Unlock()
	if silent {
		return nil, fmt.Errorf("dial node %s: connection timed out", t.node)
	}
	if req.Method != http.MethodGet || req.URL.Path != resourcemetrics.Path {
		return response(req, http.StatusNotFound, "text/plain; charset=utf-8", []byte("404 page not found\n")), nil
	}
	s, err := t.c.Snapshot(t.node, time.Now())
	if err != nil {
		return nil, err
	}
	var buf bytes.Buffer
	if err := resourcemetrics.Write(&buf, s); err != nil {
		return nil, err
	}
	return response(req, http.StatusOK, "text/plain; version=0.0.4; charset=utf-8", buf.Bytes()), nil
}

func response(req *http.Request, code int, contentType string, body []byte) *http.Response {
	return &http.Response{
		Status: fmt.Sprintf("%d %s", code, http.StatusText(code)), StatusCode: code,
		Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1,
		Header:        http.Header{"Content-Type": {contentType}},
		Body:          io.NopCloser(bytes.NewReader(body)),
		ContentLength: int64(len(body)), Request: req,
	}
}
