package agent

import (
	"fmt"
	"sort"
	"strings"
	"time"

	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/orch-dev/orch/runtime/container"
)

// Container status reasons, as the kubelet reports them.
const (
	reasonContainerCreating     = "ContainerCreating"
	reasonPodInitializing       = "PodInitializing"
	reasonCrashLoopBackOff      = "CrashLoopBackOff"
	reasonErrImagePull          = "ErrImagePull"
	reasonImagePullBackOff      = "ImagePullBackOff"
	reasonErrImageNeverPull     = "ErrImageNeverPull"
	reasonCreateConfigError     = "CreateContainerConfigError"
	reasonCreateContainerError  = "CreateContainerError"
	reasonRunContainerError     = "RunContainerError"
	reasonContainersNotReady    = "ContainersNotReady"
	reasonContainersNotInit     = "ContainersNotInitialized"
	reasonPodCompleted          = "PodCompleted"
	containerIDPrefix           = "orch://"
	conditionReadyToStartTypeV1 = v1.PodReadyToStartContainers
)

// containerView is what the pod worker knows about one container of the
// pod spec: its newest runtime instance, the one before, and why it is
// waiting when it is not running.
type containerView struct {
	name  string
	image string // the image's normalized name, or the spec's when unknown
	// imageID is the image's ID (sha256:...) once known.
	imageID string
	// current is the newest instance, previous the one before it.
	current, previous *container.ContainerStatus
	restartCount      int32
	// waiting, when set, overrides the state of current: the container
	// is (re)starting or backing off.
	waiting *v1.ContainerStateWaiting
	ready   bool
	// started is the startup probe's verdict (true without one once running).
	started bool
}

// statusInput is everything the pod's API status is computed from.
type statusInput struct {
	pod          *v1.Pod
	now          time.Time
	sandboxReady bool
	hostIP       string
	podIP        string
	init, app    []containerView
}

// computePodStatus renders the pod's status the way the kubelet does:
// container statuses, phase, then conditions, keeping the conditions that
// others own (PodScheduled, DisruptionTarget, readiness gates).
func computePodStatus(in statusInput) v1.PodStatus {
	old := in.pod.Status
	st := v1.PodStatus{
		HostIP:    in.hostIP,
		PodIP:     in.podIP,
		StartTime: old.StartTime,
		QOSClass:  qosClass(in.pod),
	}
	if in.hostIP != "" {
		st.HostIPs = []v1.HostIP{{IP: in.hostIP}}
	}
	if in.podIP != "" {
		st.PodIPs = []v1.PodIP{{IP: in.podIP}}
	}
	if st.StartTime == nil {
		t := metav1.NewTime(in.now)
		st.StartTime = &t
	}
	for _, c := range in.init {
		st.InitContainerStatuses = append(st.InitContainerStatuses, containerStatus(c, true))
	}
	for _, c := range in.app {
		st.ContainerStatuses = append(st.ContainerStatuses, containerStatus(c, false))
	}
	// The kubelet lists app containers by name, init containers in order.
	sort.Slice(st.ContainerStatuses, func(i, j int) bool {
		return st.ContainerStatuses[i].Name < st.ContainerStatuses[j].Name
	})

	st.Phase = podPhase(in.pod, st.InitContainerStatuses, st.ContainerStatuses)
	if old.Phase == v1.PodSucceeded || old.Phase == v1.PodFailed {
		// A terminal phase is final.
		st.Phase = old.Phase
		st.Reason, st.Message = old.Reason, old.Message
	}

	conds := []v1.PodCondition{
		{Type: conditionReadyToStartTypeV1, Status: boolStatus(in.sandboxReady)},
		initializedCondition(in.pod, st.InitContainerStatuses, st.Phase),
	}
	ready := containersReadyCondition(in.pod, st.ContainerStatuses, st.Phase)
	podReady := ready
	podReady.Type = v1.PodReady
	conds = append(conds, podReady, ready)
	mine := map[v1.PodConditionType]bool{}
	for _, c := range conds {
		mine[c.Type] = true
	}
	for _, c := range old.Conditions {
		if !mine[c.Type] {
			conds = append(conds, c)
		}
	}
	for i := range conds {
		conds[i].LastTransitionTime = metav1.NewTime(in.now)
		for _, o := range old.Conditions {
			if o.Type == conds[i].Type {
				if o.Status == conds[i].Status {
					conds[i].LastTransitionTime = o.LastTransitionTime
				}
				conds[i].ObservedGeneration = o.ObservedGeneration
			}
		}
		if !mine[conds[i].Type] {
			conds[i] = findCondition(old.Conditions, conds[i].Type)
		}
	}
	st.Conditions = conds
	return st
}

