package scheduler

import (
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"

	"github.com/orch-dev/orch/server/scheduling"
)

// untoleratedTaint returns the first NoSchedule or NoExecute taint of the
// node (including the readiness taint it is owed) that the pod does not
// tolerate.
func untoleratedTaint(n *nodeInfo, tolerations []corev1.Toleration) (*corev1.Taint, bool) {
	taints := n.node.Spec.Taints
	for i := range taints {
		t := &taints[i]
		if t.Effect != corev1.TaintEffectNoSchedule && t.Effect != corev1.TaintEffectNoExecute {
			continue
		}
		if !scheduling.ToleratesTaint(tolerations, t) {
			return t, true
		}
	}
	if t := n.notReadyTaint; t != nil && !scheduling.ToleratesTaint(tolerations, t) {
		return t, true
	}
	return nil, false
}

// affinityTerm is a parsed PodAffinityTerm.
type affinityTerm struct {
	// namespaces the term selects pods in; with nsSelector, also the
	// namespaces whose labels match it (an empty selector matches all).
	namespaces  map[string]struct{}
	nsSelector  labels.Selector
	selector    labels.Selector
	topologyKey string
}

// parseAffinityTerms parses terms of pod; terms with an invalid selector
// (validation rejects them) match nothing.
func parseAffinityTerms(pod *corev1.Pod, terms []corev1.PodAffinityTerm) []affinityTerm {
	if len(terms) == 0 {
		return nil
	}
	out := make([]affinityTerm, 0, len(terms))
	for i := range terms {
		t := &terms[i]
		at := affinityTerm{topologyKey: t.TopologyKey, namespaces: map[string]struct{}{}}
		for _, ns := range t.Namespaces {
			at.namespaces[ns] = struct{}{}
		}
		if t.NamespaceSelector != nil {
			sel, err := metav1.LabelSelectorAsSelector(t.NamespaceSelector)
			if err != nil {
				sel = labels.Nothing()
			}
			at.nsSelector = sel
		} else if len(t.Namespaces) == 0 {
			at.namespaces[pod.Namespace] = struct{}{}
		}
		sel, err := metav1.LabelSelectorAsSelector(t.LabelSelector)
		if err != nil || t.LabelSelector == nil {
			// A nil selector selects no pods.
			sel = labels.Nothing()
		}
		at.selector = sel
		out = append(out, at)
	}
	return out
}

// matches reports whether pod is selected by the term; nsLabels returns the
// labels of a namespace.
func (t *affinityTerm) matches(pod *corev1.Pod, nsLabels func(string) labels.Set) bool {
	if _, ok := t.namespaces[pod.Namespace]; !ok {
		if t.nsSelector == nil {
			return false
		}
		if !t.nsSelector.Empty() && !t.nsSelector.Matches(nsLabels(pod.Namespace)) {
			return false
		}
	}
	return t.selector.Matches(labels.Set(pod.Labels))
}

func matchesAllTerms(terms []affinityTerm, pod *corev1.Pod, nsLabels func(string) labels.Set) bool {
	if len(terms) == 0 {
		return false
	}
	for i := range terms {
		if !terms[i].matches(pod, nsLabels) {
			return false
		}
	}
	return true
}

type topologyPair struct{ key, value string }
