package hollow

import (
	"context"
	"io"
	"math"
	"net/http"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/orch-dev/orch/internal/resourcemetrics"
)

func TestSimulatedUsageIntegratesRateChanges(t *testing.T) {
	t0 := time.Unix(1_700_000_000, 0)
	c := &Cluster{nodes: map[string]*nodeState{"n": {name: "n", usage: nodeUsage{since: t0}}}, stopped: map[string]bool{}}
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: "default", UID: "u1",
			Annotations: map[string]string{CPUAnnotation: "500m", MemoryAnnotation: "100Mi"}},
		Spec: corev1.PodSpec{NodeName: "n", Containers: []corev1.Container{{Name: "a"}, {Name: "b"}}},
	}
	c.trackUsage(pod, t0)
	// 10 s at half a core, then 10 s at two cores.
	pod.Annotations[CPUAnnotation] = "2"
	c.trackUsage(pod, t0.Add(10*time.Second))
	s, err := c.Snapshot("n", t0.Add(20*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	if len(s.Pods) != 1 || math.Abs(s.Pods[0].CPUSeconds-25) > 1e-9 || s.Pods[0].MemoryBytes != 100<<20 {
		t.Fatalf("pods = %+v", s.Pods)
	}
	if len(s.Containers) != 2 || math.Abs(s.Containers[1].CPUSeconds-12.5) > 1e-9 || s.Containers[1].MemoryBytes != 50<<20 {
		t.Fatalf("containers = %+v", s.Containers)
	}
	wantNode := 25 + nodeBaseCPUMilli/1000.0*20
	if math.Abs(s.Node.CPUSeconds-wantNode) > 1e-9 || s.Node.MemoryBytes != nodeBaseMemory+100<<20 {
		t.Fatalf("node = %+v", s.Node)
	}
	// A pod that goes away keeps counting in its node's CPU time, which
	// is cumulative.
	c.forgetUsage(pod.UID, t0.Add(20*time.Second))
	s, _ = c.Snapshot("n", t0.Add(20*time.Second))
	if len(s.Pods) != 0 || math.Abs(s.Node.CPUSeconds-wantNode) > 1e-9 {
		t.Fatalf("after the pod is gone: %+v", s)
	}
	if _, err := c.Snapshot("other", t0); err == nil {
		t.Fatal("Snapshot of an unknown node succeeded")
	}
}

func TestTransportServesResourceMetrics(t *testing.T) {
	c := &Cluster{nodes: map[string]*nodeState{"n": {name: "n", usage: nodeUsage{since: time.Now()}}}, stopped: map[string]bool{}}
	if _, err := c.Transport("missing"); err == nil {
		t.Fatal("Transport of an unknown node succeeded")
	}
	rt, err := c.Transport("n")
	if err != nil {
		t.Fatal(err)
	}
	get := func(path string) (*http.Response, error) {
		req, _ := http.NewRequestWithContext(context.Background(), http.MethodGet, "http://n"+path, nil)
		return rt.RoundTrip(req)
	}
	resp, err := get(resourcemetrics.Path)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %v %v", resourcemetrics.Path, resp, err)
	}
	s, err := resourcemetrics.Parse(resp.Body, time.Now())
	if err != nil || s.Node == nil || s.Node.MemoryBytes != nodeBaseMemory {
		t.Fatalf("scrape = %+v, %v", s, err)
	}
	resp, err = get("/pods")
	if err != nil || resp.StatusCode != http.StatusNotFound {
		t.Fatalf("GET /pods: %v %v", resp, err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	c.stopped["n"] = true
	if _, err := get(resourcemetrics.Path); err == nil {
		t.Fatal("a silent node answered")
	}
}