func findCondition(conds []v1.PodCondition, t v1.PodConditionType) v1.PodCondition {
	for _, c := range conds {
		if c.Type == t {
			return c
		}
	}
	return v1.PodCondition{Type: t}
}

func boolStatus(b bool) v1.ConditionStatus {
	if b {
		return v1.ConditionTrue
	}
	return v1.ConditionFalse
}

// containerStatus renders one containerView.
func containerStatus(c containerView, isInit bool) v1.ContainerStatus {
	cs := v1.ContainerStatus{
		Name:         c.name,
		Image:        c.image,
		ImageID:      c.imageID,
		RestartCount: c.restartCount,
	}
	cur := c.current
	if cur != nil {
		cs.ContainerID = containerIDPrefix + cur.ID
	}
	lastFrom := c.previous
	switch {
	case c.waiting != nil:
		cs.State.Waiting = c.waiting.DeepCopy()
		if cur != nil && cur.State == container.StateExited {
			// The exited instance is what the restart will replace.
			lastFrom = cur
		}
	case cur == nil:
		reason := reasonContainerCreating
		if isInit {
			reason = reasonPodInitializing
		}
		cs.State.Waiting = &v1.ContainerStateWaiting{Reason: reason}
	case cur.State == container.StateRunning:
		cs.State.Running = &v1.ContainerStateRunning{StartedAt: metav1.NewTime(cur.StartedAt)}
		cs.Ready = c.ready
		started := c.started
		cs.Started = &started
	default:
		cs.State.Terminated = terminatedState(cur)
		// The kubelet reports a completed init container as ready.
		cs.Ready = isInit && cur.ExitCode == 0
	}
	if cs.Started == nil {
		f := false
		cs.Started = &f
	}
	if lastFrom != nil && lastFrom.State == container.StateExited {
		cs.LastTerminationState.Terminated = terminatedState(lastFrom)
	}
	return cs
}

func terminatedState(s *container.ContainerStatus) *v1.ContainerStateTerminated {
	t := &v1.ContainerStateTerminated{
		ExitCode:    int32(s.ExitCode),
		Reason:      s.Reason,
		Message:     s.Message,
		StartedAt:   metav1.NewTime(s.StartedAt),
		FinishedAt:  metav1.NewTime(s.FinishedAt),
		ContainerID: containerIDPrefix + s.ID,
	}
	if s.FinishedAt.IsZero() {
		t.FinishedAt = metav1.Time{}
	}
	return t
}

// podPhase is the kubelet's getPhase.
func podPhase(pod *v1.Pod, initStatuses, statuses []v1.ContainerStatus) v1.PodPhase {
	pendingInit, failedInit := 0, 0
	for _, c := range pod.Spec.InitContainers {
		if isSidecar(&c) {
			s, ok := findStatus(initStatuses, c.Name)
			if !ok || s.State.Running == nil || s.Started == nil || !*s.Started {
				pendingInit++
			}
			continue
		}
		s, ok := findStatus(initStatuses, c.Name)
		switch {
		case !ok:
			pendingInit++
		case s.State.Running != nil:
			pendingInit++
		case s.State.Terminated != nil:
			if s.State.Terminated.ExitCode != 0 {
				failedInit++
			}
		case s.State.Waiting != nil:
			if t := s.LastTerminationState.Terminated; t != nil {
				if t.ExitCode != 0 {
					failedInit++
				}
			} else {
				pendingInit++
			}
		default:
			pendingInit++
		}
	}
	var unknown, running, waiting, stopped, succeeded int
	for _, c := range pod.Spec.Containers {
		s, ok := findStatus(statuses, c.Name)
		switch {
		case !ok:
			unknown++
		case s.State.Running != nil:
			running++
		case s.State.Terminated != nil:
			stopped++
			if s.State.Terminated.ExitCode == 0 {
				succeeded++
			}
		case s.State.Waiting != nil:
			if s.LastTerminationState.Terminated != nil {
				stopped++
			} else {
				waiting++
			}
		default:
			unknown++
		}
	}
	if failedInit > 0 && pod.Spec.RestartPolicy == v1.RestartPolicyNever {
		return v1.PodFailed
	}
	switch {
	case pendingInit > 0, failedInit > 0:
		return v1.PodPending
	case waiting > 0:
		return v1.PodPending
	case running > 0 && unknown == 0:
		return v1.PodRunning
	case running == 0 && stopped > 0 && unknown == 0:
		if pod.Spec.RestartPolicy == v1.RestartPolicyAlways {
			return v1.PodRunning
		}
		if stopped == succeeded {
			return v1.PodSucceeded
		}
		if pod.Spec.RestartPolicy == v1.RestartPolicyNever {
			return v1.PodFailed
		}
		return v1.PodRunning
	default:
		return v1.PodPending
	}
}

