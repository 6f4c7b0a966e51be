package podautoscaler

import (
	"errors"
	"fmt"
	"math"
	"time"

	corev1 "k8s.io/api/core/v1"

	"github.com/orch-dev/orch/server/metricsapi"
)

// Kubernetes' kube-controller-manager defaults.
const (
	// defaultTolerance: ratios within 10% of 1.0 do not scale.
	defaultTolerance = 0.1
	// cpuInitializationPeriod: CPU samples of a pod that started this
	// recently are trusted only once it is ready and a whole window has
	// passed since (--horizontal-pod-autoscaler-cpu-initialization-period).
	cpuInitializationPeriod = 5 * time.Minute
	// delayOfInitialReadinessStatus: a pod that turned unready this soon
	// after starting has never been ready
	// (--horizontal-pod-autoscaler-initial-readiness-delay).
	delayOfInitialReadinessStatus = 30 * time.Second
)

// replicaCalculator is the upstream ReplicaCalculator for resource
// metrics: it proposes a replica count from the pods' usage.
type replicaCalculator struct {
	tolerance float64
	now       time.Time
}

// podGroups sorts a target's pods as the upstream groupPods does.
type podGroups struct {
	ready   int
	unready map[string]bool // pending, or not ready long enough for CPU
	missing map[string]bool // running but without metrics
	ignored map[string]bool // deleted or failed
}

func (rc replicaCalculator) groupPods(pods []*corev1.Pod, metrics map[string]metricsapi.PodUsage, res corev1.ResourceName) podGroups {
	g := podGroups{unready: map[string]bool{}, missing: map[string]bool{}, ignored: map[string]bool{}}
	for _, pod := range pods {
		if pod.DeletionTimestamp != nil || pod.Status.Phase == corev1.PodFailed {
			g.ignored[pod.Name] = true
			continue
		}
		if pod.Status.Phase == corev1.PodPending {
			g.unready[pod.Name] = true
			continue
		}
		metric, found := metrics[pod.Name]
		if !found {
			g.missing[pod.Name] = true
			continue
		}
		if res == corev1.ResourceCPU && rc.cpuUnready(pod, metric) {
			g.unready[pod.Name] = true
			continue
		}
		g.ready++
	}
	return g
}

// cpuUnready tells whether a pod's CPU sample is not to be trusted: a pod
// starting up burns CPU that says nothing about its load.
func (rc replicaCalculator) cpuUnready(pod *corev1.Pod, metric metricsapi.PodUsage) bool {
	var cond *corev1.PodCondition
	for i := range pod.Status.Conditions {
		if pod.Status.Conditions[i].Type == corev1.PodReady {
			cond = &pod.Status.Conditions[i]
		}
	}
	if cond == nil || pod.Status.StartTime == nil {
		return true
	}
	if pod.Status.StartTime.Add(cpuInitializationPeriod).After(rc.now) {
		return cond.Status == corev1.ConditionFalse || metric.Timestamp.Before(cond.LastTransitionTime.Add(metric.Window))
	}
	return cond.Status == corev1.ConditionFalse && pod.Status.StartTime.Add(delayOfInitialReadinessStatus).After(cond.LastTransitionTime.Time)
}

// podRequests sums each pod's requests of res over its containers
// (sidecars included); every container must have one.
func podRequests(pods []*corev1.Pod, res corev1.ResourceName) (map[string]int64, error) {
	out := make(map[string]int64, len(pods))
	for _, pod := range pods {
		var sum int64
		containers := pod.Spec.Containers
		for _, c := range pod.Spec.InitContainers {
			if c.RestartPolicy != nil && *c.RestartPolicy == corev1.ContainerRestartPolicyAlways {
				containers = append(containers[:len(containers):len(containers)], c)
			}
		}
		for _, c := range containers {
			req, ok := c.Resources.Requests[res]
			if !ok {
				return nil, fmt.Errorf("missing request for %s in container %s of Pod %s", res, c.Name, pod.Name)
			}
			sum += req.MilliValue()
		}
		out[pod.Name] = sum
	}
	return out, nil
}

// resourceProposal is what one resource metric proposes.
type resourceProposal struct {
	replicas int32
	// utilization is the usage in percent of the requests (Utilization
	// targets only); average is the mean usage per pod in milli-units.
	utilization int32
	average     int64
	timestamp   time.Time
}

var errNoMetricsForPods = errors.New("did not receive metrics for targeted pods (pods might be unready)")

