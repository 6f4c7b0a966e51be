package metrics

import "time"

// Names of the node metrics. Where the kubelet has the metric, the name,
// type and help are the kubelet's, so dashboards made for it work.
const (
	PodStartDurationName  = "kubelet_pod_start_duration_seconds"
	RunningPodsName       = "kubelet_running_pods"
	RunningContainersName = "kubelet_running_containers"
	ImagePullsName        = "orch_agent_image_pulls_total"
	ImagePullDurationName = "orch_agent_image_pull_duration_seconds"
)

// podStartBuckets reach from a pod whose image is present (tens of ms on
// orch) to one waiting for a large pull over a slow link.
var podStartBuckets = []float64{0.05, 0.1, 0.25, 0.5, 1, 2, 3, 5, 10, 20, 30, 60, 120, 300, 600}

// imagePullBuckets are sized for pulls over edge links.
var imagePullBuckets = []float64{0.1, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600}

// NodeMetrics are the metrics an agent records as things happen. The
// methods of a nil *NodeMetrics do nothing, so code paths and tests that
// run without metrics need no checks.
type NodeMetrics struct {
	podStart     *Histogram
	pulls        *CounterVec
	pullDuration *Histogram
}

// NodeState is what the agent's gauges read at scrape time.
type NodeState interface {
	// RunningPods is the number of pods with a running sandbox.
	RunningPods() int
	// RunningContainers is the number of running containers, pause
	// containers excluded.
	RunningContainers() int
}

// RegisterNode defines the agent's metrics in reg: pod start latency,
// image pulls, and running pods and containers read from state.
func RegisterNode(reg *Registry, state NodeState) *NodeMetrics {
	reg.NewGaugeFunc(RunningPodsName, "Number of pods that have a running pod sandbox",
		func() float64 { return float64(state.RunningPods()) })
	reg.NewCallback(RunningContainersName, "Number of containers currently running", GaugeType, []string{"container_state"},
		func(emit func(float64, ...string)) { emit(float64(state.RunningContainers()), "running") })
	return &NodeMetrics{
		podStart: reg.NewHistogram(PodStartDurationName,
			"Duration in seconds from kubelet seeing a pod for the first time to the pod starting to run", podStartBuckets),
		pulls: reg.NewCounterVec(ImagePullsName,
			"Image pulls from registries by result (success or failure).", "result"),
		pullDuration: reg.NewHistogram(ImagePullDurationName,
			"Duration in seconds of successful image pulls from registries.", imagePullBuckets),
	}
}

// ObservePodStart records the time from the agent first seeing a pod to
// the pod running.
func (m *NodeMetrics) ObservePodStart(d time.Duration) {
	if m == nil {
		return
	}
	m.podStart.Observe(d.Seconds())
}

// ObserveImagePull records one pull from a registry that took d and
// ended with err.
func (m *NodeMetrics) ObserveImagePull(d time.Duration, err error) {
	if m == nil {
		return
	}
	if err != nil {
		m.pulls.With("failure").Inc()
		return
	}
	m.pulls.With("success").Inc()
	m.pullDuration.Observe(d.Seconds())
}
