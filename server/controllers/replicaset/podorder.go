package replicaset

import (
	"math"
	"slices"
	"strconv"
	"time"

	corev1 "k8s.io/api/core/v1"
)

// podDeletionCostAnnotation lets users rank the pods of a ReplicaSet for
// scale-down (lower cost goes first).
const podDeletionCostAnnotation = "controller.kubernetes.io/pod-deletion-cost"

// podsToDelete picks n of pods to delete, best candidates first, in the
// order of Kubernetes' ActivePodsWithRanks (with LogarithmicScaleDown):
//
//  1. unscheduled before scheduled;
//  2. Pending before Unknown before Running;
//  3. not ready before ready;
//  4. lower pod-deletion-cost before higher;
//  5. more related pods on the same node before fewer ("doubled up");
//  6. ready for less time before longer (compared on a log2 scale of age);
//  7. more container restarts before fewer;
//  8. created more recently before older (log2 scale), then by uid.
//
// related are the pods of the ReplicaSet and its siblings (the other
// ReplicaSets of the same Deployment), used to rank spreading.
func podsToDelete(pods, related []*corev1.Pod, n int, now time.Time) []*corev1.Pod {
	if n >= len(pods) {
		return pods
	}
	onNode := map[string]int{}
	for _, p := range related {
		if podActive(p) {
			onNode[p.Spec.NodeName]++
		}
	}
	ranked := make([]rankedPod, len(pods))
	for i, p := range pods {
		ranked[i] = rankedPod{pod: p, rank: onNode[p.Spec.NodeName]}
	}
	slices.SortStableFunc(ranked, func(a, b rankedPod) int { return compareForDeletion(a, b, now) })
	out := make([]*corev1.Pod, n)
	for i := range out {
		out[i] = ranked[i].pod
	}
	return out
}

type rankedPod struct {
	pod  *corev1.Pod
	rank int
}

var phaseOrdinal = map[corev1.PodPhase]int{corev1.PodPending: 0, corev1.PodUnknown: 1, corev1.PodRunning: 2}

// compareForDeletion is negative when a should be deleted before b.
func compareForDeletion(a, b rankedPod, now time.Time) int {
	pa, pb := a.pod, b.pod
	if pa.Spec.NodeName != pb.Spec.NodeName && (pa.Spec.NodeName == "" || pb.Spec.NodeName == "") {
		return boolFirst(pa.Spec.NodeName == "")
	}
	if oa, ob := phaseOrdinal[pa.Status.Phase], phaseOrdinal[pb.Status.Phase]; oa != ob {
		return oa - ob
	}
	ra, rb := podReady(pa), podReady(pb)
	if ra != rb {
		return boolFirst(!ra)
	}
	if ca, cb := deletionCost(pa), deletionCost(pb); ca != cb {
		return cmpInt(ca, cb)
	}
	if a.rank != b.rank {
		return cmpInt(b.rank, a.rank)
	}
	if ra && rb {
		ta, tb := readySince(pa), readySince(pb)
		if !ta.Equal(tb) {
			if c := compareTimes(ta, tb, pa, pb, now); c != 0 {
				return c
			}
		}
	}
	if xa, xb := maxRestarts(pa), maxRestarts(pb); xa != xb {
		return cmpInt(xb, xa)
	}
	if ta, tb := pa.CreationTimestamp.Time, pb.CreationTimestamp.Time; !ta.Equal(tb) {
		return compareTimes(ta, tb, pa, pb, now)
	}
	return 0
}

// compareTimes orders zero times first, then newer before older; with a
// reference time, times within the same power-of-two age bucket are equal
// and ordered by uid (a stable pseudo-random choice), so that scale-down
// spreads over pods of similar age rather than always taking the newest.
func compareTimes(ta, tb time.Time, pa, pb *corev1.Pod, now time.Time) int {
	if ta.IsZero() || tb.IsZero() {
		if ta.IsZero() == tb.IsZero() {
			return 0
		}
		return boolFirst(ta.IsZero())
	}
	if now.IsZero() {
		return boolFirst(ta.After(tb))
	}
	if d := logRank(now.Sub(ta)) - logRank(now.Sub(tb)); d != 0 {
		return cmpInt(int(d), 0)
	}
	switch {
	case pa.UID < pb.UID:
		return -1
	case pa.UID > pb.UID:
		return 1
	}
	return 0
}

func logRank(d time.Duration) int64 {
	if d <= 0 {
		return -1
	}
	return int64(math.Log2(float64(d)))
}

func boolFirst(aFirst bool) int {
	if aFirst {
		return -1
	}
	return 1
}

func cmpInt(a, b int) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

func deletionCost(pod *corev1.Pod) int {
	v, ok := pod.Annotations[podDeletionCostAnnotation]
	if !ok {
		return 0
	}
	n, err := strconv.ParseInt(v, 10, 32)
	if err != nil {
		return 0
	}
	return int(n)
}

func maxRestarts(pod *corev1.Pod) int {
	n := 0
	for _, c := range pod.Status.ContainerStatuses {
		n = max(n, int(c.RestartCount))
	}
	return n
}

// podActive: neither finished nor terminating.
func podActive(p *corev1.Pod) bool {
	return p.Status.Phase != corev1.PodSucceeded && p.Status.Phase != corev1.PodFailed && p.DeletionTimestamp == nil
}

func readyCondition(pod *corev1.Pod) *corev1.PodCondition {
	for i := range pod.Status.Conditions {
		if pod.Status.Conditions[i].Type == corev1.PodReady {
			return &pod.Status.Conditions[i]
		}
	}
	return nil
}

func podReady(pod *corev1.Pod) bool {
	c := readyCondition(pod)
	return c != nil && c.Status == corev1.ConditionTrue
}

// readySince is when pod became ready (zero if it is not).
func readySince(pod *corev1.Pod) time.Time {
	if c := readyCondition(pod); c != nil && c.Status == corev1.ConditionTrue {
		return c.LastTransitionTime.Time
	}
	return time.Time{}
}

// podAvailable: ready for at least minReadySeconds.
func podAvailable(pod *corev1.Pod, minReadySeconds int32, now time.Time) bool {
	c := readyCondition(pod)
	if c == nil || c.Status != corev1.ConditionTrue {
		return false
	}
	if minReadySeconds == 0 {
		return true
	}
	return !c.LastTransitionTime.IsZero() && c.LastTransitionTime.Add(time.Duration(minReadySeconds)*time.Second).Before(now)
}
