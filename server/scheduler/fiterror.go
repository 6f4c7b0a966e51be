package scheduler

import (
	"fmt"
	"sort"
	"strings"

	corev1 "k8s.io/api/core/v1"
)

// Preemption is not implemented, but its PostFilter message is part of
// every FailedScheduling event kube-scheduler writes, and users read it:
// nodes whose failure no eviction can fix are "not helpful"; on the others
// an evaluation found no victims (orch never preempts).
const (
	preemptionNotHelpful = "Preemption is not helpful for scheduling"
	preemptionNoVictims  = "No preemption victims found for incoming pod"
	preemptionNever      = "not eligible due to preemptionPolicy=Never"
)

// diagnosis collects why the nodes rejected a pod: upstream's FitError.
type diagnosis struct {
	numAllNodes int
	// preFilterMsg rejects the pod on every node at once.
	preFilterMsg string
	// reasons counts the nodes per failure reason (one node may count
	// under several, e.g. Insufficient cpu and Insufficient memory).
	reasons map[string]int
	// unresolvable counts the nodes no preemption could free.
	unresolvable int
}

func (d *diagnosis) add(st *status) {
	if d.reasons == nil {
		d.reasons = map[string]int{}
	}
	for _, r := range st.reasons {
		d.reasons[r]++
	}
	if st.unresolvable {
		d.unresolvable++
	}
}

// message formats the diagnosis as kube-scheduler's FitError, with its
// preemption PostFilter message, e.g.
//
//	0/3 nodes are available: 1 Insufficient cpu, 2 node(s) didn't match Pod's node affinity/selector. preemption: 0/3 nodes are available: 1 No preemption victims found for incoming pod, 2 Preemption is not helpful for scheduling.
func (d *diagnosis) message(pod *corev1.Pod) string {
	var b strings.Builder
	fmt.Fprintf(&b, "0/%d nodes are available:", d.numAllNodes)
	unresolvable := d.unresolvable
	if d.preFilterMsg != "" {
		b.WriteString(" " + d.preFilterMsg + ".")
		unresolvable = d.numAllNodes
	} else if len(d.reasons) > 0 {
		b.WriteString(" " + histogram(d.reasons) + ".")
	}
	if p := pod.Spec.PreemptionPolicy; p != nil && *p == corev1.PreemptNever {
		b.WriteString(" " + preemptionNever + ".")
		return b.String()
	}
	pre := map[string]int{}
	if unresolvable > 0 {
		pre[preemptionNotHelpful] = unresolvable
	}
	if n := d.numAllNodes - unresolvable; n > 0 {
		pre[preemptionNoVictims] = n
	}
	fmt.Fprintf(&b, " preemption: 0/%d nodes are available:", d.numAllNodes)
	if len(pre) > 0 {
		b.WriteString(" " + histogram(pre))
	}
	b.WriteString(".")
	return b.String()
}

// histogram renders "count reason" items sorted as strings, joined by
// ", ", exactly as upstream sorts them (so "10 x" sorts before "2 y").
func histogram(counts map[string]int) string {
	items := make([]string, 0, len(counts))
	for reason, n := range counts {
		items = append(items, fmt.Sprintf("%d %s", n, reason))
	}
	sort.Strings(items)
	return strings.Join(items, ", ")
}
