package scheduling

import (
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

func TestMatchesNodeSelectorTerm(t *testing.T) {
	n := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "n1", Labels: map[string]string{"zone": "a", "disks": "4"}}}
	term := func(field bool, reqs ...corev1.NodeSelectorRequirement) corev1.NodeSelectorTerm {
		if field {
			return corev1.NodeSelectorTerm{MatchFields: reqs}
		}
		return corev1.NodeSelectorTerm{MatchExpressions: reqs}
	}
	req := func(key string, op corev1.NodeSelectorOperator, values ...string) corev1.NodeSelectorRequirement {
		return corev1.NodeSelectorRequirement{Key: key, Operator: op, Values: values}
	}
	tests := []struct {
		name string
		term corev1.NodeSelectorTerm
		want bool
	}{
		{"empty term matches nothing", corev1.NodeSelectorTerm{}, false},
		{"in", term(false, req("zone", corev1.NodeSelectorOpIn, "a", "b")), true},
		{"not in", term(false, req("zone", corev1.NodeSelectorOpNotIn, "a")), false},
		{"exists", term(false, req("zone", corev1.NodeSelectorOpExists)), true},
		{"does not exist", term(false, req("gpu", corev1.NodeSelectorOpDoesNotExist)), true},
		{"gt", term(false, req("disks", corev1.NodeSelectorOpGt, "3")), true},
		{"lt", term(false, req("disks", corev1.NodeSelectorOpLt, "3")), false},
		{"and", term(false, req("zone", corev1.NodeSelectorOpIn, "a"), req("disks", corev1.NodeSelectorOpLt, "3")), false},
		{"field name", term(true, req("metadata.name", corev1.NodeSelectorOpIn, "n1")), true},
		{"other field", term(true, req("spec.unschedulable", corev1.NodeSelectorOpIn, "true")), false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := MatchesNodeSelectorTerm(&tt.term, n); got != tt.want {
				t.Errorf("MatchesNodeSelectorTerm = %v, want %v", got, tt.want)
			}
		})
	}
}

func TestTolerates(t *testing.T) {
	taint := &corev1.Taint{Key: "node.kubernetes.io/unreachable", Value: "", Effect: corev1.TaintEffectNoExecute}
	tests := []struct {
		name string
		tol  corev1.Toleration
		want bool
	}{
		{"exists on key", corev1.Toleration{Key: taint.Key, Operator: corev1.TolerationOpExists}, true},
		{"exists on everything", corev1.Toleration{Operator: corev1.TolerationOpExists}, true},
		{"equal, empty value", corev1.Toleration{Key: taint.Key, Effect: corev1.TaintEffectNoExecute}, true},
		{"other effect", corev1.Toleration{Key: taint.Key, Operator: corev1.TolerationOpExists, Effect: corev1.TaintEffectNoSchedule}, false},
		{"other key", corev1.Toleration{Key: "other", Operator: corev1.TolerationOpExists}, false},
		{"other value", corev1.Toleration{Key: taint.Key, Value: "x"}, false},
		{"unknown operator", corev1.Toleration{Key: taint.Key, Operator: "Gt"}, false},
	}
	for _, tt := range tests {
		if got := Tolerates(&tt.tol, taint); got != tt.want {
			t.Errorf("%s: Tolerates = %v, want %v", tt.name, got, tt.want)
		}
	}
}

func TestMatchesNodeSelectorAndAffinity(t *testing.T) {
	n := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "n1", Labels: map[string]string{"zone": "a"}}}
	required := func(terms ...corev1.NodeSelectorTerm) *corev1.Affinity {
		return &corev1.Affinity{NodeAffinity: &corev1.NodeAffinity{
			RequiredDuringSchedulingIgnoredDuringExecution: &corev1.NodeSelector{NodeSelectorTerms: terms}}}
	}
	zone := func(v string) corev1.NodeSelectorTerm {
		return corev1.NodeSelectorTerm{MatchExpressions: []corev1.NodeSelectorRequirement{{Key: "zone", Operator: corev1.NodeSelectorOpIn, Values: []string{v}}}}
	}
	tests := []struct {
		name string
		spec corev1.PodSpec
		want bool
	}{
		{"nothing asked", corev1.PodSpec{}, true},
		{"selector matches", corev1.PodSpec{NodeSelector: map[string]string{"zone": "a"}}, true},
		{"selector mismatch", corev1.PodSpec{NodeSelector: map[string]string{"zone": "b"}}, false},
		{"terms are ORed", corev1.PodSpec{Affinity: required(zone("b"), zone("a"))}, true},
		{"no term matches", corev1.PodSpec{Affinity: required(zone("b"))}, false},
		{"selector and affinity both needed", corev1.PodSpec{NodeSelector: map[string]string{"zone": "b"}, Affinity: required(zone("a"))}, false},
	}
	for _, tt := range tests {
		if got := MatchesNodeSelectorAndAffinity(&tt.spec, n); got != tt.want {
			t.Errorf("%s: got %v, want %v", tt.name, got, tt.want)
		}
	}
}
