package scheduler

import (
	corev1 "k8s.io/api/core/v1"
)

// Requests of containers that set none, counted by the scoring functions
// only (as upstream's non-zero requests) so that many request-less pods
// still spread out instead of piling onto one "empty" node.
const (
	defaultMilliCPURequest int64 = 100               // 0.1 core
	defaultMemoryRequest   int64 = 200 * 1024 * 1024 // 200 MiB
)

// resources is a compact amount of the resources the scheduler accounts
// for. Scalar resources (extended resources, hugepages) are rare, so their
// map stays nil unless a pod or node has one.
type resources struct {
	milliCPU  int64
	memory    int64
	ephemeral int64
	scalar    map[corev1.ResourceName]int64
}

func (r *resources) addList(rl corev1.ResourceList) {
	for name, q := range rl {
		switch name {
		case corev1.ResourceCPU:
			r.milliCPU += q.MilliValue()
		case corev1.ResourceMemory:
			r.memory += q.Value()
		case corev1.ResourceEphemeralStorage:
			r.ephemeral += q.Value()
		case corev1.ResourcePods:
			// Pods are counted by number, not requested.
		default:
			if r.scalar == nil {
				r.scalar = map[corev1.ResourceName]int64{}
			}
			r.scalar[name] += q.Value()
		}
	}
}

func (r *resources) add(o resources) {
	r.milliCPU += o.milliCPU
	r.memory += o.memory
	r.ephemeral += o.ephemeral
	for name, v := range o.scalar {
		if r.scalar == nil {
			r.scalar = map[corev1.ResourceName]int64{}
		}
		r.scalar[name] += v
	}
}

func (r *resources) sub(o resources) {
	r.milliCPU -= o.milliCPU
	r.memory -= o.memory
	r.ephemeral -= o.ephemeral
	for name, v := range o.scalar {
		if r.scalar != nil {
			r.scalar[name] -= v
			if r.scalar[name] == 0 {
				delete(r.scalar, name)
			}
		}
	}
}

// setMax raises each amount of r to at least o's.
func (r *resources) setMax(o resources) {
	r.milliCPU = max(r.milliCPU, o.milliCPU)
	r.memory = max(r.memory, o.memory)
	r.ephemeral = max(r.ephemeral, o.ephemeral)
	for name, v := range o.scalar {
		if r.scalar == nil {
			r.scalar = map[corev1.ResourceName]int64{}
		}
		r.scalar[name] = max(r.scalar[name], v)
	}
}

func (r resources) clone() resources {
	c := r
	c.scalar = nil
	for name, v := range r.scalar {
		if c.scalar == nil {
			c.scalar = make(map[corev1.ResourceName]int64, len(r.scalar))
		}
		c.scalar[name] = v
	}
	return c
}

func listOf(rl corev1.ResourceList) resources {
	var r resources
	r.addList(rl)
	return r
}

// podRequests is what a pod occupies on its node, computed as upstream's
// resource helper does: the sum of the app containers and of the sidecars
// (restartable init containers), or the largest of the regular init
// containers plus the sidecars started before it when that is more, plus
// the pod overhead. Pod-level requests (spec.resources) replace the
// per-container sum for the resources they name.
//
// nonZeroCPU and nonZeroMemory are the same sums with the defaults above
// in place of missing container requests; scoring uses them.
func podRequests(pod *corev1.Pod) (req resources, nonZeroCPU, nonZeroMemory int64) {
	nonZero := func(rl corev1.ResourceList) (int64, int64) {
		cpu, mem := defaultMilliCPURequest, defaultMemoryRequest
		if q, ok := rl[corev1.ResourceCPU]; ok {
			cpu = q.MilliValue()
		}
		if q, ok := rl[corev1.ResourceMemory]; ok {
			mem = q.Value()
		}
		return cpu, mem
	}
	for i := range pod.Spec.Containers {
		rl := pod.Spec.Containers[i].Resources.Requests
		req.addList(rl)
		c, m := nonZero(rl)
		nonZeroCPU += c
		nonZeroMemory += m
	}
	var sidecars, initMax resources
	var sidecarCPU, sidecarMem, initMaxCPU, initMaxMem int64
	for i := range pod.Spec.InitContainers {
		ic := &pod.Spec.InitContainers[i]
		rl := ic.Resources.Requests
		c, m := nonZero(rl)
		if ic.RestartPolicy != nil && *ic.RestartPolicy == corev1.ContainerRestartPolicyAlways {
			req.addList(rl)
			sidecars.addList(rl)
			nonZeroCPU += c
			nonZeroMemory += m
			sidecarCPU += c
			sidecarMem += m
			continue
		}
		during := sidecars.clone()
		during.addList(rl)
		initMax.setMax(during)
		initMaxCPU = max(initMaxCPU, sidecarCPU+c)
		initMaxMem = max(initMaxMem, sidecarMem+m)
	}
	req.setMax(initMax)
	nonZeroCPU = max(nonZeroCPU, initMaxCPU)
	nonZeroMemory = max(nonZeroMemory, initMaxMem)

	if pl := pod.Spec.Resources; pl != nil && len(pl.Requests) > 0 {
		if q, ok := pl.Requests[corev1.ResourceCPU]; ok {
			req.milliCPU = q.MilliValue()
			nonZeroCPU = q.MilliValue()
		}
		if q, ok := pl.Requests[corev1.ResourceMemory]; ok {
			req.memory = q.Value()
			nonZeroMemory = q.Value()
		}
	}

	if pod.Spec.Overhead != nil {
		req.addList(pod.Spec.Overhead)
		if q, ok := pod.Spec.Overhead[corev1.ResourceCPU]; ok {
			nonZeroCPU += q.MilliValue()
		}
		if q, ok := pod.Spec.Overhead[corev1.ResourceMemory]; ok {
			nonZeroMemory += q.Value()
		}
	}
	return req, nonZeroCPU, nonZeroMemory
}
