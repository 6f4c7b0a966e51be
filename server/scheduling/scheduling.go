// Package scheduling holds the rules that decide whether a pod may be
// placed on a node — node selectors, required node affinity, taints and
// tolerations — for the scheduler and for the controllers that must agree
// with it (DaemonSet, taint-based eviction, volume binding). Upstream
// keeps the same rules in k8s.io/component-helpers/scheduling/corev1.
package scheduling

import (
	"slices"
	"strconv"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// MatchesNodeSelectorAndAffinity reports whether node satisfies the pod's
// nodeSelector and its required node affinity (both must hold).
func MatchesNodeSelectorAndAffinity(spec *corev1.PodSpec, node *corev1.Node) bool {
	for k, v := range spec.NodeSelector {
		if have, ok := node.Labels[k]; !ok || have != v {
			return false
		}
	}
	if a := spec.Affinity; a != nil && a.NodeAffinity != nil && a.NodeAffinity.RequiredDuringSchedulingIgnoredDuringExecution != nil {
		return MatchesNodeSelectorTerms(a.NodeAffinity.RequiredDuringSchedulingIgnoredDuringExecution.NodeSelectorTerms, node)
	}
	return true
}

// MatchesNodeSelectorTerms reports whether node matches any of terms. The
// terms are ORed, a term's requirements ANDed, and an empty term matches
// nothing; this is the meaning of required node affinity and of a
// PersistentVolume's node affinity.
func MatchesNodeSelectorTerms(terms []corev1.NodeSelectorTerm, node *corev1.Node) bool {
	for i := range terms {
		if MatchesNodeSelectorTerm(&terms[i], node) {
			return true
		}
	}
	return false
}

// MatchesNodeSelectorTerm reports whether node satisfies every requirement
// of t; an empty term matches nothing. A preferred node affinity term is
// scored by it.
func MatchesNodeSelectorTerm(t *corev1.NodeSelectorTerm, node *corev1.Node) bool {
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
		if r.Key != metav1.ObjectNameField || !matchesRequirement(r, map[string]string{r.Key: node.Name}) {
			return false
		}
	}
	return true
}

func matchesRequirement(r *corev1.NodeSelectorRequirement, set map[string]string) bool {
	v, ok := set[r.Key]
	switch r.Operator {
	case corev1.NodeSelectorOpIn:
		return ok && slices.Contains(r.Values, v)
	case corev1.NodeSelectorOpNotIn:
		return !ok || !slices.Contains(r.Values, v)
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

// Tolerates reports whether toleration t tolerates taint: core/v1's
// Toleration.ToleratesTaint without the alpha Gt/Lt operators.
func Tolerates(t *corev1.Toleration, taint *corev1.Taint) bool {
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

// ToleratesTaint reports whether any of tolerations tolerates taint.
func ToleratesTaint(tolerations []corev1.Toleration, taint *corev1.Taint) bool {
	for i := range tolerations {
		if Tolerates(&tolerations[i], taint) {
			return true
		}
	}
	return false
}
