package proxy

import (
	"testing"
	"time"

	v1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
)

// TestE2ELoadBalancer writes a LoadBalancer Service of orch's service LB
// into a node namespace: its port answers on the node's addresses, and
// its source ranges keep out other clients but not the node itself.
func TestE2ELoadBalancer(t *testing.T) {
	tn := setupNet(t)
	tn.serve(t, 9000, "lb")
	w := &NFTables{NetNSFd: int(tn.node)}
	s := NewSyncer(e2eConfig(), w, SyncerOptions{MinSyncInterval: 10 * time.Millisecond})
	results := s.Results()
	runSyncer(t, s)

	lb := svc("web", "198.19.0.30", tcpPort("http", 8090, 30090))
	lb.Spec.Type = v1.ServiceTypeLoadBalancer
	lb.Status.LoadBalancer.Ingress = []v1.LoadBalancerIngress{{IP: tn.nodeIP.String()}}
	slices := []*discoveryv1.EndpointSlice{slice("web", "web-1", "http", 9000, ep(tn.podIP.String(), "node-a", true))}
	s.Replace([]*v1.Service{lb}, slices)
	waitResult(t, results)
	for _, c := range []struct {
		name string
		from func() (string, error)
	}{
		{"node address from the node", func() (string, error) { return get(tn.node, "198.18.1.1:8090", 2*time.Second) }},
		{"127.0.0.1 from the node", func() (string, error) { return get(tn.node, "127.0.0.1:8090", 2*time.Second) }},
		{"node address from the pod", func() (string, error) { return get(tn.pod, "198.18.1.1:8090", 2*time.Second) }},
	} {
		if got, err := c.from(); err != nil || got != "lb" {
			t.Errorf("%s: got %q, %v", c.name, got, err)
		}
	}

	// Source ranges without the pod's address: the pod is kept out, the
	// node itself is not; the NodePort is not guarded.
	guarded := lb.DeepCopy()
	guarded.Spec.LoadBalancerSourceRanges = []string{"203.0.113.0/24"}
	s.UpdateService(guarded)
	waitResult(t, results)
	wantDropped(t, tn.pod, "198.18.1.1:8090")
	if got, err := get(tn.node, "198.18.1.1:8090", 2*time.Second); err != nil || got != "lb" {
		t.Errorf("from the node with source ranges: got %q, %v", got, err)
	}
	if got, err := get(tn.pod, "198.18.1.1:30090", 2*time.Second); err != nil || got != "lb" {
		t.Errorf("node port from the pod with source ranges: got %q, %v", got, err)
	}

	allowed := guarded.DeepCopy()
	allowed.Spec.LoadBalancerSourceRanges = append(allowed.Spec.LoadBalancerSourceRanges, "198.18.1.0/24")
	s.UpdateService(allowed)
	waitResult(t, results)
	if got, err := get(tn.pod, "198.18.1.1:8090", 2*time.Second); err != nil || got != "lb" {
		t.Errorf("from the pod inside the source ranges: got %q, %v", got, err)
	}
}
