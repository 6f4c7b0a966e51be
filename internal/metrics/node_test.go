package metrics

import (
	"errors"
	"strings"
	"testing"
	"time"
)

type fakeNode struct{ pods, containers int }

func (f *fakeNode) RunningPods() int       { return f.pods }
func (f *fakeNode) RunningContainers() int { return f.containers }

func TestRegisterNode(t *testing.T) {
	reg := NewRegistry()
	node := &fakeNode{pods: 2, containers: 3}
	m := RegisterNode(reg, node)
	m.ObservePodStart(40 * time.Millisecond)
	m.ObservePodStart(4 * time.Second)
	m.ObserveImagePull(3*time.Second, nil)
	m.ObserveImagePull(time.Second, errors.New("manifest unknown"))
	m.ObserveImagePull(time.Second, errors.New("manifest unknown"))
	node.pods = 5 // read at scrape time

	out := output(t, reg)
	for _, want := range []string{
		"# TYPE kubelet_running_pods gauge\nkubelet_running_pods 5\n",
		`kubelet_running_containers{container_state="running"} 3` + "\n",
		"# TYPE kubelet_pod_start_duration_seconds histogram\n",
		`kubelet_pod_start_duration_seconds_bucket{le="0.05"} 1` + "\n",
		`kubelet_pod_start_duration_seconds_bucket{le="3"} 1` + "\n",
		`kubelet_pod_start_duration_seconds_bucket{le="5"} 2` + "\n",
		"kubelet_pod_start_duration_seconds_sum 4.04\n",
		"kubelet_pod_start_duration_seconds_count 2\n",
		`orch_agent_image_pulls_total{result="failure"} 2` + "\n",
		`orch_agent_image_pulls_total{result="success"} 1` + "\n",
		"orch_agent_image_pull_duration_seconds_count 1\n",
		"orch_agent_image_pull_duration_seconds_sum 3\n",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
}

func TestNilNodeMetrics(t *testing.T) {
	var m *NodeMetrics
	m.ObservePodStart(time.Second)
	m.ObserveImagePull(time.Second, nil)
}
