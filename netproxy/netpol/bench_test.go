package netpol

import (
	"fmt"
	"testing"

	v1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// BenchmarkBuild measures a whole rebuild, which every relevant change
// costs: 5,000 pods in 50 namespaces (100 of them on this node), 200
// policies with pod, namespace and port rules.
func BenchmarkBuild(b *testing.B) {
	var st State
	for n := range 50 {
		ns := fmt.Sprintf("ns%d", n)
		st.Namespaces = append(st.Namespaces, testNS(ns, map[string]string{"team": fmt.Sprint(n % 5)}))
		for i := range 100 {
			nodeName := "other"
			if i < 2 {
				nodeName = node
			}
			st.Pods = append(st.Pods, testPod(ns, fmt.Sprintf("p%d", i), nodeName, fmt.Sprintf("10.%d.%d.%d", 40+n/50, n%50, i+2),
				map[string]string{"app": fmt.Sprint(i % 10)}, v1.ContainerPort{Name: "http", ContainerPort: 8080}))
		}
		for j := range 4 {
			st.Policies = append(st.Policies, policy(ns, fmt.Sprintf("np%d", j), map[string]string{"app": fmt.Sprint(j)}, ingressOnly,
				[]networkingv1.NetworkPolicyIngressRule{{
					From: []networkingv1.NetworkPolicyPeer{
						{PodSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": fmt.Sprint(j + 1)}}},
						{NamespaceSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"team": "1"}}},
					},
					Ports: []networkingv1.NetworkPolicyPort{{Port: port(80)}, {Port: namedPort("http")}},
				}}, nil))
		}
	}
	b.ReportAllocs()
	for b.Loop() {
		rs, _ := Build(Config{NodeName: node}, st)
		if len(rs.Chains) < 2 {
			b.Fatal("no pod chains")
		}
	}
}
