package podindex

import (
	"slices"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

func pod(name, node string) *corev1.Pod {
	return &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: name}, Spec: corev1.PodSpec{NodeName: node}}
}

func TestIndex(t *testing.T) {
	x := New()
	h := x.Handler()
	h.OnAdd(pod("a", "n1"))
	h.OnAdd(pod("b", ""))
	h.OnAdd(pod("c", "n2"))
	h.OnUpdate(pod("b", ""), pod("b", "n1"))   // bound
	h.OnUpdate(pod("c", "n2"), pod("c", "n1")) // moved (recreated under the same name)
	h.OnAdd(&corev1.Node{})                    // not a pod: ignored

	steps := []struct {
		name string
		do   func()
		want map[string][]string
	}{
		{"after adds", func() {}, map[string][]string{"n1": {"ns/a", "ns/b", "ns/c"}, "n2": {}}},
		{"delete", func() { h.OnDelete(pod("a", "n1")) }, map[string][]string{"n1": {"ns/b", "ns/c"}}},
		{"delete unknown", func() { h.OnDelete(pod("zz", "n1")) }, map[string][]string{"n1": {"ns/b", "ns/c"}}},
		{"unbind", func() { h.OnUpdate(pod("b", "n1"), pod("b", "")) }, map[string][]string{"n1": {"ns/c"}}},
	}
	for _, s := range steps {
		s.do()
		for node, want := range s.want {
			if got := x.Keys(node); !slices.Equal(got, want) {
				t.Errorf("%s: Keys(%s) = %v, want %v", s.name, node, got, want)
			}
		}
	}
}