func findStatus(list []v1.ContainerStatus, name string) (v1.ContainerStatus, bool) {
	for _, s := range list {
		if s.Name == name {
			return s, true
		}
	}
	return v1.ContainerStatus{}, false
}

func isSidecar(c *v1.Container) bool {
	return c.RestartPolicy != nil && *c.RestartPolicy == v1.ContainerRestartPolicyAlways
}

func initializedCondition(pod *v1.Pod, statuses []v1.ContainerStatus, phase v1.PodPhase) v1.PodCondition {
	var incomplete []string
	for _, c := range pod.Spec.InitContainers {
		s, ok := findStatus(statuses, c.Name)
		if isSidecar(&c) {
			if !ok || s.Started == nil || !*s.Started {
				incomplete = append(incomplete, c.Name)
			}
			continue
		}
		if !ok || s.State.Terminated == nil || s.State.Terminated.ExitCode != 0 {
			incomplete = append(incomplete, c.Name)
		}
	}
	if phase == v1.PodSucceeded && len(incomplete) == 0 {
		return v1.PodCondition{Type: v1.PodInitialized, Status: v1.ConditionTrue, Reason: reasonPodCompleted}
	}
	if len(incomplete) > 0 {
		return v1.PodCondition{
			Type: v1.PodInitialized, Status: v1.ConditionFalse, Reason: reasonContainersNotInit,
			Message: fmt.Sprintf("containers with incomplete status: [%s]", strings.Join(incomplete, " ")),
		}
	}
	return v1.PodCondition{Type: v1.PodInitialized, Status: v1.ConditionTrue}
}

func containersReadyCondition(pod *v1.Pod, statuses []v1.ContainerStatus, phase v1.PodPhase) v1.PodCondition {
	if phase == v1.PodSucceeded {
		return v1.PodCondition{Type: v1.ContainersReady, Status: v1.ConditionFalse, Reason: reasonPodCompleted}
	}
	var unready []string
	for _, c := range pod.Spec.Containers {
		if s, ok := findStatus(statuses, c.Name); !ok || !s.Ready {
			unready = append(unready, c.Name)
		}
	}
	if len(unready) > 0 {
		return v1.PodCondition{
			Type: v1.ContainersReady, Status: v1.ConditionFalse, Reason: reasonContainersNotReady,
			Message: fmt.Sprintf("containers with unready status: [%s]", strings.Join(unready, " ")),
		}
	}
	return v1.PodCondition{Type: v1.ContainersReady, Status: v1.ConditionTrue}
}

// qosClass is the pod's QoS class (v1qos.GetPodQOS, simplified to cpu and
// memory, the only resources it looks at).
func qosClass(pod *v1.Pod) v1.PodQOSClass {
	if pod.Status.QOSClass != "" {
		return pod.Status.QOSClass
	}
	requests, limits := v1.ResourceList{}, v1.ResourceList{}
	guaranteed := true
	all := append(append([]v1.Container{}, pod.Spec.InitContainers...), pod.Spec.Containers...)
	for _, c := range all {
		for _, name := range []v1.ResourceName{v1.ResourceCPU, v1.ResourceMemory} {
			req, hasReq := c.Resources.Requests[name]
			lim, hasLim := c.Resources.Limits[name]
			if hasReq && !req.IsZero() {
				requests[name] = req
			}
			if hasLim && !lim.IsZero() {
				limits[name] = lim
			} else {
				guaranteed = false
			}
			if hasReq && hasLim && req.Cmp(lim) != 0 {
				guaranteed = false
			}
		}
	}
	if len(requests) == 0 && len(limits) == 0 {
		return v1.PodQOSBestEffort
	}
	if guaranteed {
		return v1.PodQOSGuaranteed
	}
	return v1.PodQOSBurstable
}
