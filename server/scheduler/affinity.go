package scheduler

import (
	"strconv"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
)

// matchesNodeSelectorTerms reports whether node matches any of terms (they
// are ORed; an empty term matches nothing), as nodeAffinity's
// requiredDuringScheduling and a PersistentVolume's node affinity do.
func matchesNodeSelectorTerms(terms []corev1.NodeSelectorTerm, node *corev1.Node) bool {
	for i := range terms {
		if matchesNodeSelectorTerm(&terms[i], node) {
			return true
		}
	}
	return false
}

func matchesNodeSelectorTerm(t *corev1.NodeSelectorTerm, node *corev1.Node) bool {
	if len(t.MatchExpressions) == 0 && len(t.MatchFields) == 0 {
		return false
	}
	for i := range t.MatchExpressions {
		if !matchesRequirement(&t.MatchExpressions[i], node.Labels) {
			return false
		}
	}
	for i := range t.MatchFields {
		r := &t.MatchFields[i]
		// metadata.name is the only field nodes can be selected by.
		if r.Key != "metadata.name" || !matchesRequirement(r, map[string]string{r.Key: node.Name}) {
			return false
		}
	}
	return true
}

func matchesRequirement(r *corev1.NodeSelectorRequirement, set map[string]string) bool {
	v, ok := set[r.Key]
	switch r.Operator {
	case corev1.NodeSelectorOpIn:
		return ok && contains(r.Values, v)
	case corev1.NodeSelectorOpNotIn:
		return !ok || !contains(r.Values, v)
	case corev1.NodeSelectorOpExists:
		return ok
	case corev1.NodeSelectorOpDoesNotExist:
		return !ok
	case corev1.NodeSelectorOpGt, corev1.NodeSelectorOpLt:
		if !ok || len(r.Values) != 1 {
			return false
		}
		have, err1 := strconv.ParseInt(v, 10, 64)
		want, err2 := strconv.ParseInt(r.Values[0], 10, 64)
		if err1 != nil || err2 != nil {
			return false
		}
		if r.Operator == corev1.NodeSelectorOpGt {
			return have > want
		}
		return have < want
	}
	return false
}

func contains(values []string, v string) bool {
	for _, x := range values {
		if x == v {
			return true
		}
	}
	return false
}

// matchesNodeSelectorAndAffinity is the NodeAffinity filter: the pod's
// nodeSelector and its required node affinity must both match.
func matchesNodeSelectorAndAffinity(pod *corev1.Pod, node *corev1.Node) bool {
	for k, v := range pod.Spec.NodeSelector {
		if have, ok := node.Labels[k]; !ok || have != v {
			return false
		}
	}
	if a := pod.Spec.Affinity; a != nil && a.NodeAffinity != nil && a.NodeAffinity.RequiredDuringSchedulingIgnoredDuringExecution != nil {
		return matchesNodeSelectorTerms(a.NodeAffinity.RequiredDuringSchedulingIgnoredDuringExecution.NodeSelectorTerms, node)
	}
	return true
}

// tolerates reports whether toleration t tolerates taint (core/v1's
// ToleratesTaint without its logger, and without the alpha Gt/Lt
// operators).
func tolerates(t *corev1.Toleration, taint *corev1.Taint) bool {
	if t.Effect != "" && t.Effect != taint.Effect {
		return false
	}
	if t.Key != "" && t.Key != taint.Key {
		return false
	}
	switch t.Operator {
	case "", corev1.TolerationOpEqual:
		return t.Value == taint.Value
	case corev1.TolerationOpExists:
		return true
	}
	return false
}

func toleratesTaint(tolerations []corev1.Toleration, taint *corev1.Taint) bool {
	for i := range tolerations {
		if tolerates(&tolerations[i], taint) {
			return true
		}
	}
	return false
}

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
		if !toleratesTaint(tolerations, t) {
			return t, true
		}
	}
	if t := n.notReadyTaint; t != nil && !toleratesTaint(tolerations, t) {
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