// utilizationRatio is GetResourceUtilizationRatio: usage over requests,
// relative to the target percentage.
func utilizationRatio(metrics map[string]int64, requests map[string]int64, target int32) (ratio float64, utilization int32, average int64, err error) {
	var metricsTotal, requestsTotal int64
	n := 0
	for pod, value := range metrics {
		request, ok := requests[pod]
		if !ok {
			continue
		}
		metricsTotal += value
		requestsTotal += request
		n++
	}
	if requestsTotal == 0 {
		return 0, 0, 0, errors.New("no metrics returned matched known pods")
	}
	utilization = int32(metricsTotal * 100 / requestsTotal)
	return float64(utilization) / float64(target), utilization, metricsTotal / int64(n), nil
}

// averageRatio is GetMetricUsageRatio: mean usage relative to the target.
func averageRatio(metrics map[string]int64, target int64) (float64, int64) {
	var total int64
	for _, v := range metrics {
		total += v
	}
	average := total / int64(len(metrics))
	return float64(average) / float64(target), average
}

// resourceReplicas proposes a replica count for a resource target: a
// percentage of the requests (targetUtilization > 0) or an average value
// in milli-units. It is upstream's GetResourceReplicas and
// GetRawResourceReplicas: pods without metrics count as using the target
// (when scaling down) or nothing (when scaling up), unready pods as using
// nothing when scaling up, and a change that these assumptions would
// reverse, or within the tolerance, keeps the current count.
func (rc replicaCalculator) resourceReplicas(current int32, pods []*corev1.Pod, usage map[string]metricsapi.PodUsage,
	res corev1.ResourceName, targetUtilization int32, targetAverage int64) (resourceProposal, error) {
	if len(usage) == 0 {
		return resourceProposal{}, fmt.Errorf("unable to get metrics for resource %s: no metrics returned from resource metrics API", res)
	}
	if len(pods) == 0 {
		return resourceProposal{}, errors.New("no pods returned by selector while calculating replica count")
	}
	g := rc.groupPods(pods, usage, res)
	metrics := map[string]int64{}
	var timestamp time.Time
	for _, pod := range pods {
		u, ok := usage[pod.Name]
		if !ok || g.ignored[pod.Name] || g.unready[pod.Name] {
			continue
		}
		metrics[pod.Name] = u.MilliValue
		if u.Timestamp.After(timestamp) {
			timestamp = u.Timestamp
		}
	}
	if len(metrics) == 0 {
		return resourceProposal{}, errNoMetricsForPods
	}
	var requests map[string]int64
	var ratioOf func(map[string]int64) (float64, error)
	out := resourceProposal{timestamp: timestamp}
	if targetUtilization > 0 {
		var err error
		if requests, err = podRequests(pods, res); err != nil {
			return resourceProposal{}, err
		}
		if _, out.utilization, out.average, err = utilizationRatio(metrics, requests, targetUtilization); err != nil {
			return resourceProposal{}, err
		}
		ratioOf = func(m map[string]int64) (float64, error) {
			r, _, _, err := utilizationRatio(m, requests, targetUtilization)
			return r, err
		}
	} else {
		_, out.average = averageRatio(metrics, targetAverage)
		ratioOf = func(m map[string]int64) (float64, error) {
			r, _ := averageRatio(m, targetAverage)
			return r, nil
		}
	}
	ratio, err := ratioOf(metrics)
	if err != nil {
		return resourceProposal{}, err
	}

	scaleUpWithUnready := len(g.unready) > 0 && ratio > 1.0
	if !scaleUpWithUnready && len(g.missing) == 0 {
		out.replicas = current
		if math.Abs(1.0-ratio) > rc.tolerance {
			out.replicas = int32(math.Ceil(ratio * float64(g.ready)))
		}
		return out, nil
	}
	for pod := range g.missing {
		switch {
		case ratio < 1.0 && targetUtilization > 0:
			metrics[pod] = requests[pod] * int64(max(100, targetUtilization)) / 100
		case ratio < 1.0:
			metrics[pod] = targetAverage
		case ratio > 1.0:
			metrics[pod] = 0
		}
	}
	if scaleUpWithUnready {
		for pod := range g.unready {
			metrics[pod] = 0
		}
	}
	newRatio, err := ratioOf(metrics)
	if err != nil {
		return resourceProposal{}, err
	}
	out.replicas = current
	if math.Abs(1.0-newRatio) <= rc.tolerance || (ratio < 1.0 && newRatio > 1.0) || (ratio > 1.0 && newRatio < 1.0) {
		return out, nil
	}
	proposed := int32(math.Ceil(newRatio * float64(len(metrics))))
	if (newRatio < 1.0 && proposed > current) || (newRatio > 1.0 && proposed < current) {
		return out, nil
	}
	out.replicas = proposed
	return out, nil
}
