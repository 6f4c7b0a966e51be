package job

import (
	"fmt"
	"slices"
	"time"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
)

// matchFailurePolicy applies the job's podFailurePolicy to a failed pod
// as Kubernetes does: the first matching rule decides. It returns the
// matched action (nil when no rule matches, which means Count) and, for a
// match, the message Kubernetes writes ("Container main for pod ns/p failed
// with exit code 42 matching FailJob rule at index 0").
func matchFailurePolicy(policy *batchv1.PodFailurePolicy, pod *corev1.Pod) (*batchv1.PodFailurePolicyAction, string) {
	if policy == nil {
		return nil, ""
	}
	for i, rule := range policy.Rules {
		action := rule.Action
		if req := rule.OnExitCodes; req != nil {
			if st := matchExitCodes(req, pod); st != nil {
				return &action, fmt.Sprintf("Container %s for pod %s/%s failed with exit code %d matching %s rule at index %d",
					st.Name, pod.Namespace, pod.Name, st.State.Terminated.ExitCode, action, i)
			}
			continue
		}
		for _, pattern := range rule.OnPodConditions {
			status := pattern.Status
			if status == "" {
				status = corev1.ConditionTrue
			}
			for _, cond := range pod.Status.Conditions {
				if cond.Type == pattern.Type && cond.Status == status {
					return &action, fmt.Sprintf("Pod %s/%s has condition %s matching %s rule at index %d",
						pod.Namespace, pod.Name, cond.Type, action, i)
				}
			}
		}
	}
	return nil, ""
}

// matchExitCodes finds a terminated container (app containers first, then
// init containers) whose non-zero exit code satisfies req. Exit code 0 never
// matches: a container that succeeded did not fail the pod.
func matchExitCodes(req *batchv1.PodFailurePolicyOnExitCodesRequirement, pod *corev1.Pod) *corev1.ContainerStatus {
	for _, list := range [][]corev1.ContainerStatus{pod.Status.ContainerStatuses, pod.Status.InitContainerStatuses} {
		for i := range list {
			st := &list[i]
			term := st.State.Terminated
			if term == nil || term.ExitCode == 0 {
				continue
			}
			if req.ContainerName != nil && *req.ContainerName != st.Name {
				continue
			}
			in := slices.Contains(req.Values, term.ExitCode)
			if (req.Operator == batchv1.PodFailurePolicyOnExitCodesOpIn) == in {
				return st
			}
		}
	}
	return nil
}

// Back-off between pod failures, as Kubernetes' job controller: 10 s,
// doubling per failure since the last success, capped at 6 minutes.
const (
	backoffBase = 10 * time.Second
	backoffMax  = 6 * time.Minute
)

// backoffRecord remembers a job's failures since its last success.
type backoffRecord struct {
	failures    int
	lastFailure time.Time
}

// delay is how long after the last failure the next pod may be created.
func (r backoffRecord) delay() time.Duration {
	if r.failures == 0 {
		return 0
	}
	d := backoffBase
	for range r.failures - 1 {
		d *= 2
		if d >= backoffMax {
			return backoffMax
		}
	}
	return d
}

// podFinishTime is when a finished pod's last container terminated (its
// failure time for back-off), or fallback when it reports none.
func podFinishTime(pod *corev1.Pod, fallback time.Time) time.Time {
	var t time.Time
	for _, list := range [][]corev1.ContainerStatus{pod.Status.ContainerStatuses, pod.Status.InitContainerStatuses} {
		for _, st := range list {
			if term := st.State.Terminated; term != nil && term.FinishedAt.After(t) {
				t = term.FinishedAt.Time
			}
		}
	}
	if t.IsZero() {
		return fallback
	}
	return t
}
